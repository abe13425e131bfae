// Whole runs through createRuntime with the real `openai` client over real HTTP, against the
// local OpenAI-compatible test server replaying recorded responses and faults.
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createRuntime, defineCapability, type PolicyRule, type Runtime, type RunStreamEvent } from '../../src/index.js';
import { openaiModel, type OpenAIModelOptions } from '../../src/models/openai.js';
import { faults, fixture, startOpenAIServer, type OpenAIServer, type ServerStep } from '../support/openai-server.js';

const rules: PolicyRule[] = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
  { id: 'allow-math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] },
];
const add = defineCapability({
  name: 'math.add',
  version: '1.0.0',
  description: 'Add two numbers',
  input: z.object({ a: z.number(), b: z.number() }),
  output: z.number(),
  effects: 'read',
  handler: ({ a, b }) => a + b,
});
const request = { input: 'what is 2+3?', tenantId: 'acme', principalId: 'user-7' };
const toolCallId = 'call_Xk2YpQ7mT3rW9sLd4FvB1nHc';
const streamedCallId = 'call_Rm4TqW8zN2vB6xK1pL9sD3fH';

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.close()));
});

/** A runtime on the OpenAI adapter, pointed at a test server playing `script`. */
async function openaiRuntime(script: ServerStep[], options: OpenAIModelOptions = {}): Promise<{ runtime: Runtime; server: OpenAIServer }> {
  const server = await startOpenAIServer(script);
  const runtime = createRuntime({
    model: openaiModel({ baseURL: server.url, apiKey: 'test-key', ...options }),
    capabilities: [add],
    config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules } },
  });
  runtimes.push(runtime);
  return { runtime, server };
}

const streamedToolLoop = (): ServerStep[] => [{ stream: fixture('stream-tool-call-math-add') }, { stream: fixture('stream-answer') }];

describe('a run on the OpenAI adapter over HTTP', () => {
  it('completes a tool loop: the server sees the tools, then the tool result, and usage is summed', async () => {
    const { runtime, server } = await openaiRuntime([{ json: fixture('chat-tool-call-math-add') }, { json: fixture('chat-answer') }], { stream: false });

    const result = await runtime.run(request);

    expect(result).toMatchObject({ status: 'completed', output: '2 + 3 = 5.' });
    expect(result.error).toBeUndefined();
    expect(result.toolCalls).toHaveLength(1);
    expect(result.toolCalls[0]).toMatchObject({ capability: 'math.add', toolName: 'math_add', args: '{"a":2,"b":3}', outcome: { status: 'ok', output: 5 } });
    expect(result.usage).toEqual({ modelCalls: 2, toolCalls: 1, inputTokens: 81 + 112, outputTokens: 18 + 8 });

    const [first, second] = server.requests;
    expect(first!.body.model).toBe('gpt-5.4');
    expect(first!.body.tools).toEqual([
      {
        type: 'function',
        function: {
          name: 'math_add',
          description: 'Add two numbers',
          parameters: expect.objectContaining({ type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } }),
        },
      },
    ]);
    expect(first!.body.messages.at(-1)).toEqual({ role: 'user', content: 'what is 2+3?' });
    expect(second!.body.messages.slice(-2)).toEqual([
      { role: 'assistant', content: null, tool_calls: [{ id: toolCallId, type: 'function', function: { name: 'math_add', arguments: '{"a":2,"b":3}' } }] },
      { role: 'tool', tool_call_id: toolCallId, content: '5' },
    ]);
    server.verify();
  });

  it('streams the answer to subscribers, delta by delta and in order, before the result', async () => {
    const { runtime, server } = await openaiRuntime(streamedToolLoop());

    const handle = runtime.start(request);
    const events: RunStreamEvent[] = [];
    handle.subscribe((event) => events.push(event));
    const result = await handle.result;

    expect(result).toMatchObject({ status: 'completed', output: '2 + 3 = 5.' });
    expect(result.toolCalls[0]).toMatchObject({ toolName: 'math_add', args: '{"a":2,"b":3}', outcome: { status: 'ok', output: 5 } });
    expect(result.usage).toEqual({ modelCalls: 2, toolCalls: 1, inputTokens: 81 + 112, outputTokens: 18 + 8 });
    const deltas = events.flatMap((event) => (event.type === 'delta' ? [event.text] : []));
    expect(deltas).toEqual(['2', ' +', ' 3', ' =', ' 5', '.']);
    const lastDelta = events.findLastIndex((event) => event.type === 'delta');
    const settled = events.findIndex((event) => event.type === 'settled');
    expect(settled).toBeGreaterThan(lastDelta);
    expect(server.requests.map((seen) => seen.body.stream)).toEqual([true, true]);
    expect(server.requests[1]!.body.messages.at(-1)).toEqual({ role: 'tool', tool_call_id: streamedCallId, content: '5' });
    server.verify();
  });
});

describe('faults at the model edge end a run as documented', () => {
  it('completes after the SDK retried a 429 (retry-after-ms)', async () => {
    const { runtime, server } = await openaiRuntime([faults.rateLimited(), ...streamedToolLoop()], { maxRetries: 2 });
    // A run streams only while someone listens to it.
    const handle = runtime.start(request);
    handle.subscribe(() => {});
    const result = await handle.result;
    expect(result).toMatchObject({ status: 'completed', output: '2 + 3 = 5.' });
    expect(server.requests).toHaveLength(3);
    server.verify();
  });

  it('completes after the SDK retried a 500', async () => {
    const { runtime, server } = await openaiRuntime([{ stream: fixture('stream-tool-call-math-add') }, faults.serverError(), { stream: fixture('stream-answer') }], { maxRetries: 1 });
    // A run streams only while someone listens to it.
    const handle = runtime.start(request);
    handle.subscribe(() => {});
    const result = await handle.result;
    expect(result).toMatchObject({ status: 'completed', output: '2 + 3 = 5.' });
    expect(result.usage.modelCalls).toBe(2);
    expect(server.requests).toHaveLength(3);
    server.verify();
  });

  it('fails with a model timeout when the server hangs past the client timeout', async () => {
    const { runtime, server } = await openaiRuntime([faults.hang()], { timeoutMs: 200, maxRetries: 0 });
    const result = await runtime.run(request);
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ kind: 'timeout', layer: 'model', retryable: true });
    await server.disconnected(0);
  });

  it('fails with auth when the key is rejected', async () => {
    const { runtime } = await openaiRuntime([faults.badKey()]);
    const result = await runtime.run(request);
    expect(result).toMatchObject({ status: 'failed', output: null });
    expect(result.error).toEqual({ kind: 'auth', layer: 'model', retryable: false, message: 'model: the OpenAI API rejected the key (401); check OPENAI_API_KEY' });
  });

  it.each([true, false])('fails with a contract violation on a malformed body (stream: %s)', async (stream) => {
    const { runtime } = await openaiRuntime([faults.malformed()], { stream });
    const result = await runtime.run(request);
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ kind: 'contract-violation', layer: 'model' });
  });

  it('fails, without the partial answer, when the stream is cut off', async () => {
    const { runtime } = await openaiRuntime([{ stream: fixture('stream-tool-call-math-add') }, { stream: fixture('stream-answer'), cutAfter: 4 }]);
    const handle = runtime.start(request);
    const deltas: string[] = [];
    handle.subscribe((event) => event.type === 'delta' && deltas.push(event.text));
    const result = await handle.result;
    expect(result).toMatchObject({ status: 'failed', output: null });
    expect(result.error).toMatchObject({ kind: 'upstream', layer: 'model', retryable: true });
    expect(result.toolCalls).toHaveLength(1);
    // The partial answer streamed before the cut never reaches a listener: no output allow ever released it.
    expect(deltas).toEqual([]);
  });

  it('cancels the run and aborts the HTTP request while the server hangs', async () => {
    const { runtime, server } = await openaiRuntime([faults.hang()]);
    const handle = runtime.start(request);
    await server.received(1);

    handle.cancel('the user gave up');
    const result = await handle.result;

    expect(result.status).toBe('cancelled');
    await server.disconnected(0);
    expect(server.requests[0]!.disconnected).toBe(true);
  });
});
