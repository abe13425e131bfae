import { afterEach, describe, expect, it, vi } from 'vitest';
import { isRunchartError, RunchartError, toRunchartErrorData } from '../../src/errors.js';
import type { ModelAdapter, ModelDelta, ModelRequest } from '../../src/models/contract.js';
import { demoModel } from '../../src/models/demo.js';
import { modelFromEnvironment, openaiModel, type OpenAIModelOptions } from '../../src/models/openai.js';
import { scriptedModel, type ScriptedStep } from '../../src/testing/index.js';
import { faults, fixture, startOpenAIServer, streamChunksFor, toModelRequest, type ServerStep } from '../support/openai-server.js';
import { describeModelContract, type ContractStep } from './model.contract.js';

describeModelContract('scripted', async (steps) => {
  const hangs = steps.some((step) => 'hang' in step);
  const script = steps.map((step): ScriptedStep => {
    if ('hang' in step) return { text: 'too late' };
    if ('fail' in step) {
      const retryable = step.fail === 'rate-limited' || step.fail === 'upstream';
      return { error: new RunchartError(step.fail, 'model', `model: scripted ${step.fail}`, { retryable }) };
    }
    return step;
  });
  // A hanging step is a step that would take longer than any test; only the abort ends it.
  const model = scriptedModel(script, hangs ? { delayMs: 600_000 } : {});
  return {
    model,
    streams: false,
    seen: () => model.requests,
    received: async (count) => expect(model.requests.length).toBeGreaterThanOrEqual(count),
    verify: () => model.verify(),
  };
});

const serverStepFor = (step: ContractStep): ServerStep => {
  if ('hang' in step) return faults.hang();
  if (!('fail' in step)) return { answer: step };
  switch (step.fail) {
    case 'auth':
      return faults.badKey();
    case 'rate-limited':
      return faults.rateLimited();
    case 'invalid-input':
      return { json: fixture('error-404-model'), status: 404 };
    case 'upstream':
      return faults.serverError();
    case 'contract-violation':
      return faults.malformed();
  }
};

for (const stream of [true, false]) {
  describeModelContract(`openai over HTTP (${stream ? 'streaming when asked' : 'stream: false'})`, async (steps) => {
    const server = await startOpenAIServer(steps.map(serverStepFor));
    return {
      model: openaiModel({ baseURL: server.url, apiKey: 'test-key', maxRetries: 0, stream }),
      streams: stream,
      seen: () => server.requests.map((request) => toModelRequest(request.body)),
      received: (count) => server.received(count),
      verify: () => server.verify(),
    };
  });
}

const signal = () => new AbortController().signal;
const request = (overrides: Partial<ModelRequest> = {}): ModelRequest => ({
  model: 'gpt-test',
  messages: [{ role: 'user', content: 'what is 2+3?' }],
  tools: [{ name: 'math_add', description: 'Add two numbers', parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } } }],
  ...overrides,
});

async function failureOf(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    expect(isRunchartError(error)).toBe(true);
    return toRunchartErrorData(error, 'model');
  }
  throw new Error('expected the step to fail, but it answered');
}

async function modelWith(script: ServerStep[], options: OpenAIModelOptions = {}) {
  const server = await startOpenAIServer(script);
  return { server, model: openaiModel({ baseURL: server.url, apiKey: 'test-key', maxRetries: 0, ...options }) };
}

const streaming = (deltas: ModelDelta[] = []) => ({ signal: signal(), onDelta: (delta: ModelDelta) => void deltas.push(delta) });

describe('openai adapter: the request on the wire', () => {
  it('sends Chat Completions with the key, the tools as functions and the conversation in the OpenAI shape', async () => {
    const { server, model } = await modelWith([{ json: fixture('chat-answer') }]);
    await model.step(
      request({
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: 'what is 2+3?' },
          { role: 'assistant', content: null, toolCalls: [{ id: 'call_1', name: 'math_add', arguments: '{"a":2,"b":3}' }] },
          { role: 'tool', toolCallId: 'call_1', content: '5' },
        ],
      }),
      { signal: signal() },
    );
    const [seen] = server.requests;
    expect(seen).toMatchObject({ method: 'POST', path: '/v1/chat/completions' });
    expect(seen!.headers.authorization).toBe('Bearer test-key');
    expect(seen!.body).toEqual({
      model: 'gpt-test',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'what is 2+3?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'math_add', arguments: '{"a":2,"b":3}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '5' },
      ],
      tools: [
        {
          type: 'function',
          function: { name: 'math_add', description: 'Add two numbers', parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } } },
        },
      ],
      stream: false,
    });
    server.verify();
  });

  it('uses its own model over the run model, and leaves tools out when there are none', async () => {
    const { server, model } = await modelWith([{ json: fixture('chat-answer') }], { model: 'gpt-4.1-mini' });
    await model.step(request({ tools: [] }), { signal: signal() });
    expect(server.requests[0]!.body.model).toBe('gpt-4.1-mini');
    expect(server.requests[0]!.body).not.toHaveProperty('tools');
  });

  it('asks for a stream with usage when someone listens, and not when stream is false', async () => {
    const streamed = await modelWith([{ stream: fixture('stream-answer') }]);
    await streamed.model.step(request(), streaming());
    expect(streamed.server.requests[0]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });

    const plain = await modelWith([{ json: fixture('chat-answer') }], { stream: false });
    await plain.model.step(request(), streaming());
    expect(plain.server.requests[0]!.body.stream).toBe(false);
    expect(plain.server.requests[0]!.body).not.toHaveProperty('stream_options');
  });
});

describe('openai adapter: recorded responses', () => {
  it('reads a recorded tool call and answer', async () => {
    const { model } = await modelWith([{ json: fixture('chat-tool-call-math-add') }, { json: fixture('chat-answer') }]);
    expect(await model.step(request(), { signal: signal() })).toEqual({
      text: null,
      toolCalls: [{ id: 'call_Xk2YpQ7mT3rW9sLd4FvB1nHc', name: 'math_add', arguments: '{"a":2,"b":3}' }],
      usage: { inputTokens: 81, outputTokens: 18 },
      finishReason: 'tool_calls',
    });
    expect(await model.step(request(), { signal: signal() })).toEqual({
      text: '2 + 3 = 5.',
      toolCalls: [],
      usage: { inputTokens: 112, outputTokens: 8 },
      finishReason: 'stop',
    });
  });

  it('streams a recorded answer piece by piece, with the usage of the last chunk', async () => {
    const { model } = await modelWith([{ stream: fixture('stream-answer') }]);
    const deltas: ModelDelta[] = [];
    const response = await model.step(request(), streaming(deltas));
    expect(deltas.map((delta) => delta.text)).toEqual(['2', ' +', ' 3', ' =', ' 5', '.']);
    expect(response).toEqual({ text: '2 + 3 = 5.', toolCalls: [], usage: { inputTokens: 112, outputTokens: 8 }, finishReason: 'stop' });
  });

  it('puts a streamed tool call together: the name in one chunk, the arguments over nine', async () => {
    const { model } = await modelWith([{ stream: fixture('stream-tool-call-math-add') }]);
    expect(await model.step(request(), streaming())).toEqual({
      text: null,
      toolCalls: [{ id: 'call_Rm4TqW8zN2vB6xK1pL9sD3fH', name: 'math_add', arguments: '{"a":2,"b":3}' }],
      usage: { inputTokens: 81, outputTokens: 18 },
      finishReason: 'tool_calls',
    });
  });

  it('puts two parallel streamed tool calls together by index', async () => {
    const { model } = await modelWith([{ stream: fixture('stream-two-tool-calls') }]);
    const response = await model.step(request(), streaming());
    expect(response.toolCalls).toEqual([
      { id: 'call_Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8', name: 'math_add', arguments: '{"a":1,"b":2}' },
      { id: 'call_Ii9Jj8Kk7Ll6Mm5Nn4Oo3Pp2', name: 'math_multiply', arguments: '{"a":4,"b":5}' },
    ]);
    expect(response.usage).toEqual({ inputTokens: 140, outputTokens: 52 });
  });

  it('puts tool calls together by index even when their pieces interleave', async () => {
    const chunks = fixture<{ choices: { delta: { tool_calls?: { index: number }[] } }[] }[]>('stream-two-tool-calls');
    // Move the second call's opening chunk before the first call's argument pieces.
    const opening = chunks.findIndex((chunk) => chunk.choices[0]?.delta.tool_calls?.[0]?.index === 1);
    const interleaved = [chunks[0], chunks[opening], chunks[1], chunks[opening + 1], chunks[2], chunks[opening + 2], chunks[3], ...chunks.slice(opening + 3)];
    const { model } = await modelWith([{ stream: interleaved }]);
    const response = await model.step(request(), streaming());
    expect(response.toolCalls.map((call) => [call.name, JSON.parse(call.arguments)])).toEqual([
      ['math_add', { a: 1, b: 2 }],
      ['math_multiply', { a: 4, b: 5 }],
    ]);
  });
});

describe('openai adapter: faults', () => {
  it('lets the SDK retry a 429 after retry-after-ms, and answers', async () => {
    const { server, model } = await modelWith([faults.rateLimited(), { json: fixture('chat-answer') }], { maxRetries: 2 });
    expect((await model.step(request(), { signal: signal() })).text).toBe('2 + 3 = 5.');
    expect(server.requests).toHaveLength(2);
    server.verify();
  });

  it('lets the SDK retry a 500, and answers from the stream', async () => {
    const { server, model } = await modelWith([faults.serverError(), { stream: fixture('stream-answer') }], { maxRetries: 1 });
    expect((await model.step(request(), streaming())).text).toBe('2 + 3 = 5.');
    expect(server.requests).toHaveLength(2);
    server.verify();
  });

  it('reports a rate limit that outlasts the retries as rate-limited and retryable', async () => {
    const { server, model } = await modelWith([faults.rateLimited(), faults.rateLimited()], { maxRetries: 1 });
    const error = await failureOf(model.step(request(), { signal: signal() }));
    expect(error).toMatchObject({ kind: 'rate-limited', layer: 'model', retryable: true });
    expect(error.message).toMatch(/^model: the OpenAI API kept rate limiting us \(429\) after 1 retry: Rate limit reached .*; request req_rate_limited$/);
    server.verify();
  });

  it('reports a rejected key as auth, never echoing the key', async () => {
    const { model } = await modelWith([faults.badKey()]);
    const error = await failureOf(model.step(request(), { signal: signal() }));
    expect(error).toEqual({ kind: 'auth', layer: 'model', retryable: false, message: 'model: the OpenAI API rejected the key (401); check OPENAI_API_KEY' });
  });

  it('reports a 403 as auth', async () => {
    const { model } = await modelWith([{ json: { error: { message: 'You are not allowed to sample from this model', type: 'invalid_request_error', param: null, code: null } }, status: 403 }]);
    expect(await failureOf(model.step(request(), { signal: signal() }))).toMatchObject({ kind: 'auth', message: expect.stringMatching(/\(403\).*check OPENAI_API_KEY/) });
  });

  it.each([
    [400, 'error-400-bad-request', /tool_call_id/],
    [404, 'error-404-model', /gpt-9-imaginary/],
    [422, 'error-400-bad-request', /\(422\)/],
  ])('reports a %i as invalid-input with the API message', async (status, name, message) => {
    const { model } = await modelWith([{ json: fixture(name), status }]);
    const error = await failureOf(model.step(request(), { signal: signal() }));
    expect(error).toMatchObject({ kind: 'invalid-input', layer: 'model', retryable: false });
    expect(error.message).toMatch(message);
  });

  it('reports server errors that outlast the retries as upstream and retryable', async () => {
    const { server, model } = await modelWith([faults.serverError(), faults.serverError()], { maxRetries: 1 });
    const error = await failureOf(model.step(request(), streaming()));
    expect(error).toMatchObject({ kind: 'upstream', layer: 'model', retryable: true });
    expect(error.message).toMatch(/\(500\) after 1 retry: The server had an error/);
    server.verify();
  });

  it('times out a server that never answers, after the SDK retried once', async () => {
    const { server, model } = await modelWith([faults.hang(), faults.hang()], { timeoutMs: 200, maxRetries: 1 });
    const error = await failureOf(model.step(request(), { signal: signal() }));
    expect(error).toMatchObject({ kind: 'timeout', layer: 'model', retryable: true, message: 'model: the OpenAI API did not answer within 200 ms after 1 retry' });
    expect(server.requests).toHaveLength(2);
    await server.disconnected(0);
    await server.disconnected(1);
  });

  it('times out a stream that goes silent after it started', async () => {
    const { server, model } = await modelWith([{ stream: fixture('stream-answer'), hangAfter: 3 }], { timeoutMs: 200 });
    const deltas: ModelDelta[] = [];
    const error = await failureOf(model.step(request(), streaming(deltas)));
    expect(error).toMatchObject({ kind: 'timeout', message: 'model: the response stream from the OpenAI API sent nothing for 200 ms' });
    expect(deltas.map((delta) => delta.text)).toEqual(['2', ' +']);
    await server.disconnected(0);
  });

  it('reports a body that is not JSON as a contract violation', async () => {
    const { model } = await modelWith([faults.malformed()]);
    const error = await failureOf(model.step(request(), { signal: signal() }));
    expect(error).toMatchObject({ kind: 'contract-violation', layer: 'model', retryable: false });
    expect(error.message).toMatch(/^model: the OpenAI API sent a body that is not valid JSON/);
  });

  it('reports JSON that is no chat completion, or HTML from a proxy, as a contract violation', async () => {
    const { model } = await modelWith([
      { json: { id: 'chatcmpl-1', object: 'chat.completion', choices: [] } },
      { raw: '<html><body>502 Bad Gateway</body></html>', contentType: 'text/html' },
    ]);
    expect(await failureOf(model.step(request(), { signal: signal() }))).toMatchObject({ kind: 'contract-violation', message: expect.stringMatching(/choices/) });
    expect(await failureOf(model.step(request(), { signal: signal() }))).toMatchObject({ kind: 'contract-violation', message: expect.stringMatching(/<html>/) });
  });

  it('reports a streaming request answered with plain JSON as a contract violation', async () => {
    const { model } = await modelWith([faults.malformed()]);
    expect(await failureOf(model.step(request(), streaming()))).toMatchObject({ kind: 'contract-violation', message: expect.stringMatching(/not text\/event-stream/) });
  });

  it('fails a stream cut off mid-answer instead of returning the part that arrived', async () => {
    const { model } = await modelWith([{ stream: fixture('stream-answer'), cutAfter: 4 }]);
    const deltas: ModelDelta[] = [];
    const error = await failureOf(model.step(request(), streaming(deltas)));
    expect(error).toMatchObject({ kind: 'upstream', layer: 'model', retryable: true, message: expect.stringMatching(/^model: the response stream from the OpenAI API broke off before the model finished \(terminated: other side closed\)$/) });
    expect(deltas.map((delta) => delta.text)).toEqual(['2', ' +', ' 3']);
  });

  it('fails a stream cut off in the middle of a tool call', async () => {
    const { model } = await modelWith([{ stream: fixture('stream-tool-call-math-add'), cutAfter: 5 }]);
    expect(await failureOf(model.step(request(), streaming()))).toMatchObject({ kind: 'upstream' });
  });

  it('fails a stream that closes cleanly without a finish reason', async () => {
    const { model } = await modelWith([{ stream: fixture<unknown[]>('stream-answer').slice(0, 4), done: false }]);
    expect(await failureOf(model.step(request(), streaming()))).toMatchObject({
      kind: 'upstream',
      message: 'model: the response stream from the OpenAI API ended before the model finished (no finish_reason)',
    });
  });

  it('reports an error event inside the stream as upstream', async () => {
    const [first] = fixture<unknown[]>('stream-answer');
    const { model } = await modelWith([{ stream: [first, { error: { message: 'The model is overloaded', type: 'server_error', param: null, code: null } }] }]);
    expect(await failureOf(model.step(request(), streaming()))).toMatchObject({ kind: 'upstream', message: expect.stringMatching(/overloaded/) });
  });

  it('reports a server it cannot reach as upstream, naming the address', async () => {
    const { server, model } = await modelWith([]);
    await server.close();
    expect(await failureOf(model.step(request(), { signal: signal() }))).toMatchObject({
      kind: 'upstream',
      retryable: true,
      message: expect.stringContaining(`could not reach the OpenAI API at ${server.url}`),
    });
  });
});

describe('openai adapter: cancellation', () => {
  for (const mode of ['plain', 'streaming'] as const) {
    it(`aborts the HTTP request when the signal aborts (${mode})`, async () => {
      const { server, model } = await modelWith([faults.hang()]);
      const controller = new AbortController();
      const step = failureOf(model.step(request(), { signal: controller.signal, ...(mode === 'streaming' ? { onDelta: () => {} } : {}) }));
      await server.received(1);
      controller.abort();
      expect(await step).toMatchObject({ kind: 'cancelled', layer: 'model', message: 'model: the call to the OpenAI API was cancelled' });
      await server.disconnected(0);
      expect(server.requests[0]!.disconnected).toBe(true);
    });
  }

  it('aborts a stream that is under way', async () => {
    const { server, model } = await modelWith([{ stream: fixture('stream-answer'), hangAfter: 2 }]);
    const controller = new AbortController();
    const step = failureOf(model.step(request(), { signal: controller.signal, onDelta: () => controller.abort() }));
    expect(await step).toMatchObject({ kind: 'cancelled' });
    await server.disconnected(0);
  });

  it('stops the stream when the onDelta listener throws, and says so', async () => {
    const { server, model } = await modelWith([{ stream: fixture('stream-answer'), hangAfter: 3 }]);
    const error = await failureOf(
      model.step(request(), {
        signal: signal(),
        onDelta: () => {
          throw new Error('listener broke');
        },
      }),
    );
    expect(error).toMatchObject({ kind: 'internal', layer: 'model', message: 'model: the onDelta listener threw: listener broke' });
    await server.disconnected(0);
  });

  it('sends nothing when the signal is already aborted', async () => {
    const { server, model } = await modelWith([]);
    expect(await failureOf(model.step(request(), { signal: AbortSignal.abort() }))).toMatchObject({ kind: 'cancelled' });
    expect(server.requests).toEqual([]);
  });
});

describe('openai adapter: construction', () => {
  afterEach(() => vi.unstubAllEnvs());

  it('refuses to start without any API key, saying where to put one', () => {
    vi.stubEnv('OPENAI_API_KEY', undefined);
    expect(() => openaiModel({ baseURL: 'http://127.0.0.1:9/v1' })).toThrow(/^model: no OpenAI API key was given; set OPENAI_API_KEY or pass apiKey/);
  });

  it('sends the organization header when given one', async () => {
    const { server, model } = await modelWith([{ json: fixture('chat-answer') }], { organization: 'org-test' });
    await model.step(request(), { signal: signal() });
    expect(server.requests[0]!.headers['openai-organization']).toBe('org-test');
  });
});

describe('modelFromEnvironment', () => {
  const fallback = (): ModelAdapter => demoModel();

  it('falls back when neither OPENAI_API_KEY nor OPENAI_BASE_URL is set', () => {
    expect(modelFromEnvironment({}, fallback).name).toBe('demo');
    expect(modelFromEnvironment({ OPENAI_MODEL: 'gpt-4.1' }, fallback).name).toBe('demo');
  });

  it('talks to OPENAI_BASE_URL with OPENAI_MODEL, and a placeholder key when none is set', async () => {
    const server = await startOpenAIServer([{ json: fixture('chat-answer') }]);
    const model = modelFromEnvironment({ OPENAI_BASE_URL: server.url, OPENAI_MODEL: 'llama3.2' }, fallback);
    expect(model.name).toBe('openai');
    await model.step(request(), { signal: signal() });
    expect(server.requests[0]!.headers.authorization).toBe('Bearer not-needed');
    expect(server.requests[0]!.body.model).toBe('llama3.2');
  });

  it('uses OPENAI_API_KEY when it is set', async () => {
    const server = await startOpenAIServer([{ json: fixture('chat-answer') }]);
    await modelFromEnvironment({ OPENAI_BASE_URL: server.url, OPENAI_API_KEY: 'sk-from-env' }, fallback).step(request(), { signal: signal() });
    expect(server.requests[0]!.headers.authorization).toBe('Bearer sk-from-env');
    expect(server.requests[0]!.body.model).toBe('gpt-test');
  });
});

describe('the test server', () => {
  it('sends streams as the API does: event-stream, role first, usage last, then [DONE]', async () => {
    const server = await startOpenAIServer([{ answer: { text: 'hi there' } }]);
    const response = await fetch(`${server.url}/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'm', messages: [], stream: true }) });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = (await response.text()).split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    const chunks = events.slice(0, -1).map((event) => JSON.parse(event.replace(/^data: /, '')));
    expect(chunks).toEqual(streamChunksFor({ text: 'hi there' }, 'm'));
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 20, completion_tokens: 7 } });
  });

  it('says when a script was not used up or was overrun', async () => {
    const unused = await startOpenAIServer([{ json: fixture('chat-answer') }]);
    expect(() => unused.verify()).toThrow(/1 of 1 scripted responses were never requested/);
    const overrun = await startOpenAIServer([]);
    const response = await fetch(`${overrun.url}/chat/completions`, { method: 'POST', body: '{}' });
    expect(response.status).toBe(500);
    expect(() => overrun.verify()).toThrow(/request 1 is beyond the script of 0/);
  });
});
