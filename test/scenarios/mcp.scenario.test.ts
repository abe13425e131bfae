// MCP servers as capabilities, against real servers: server-everything over stdio, our own over Streamable HTTP.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createRuntime, isRunchartError, type PolicyRule, type RunchartError } from '../../src/index.js';
import { mcpCapabilities, type McpCapabilities } from '../../src/execution/mcp.js';
import type { ModelRequest, ModelResponse } from '../../src/models/contract.js';
import { scriptedModel, type ScriptedStep } from '../../src/testing/index.js';
import { startMcpHttpServer, UNREADABLE_SCHEMA, type McpHttpServer } from '../support/mcp-http-server.js';

const everythingEntry = createRequire(import.meta.url).resolve('@modelcontextprotocol/server-everything/dist/index.js');
const everythingSource = { server: 'everything', command: process.execPath, args: [everythingEntry, 'stdio'] };

const allowRuns: PolicyRule = { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' };
const allowEverything: PolicyRule = { id: 'allow-everything', stage: 'tool', effect: 'allow', capabilities: ['everything.*'] };
const allowTest: PolicyRule = { id: 'allow-test', stage: 'tool', effect: 'allow', capabilities: ['test.*'] };
const request = { input: 'use the tools', tenantId: 'acme', principalId: 'user-7' };

const opened: McpCapabilities[] = [];
async function open(...parameters: Parameters<typeof mcpCapabilities>): Promise<McpCapabilities> {
  const capabilities = await mcpCapabilities(...parameters);
  opened.push(capabilities);
  return capabilities;
}

function runtimeWith(capabilities: McpCapabilities, rules: PolicyRule[], steps: ScriptedStep[]) {
  const model = scriptedModel(steps);
  const runtime = createRuntime({ model, capabilities, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules } } });
  return { model, runtime };
}

/** A model step that records what the model was shown, then answers. */
function answer(text: string, seen: ModelRequest[] = []): ScriptedStep {
  return (modelRequest): ModelResponse => {
    seen.push(modelRequest);
    return { text, toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
  };
}

function toolMessages(modelRequest: ModelRequest): string[] {
  return modelRequest.messages.flatMap((message) => (message.role === 'tool' ? [message.content] : []));
}

/** The server-everything processes this test process has started and not yet reaped. */
function everythingChildren(): number[] {
  const lines = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).split('\n');
  return lines.filter((line) => line.includes('server-everything')).map((line) => Number(line.trim().split(/\s+/)[0]));
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function rejectionOf(promise: Promise<unknown>): Promise<RunchartError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(isRunchartError(error)).toBe(true);
  return error as RunchartError;
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((capabilities) => capabilities.close()));
});

describe('mcpCapabilities over stdio (server-everything)', () => {
  // One process for the tests that do not kill or close it.
  let shared: McpCapabilities;
  beforeAll(async () => {
    shared = await mcpCapabilities(everythingSource);
  });
  afterAll(async () => {
    await shared.close();
  });

  it('lists every tool as everything.<tool> with the JSON Schema the server gave', async () => {
    const everything = shared;
    const byName = new Map(everything.map((capability) => [capability.name, capability]));

    expect([...byName.keys()]).toEqual(expect.arrayContaining(['everything.echo', 'everything.get-sum', 'everything.get-env']));
    // A tool that answers only through the task API cannot be called with tools/call.
    expect(byName.has('everything.simulate-research-query')).toBe(false);
    const echo = byName.get('everything.echo')!;
    expect(echo).toMatchObject({ version: '2.0.0', description: 'Echoes back the input string', effects: 'external' });
    expect(echo.parameters).toEqual({
      type: 'object',
      properties: { message: { type: 'string', description: 'Message to echo' } },
      required: ['message'],
    });
    expect(byName.get('everything.get-sum')!.parameters).toMatchObject({ required: ['a', 'b'], properties: { a: { type: 'number' }, b: { type: 'number' } } });
    for (const capability of everything) expect(capability.name).toMatch(/^everything\.[a-zA-Z0-9_-]+$/);
  });

  it('runs a tool through the runtime; the model sees the server schema and gets the server answer', async () => {
    const everything = await open(everythingSource, { version: '7.1.0' });
    const seen: ModelRequest[] = [];
    const { model, runtime } = runtimeWith(everything, [allowRuns, allowEverything], [
      (modelRequest) => {
        seen.push(modelRequest);
        return { text: null, toolCalls: [{ id: 'call-1', name: 'everything_get-sum', arguments: '{"a":2,"b":3}' }], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'tool_calls' };
      },
      answer('2 + 3 = 5', seen),
    ]);

    const result = await runtime.run(request);
    await runtime.close();

    expect(result.status).toBe('completed');
    expect(result.output).toBe('2 + 3 = 5');
    expect(result.toolCalls).toEqual([
      expect.objectContaining({ capability: 'everything.get-sum', version: '7.1.0', outcome: { status: 'ok', output: 'The sum of 2 and 3 is 5.' } }),
    ]);
    const shown = seen[0]!.tools.find((tool) => tool.name === 'everything_get-sum');
    expect(shown?.parameters).toEqual(everything.find((capability) => capability.name === 'everything.get-sum')!.parameters);
    expect(toolMessages(seen[1]!).join()).toContain('The sum of 2 and 3 is 5.');
    model.verify();
  });

  it('checks arguments with the server schema before anything is sent', async () => {
    const everything = shared;
    const { model, runtime } = runtimeWith(everything, [allowRuns, allowEverything], [
      { toolCalls: [{ name: 'everything_echo', arguments: { message: 42 } }] },
      answer('sorry'),
    ]);

    const result = await runtime.run(request);
    await runtime.close();

    expect(result.status).toBe('completed');
    const outcome = result.toolCalls[0]!.outcome;
    expect(outcome).toMatchObject({ status: 'error', error: { kind: 'invalid-input' } });
    // The gateway's schema check speaks, not the server's own validation ("MCP error -32602: Input validation error").
    expect(JSON.stringify(outcome)).toContain('do not match its input schema: message');
    expect(JSON.stringify(outcome)).not.toContain('MCP error');
    model.verify();
  });

  it('keeps an MCP tool hidden and unexecutable until a rule allows it', async () => {
    const everything = shared;
    const denied: ModelRequest[] = [];
    const hidden = runtimeWith(everything, [allowRuns], [
      (modelRequest) => {
        denied.push(modelRequest);
        return { text: null, toolCalls: [{ id: 'call-1', name: 'everything_echo', arguments: '{"message":"leak"}' }], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'tool_calls' };
      },
      answer('could not'),
    ]);

    const before = await hidden.runtime.run(request);
    await hidden.runtime.close();

    expect(denied[0]!.tools).toEqual([]);
    expect(before.toolCalls[0]!.outcome).toMatchObject({ status: 'invalid', reason: expect.stringContaining('unknown tool "everything_echo"') });
    expect(JSON.stringify(before)).not.toContain('Echo: leak');

    const allowed = runtimeWith(everything, [allowRuns, allowEverything], [{ toolCalls: [{ name: 'everything_echo', arguments: { message: 'hi' } }] }, answer('done')]);
    const after = await allowed.runtime.run(request);
    await allowed.runtime.close();

    expect(after.toolCalls[0]!.outcome).toEqual({ status: 'ok', output: 'Echo: hi' });
    expect(after.toolCalls[0]!.decision).toMatchObject({ verdict: 'allow', ruleId: 'allow-everything' });
    hidden.model.verify();
    allowed.model.verify();
  });

  it('turns a server process that died into an upstream error result; the run completes', async () => {
    const before = new Set(everythingChildren());
    const everything = await open(everythingSource);
    const [pid] = everythingChildren().filter((child) => !before.has(child));
    const { model, runtime } = runtimeWith(everything, [allowRuns, allowEverything], [
      { toolCalls: [{ name: 'everything_echo', arguments: { message: 'first' } }] },
      async () => {
        process.kill(pid!, 'SIGKILL');
        await vi.waitFor(() => expect(isAlive(pid!)).toBe(false));
        return { text: null, toolCalls: [{ id: 'call-2', name: 'everything_echo', arguments: '{"message":"second"}' }], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'tool_calls' };
      },
      answer('the server is gone'),
    ]);

    const result = await runtime.run(request);
    await runtime.close();

    expect(result.status).toBe('completed');
    expect(result.output).toBe('the server is gone');
    expect(result.toolCalls.map((call) => call.outcome.status)).toEqual(['ok', 'error']);
    expect(result.toolCalls[1]!.outcome).toMatchObject({ error: { message: expect.stringContaining('MCP server "everything" is unreachable') } });
    const direct = await rejectionOf(everything[0]!.handler({ message: 'x' }, contextWith(new AbortController().signal)));
    expect(direct).toMatchObject({ kind: 'upstream', layer: 'execution' });
    model.verify();
  });

  it('fails a call in flight at once when the process dies under it', async () => {
    const before = new Set(everythingChildren());
    const everything = await open(everythingSource);
    const [pid] = everythingChildren().filter((child) => !before.has(child));
    const longRunning = everything.find((capability) => capability.name === 'everything.trigger-long-running-operation')!;

    const pending = longRunning.handler({ duration: 60, steps: 1 }, contextWith(new AbortController().signal));
    process.kill(pid!, 'SIGKILL');

    const error = await rejectionOf(pending);
    expect(error).toMatchObject({ kind: 'upstream', layer: 'execution' });
    expect(error.message).toContain('MCP server "everything" is unreachable: its process exited');
  });

  it('close() ends the child process', async () => {
    const before = new Set(everythingChildren());
    const everything = await open(everythingSource);
    const started = everythingChildren().filter((child) => !before.has(child));
    expect(started).toHaveLength(1);

    await everything.close();
    await everything.close();

    expect(isAlive(started[0]!)).toBe(false);
    expect(everythingChildren()).not.toContain(started[0]);
    const error = await rejectionOf(everything[0]!.handler({ message: 'x' }, contextWith(new AbortController().signal)));
    expect(error.message).toContain('was closed');
  });

  it('stops connecting when its signal aborts, leaving no process behind', async () => {
    const before = everythingChildren();
    const reason = new Error('shutting down');

    await expect(mcpCapabilities(everythingSource, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);

    expect(everythingChildren()).toEqual(before);
  });

  it('names the server when it cannot be started', async () => {
    const error = await rejectionOf(mcpCapabilities({ server: 'broken', command: process.execPath, args: ['-e', 'process.exit(3)'] }));
    expect(error).toMatchObject({ kind: 'upstream', layer: 'execution' });
    expect(error.message).toContain('cannot connect to MCP server "broken"');
  });

  it('refuses a malformed source before starting anything, naming its fields against the kind it names', async () => {
    const stdio = await rejectionOf(mcpCapabilities({ server: 'files', cmd: 'npx' } as never));
    expect(stdio).toMatchObject({ kind: 'invalid-input', layer: 'execution' });
    expect(stdio.message).toBe(
      'execution: the MCP source is invalid as a stdio source ({ server, command, args?, env?, cwd? }): command: Invalid input: expected string, received undefined; cmd: unknown key; remove it or check its spelling',
    );
    const http = await rejectionOf(mcpCapabilities({ server: 'files', url: 'ftp://example.com/mcp' }));
    expect(http.message).toBe('execution: the MCP source is invalid as an HTTP source ({ server, url, headers? }): url: Invalid URL');
  });
});

describe('mcpCapabilities over Streamable HTTP', () => {
  let server: McpHttpServer;
  beforeEach(async () => {
    server = await startMcpHttpServer();
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((capabilities) => capabilities.close()));
    await server.kill();
  });

  it('lists and calls tools; text becomes a string, structured content is kept', async () => {
    const tools = await open({ server: 'test', url: server.url });
    // Five tools, two a page: every page was read.
    expect(tools.map((capability) => capability.name)).toEqual(['test.greet', 'test.hang', 'test.fail', 'test.lookup_city', 'test.raw']);
    expect(server.listRequests()).toBe(3);
    // The server says "0.3": coerced to semver.
    expect(tools.every((capability) => capability.version === '0.3.0')).toBe(true);
    const { model, runtime } = runtimeWith(tools, [allowRuns, allowTest], [
      { toolCalls: [{ name: 'test_greet', arguments: { name: 'Ada' } }, { name: 'test_lookup_city', arguments: { city: 'Oslo' } }] },
      answer('done'),
    ]);

    const result = await runtime.run(request);
    await runtime.close();

    expect(result.status).toBe('completed');
    expect(result.toolCalls.map((call) => call.outcome)).toEqual([
      { status: 'ok', output: 'Hello, Ada!' },
      {
        status: 'ok',
        output: { content: [{ type: 'text', text: '{"city":"Oslo","population":709000}' }], structuredContent: { city: 'Oslo', population: 709_000 } },
      },
    ]);
    // The original name goes to the server.
    expect(server.calls).toEqual([
      { tool: 'greet', args: { name: 'Ada' } },
      { tool: 'lookup.city', args: { city: 'Oslo' } },
    ]);
    model.verify();
  });

  it('shows a schema zod cannot read as it is, and still requires an object', async () => {
    const tools = await open({ server: 'test', url: server.url });
    const raw = tools.find((capability) => capability.name === 'test.raw')!;
    expect(raw.parameters).toEqual(UNREADABLE_SCHEMA);
    expect(raw.input.safeParse('text').success).toBe(false);
    expect(raw.input.safeParse(null).success).toBe(false);
    const { model, runtime } = runtimeWith(tools, [allowRuns, allowTest], [{ toolCalls: [{ name: 'test_raw', arguments: { text: 'as is' } }] }, answer('ok')]);

    const result = await runtime.run(request);
    await runtime.close();

    expect(result.toolCalls[0]!.outcome).toEqual({ status: 'ok', output: 'as is' });
    expect(server.calls).toEqual([{ tool: 'raw', args: { text: 'as is' } }]);
    model.verify();
  });

  it('never sends arguments that break the schema', async () => {
    const tools = await open({ server: 'test', url: server.url });
    const { model, runtime } = runtimeWith(tools, [allowRuns, allowTest], [
      { toolCalls: [{ name: 'test_greet', arguments: { name: '' } }, { name: 'test_lookup_city', arguments: { city: 'Paris' } }, { name: 'test_greet', arguments: {} }] },
      answer('gave up'),
    ]);

    const result = await runtime.run(request);
    await runtime.close();

    expect(result.status).toBe('completed');
    expect(result.toolCalls.map((call) => call.outcome)).toEqual([
      expect.objectContaining({ status: 'error', error: expect.objectContaining({ kind: 'invalid-input' }) }),
      expect.objectContaining({ status: 'error', error: expect.objectContaining({ kind: 'invalid-input' }) }),
      expect.objectContaining({ status: 'error', error: expect.objectContaining({ kind: 'invalid-input' }) }),
    ]);
    expect(server.calls).toEqual([]);
    model.verify();
  });

  it('turns isError into a failed call with the server text', async () => {
    const tools = await open({ server: 'test', url: server.url });
    const { model, runtime } = runtimeWith(tools, [allowRuns, allowTest], [{ toolCalls: [{ name: 'test_fail', arguments: { reason: 'closed on Sundays' } }] }, answer('ok')]);

    const result = await runtime.run(request);
    await runtime.close();

    expect(result.status).toBe('completed');
    expect(result.toolCalls[0]!.outcome).toMatchObject({ status: 'error', error: { kind: 'tool-failed', message: expect.stringContaining('refused: closed on Sundays') } });
    const fail = tools.find((capability) => capability.name === 'test.fail')!;
    const error = await rejectionOf(fail.handler({ reason: 'no' }, contextWith(new AbortController().signal)));
    expect(error).toMatchObject({ kind: 'tool-failed', layer: 'execution' });
    model.verify();
  });

  it('ends a hanging call with a timeout error result; the server hears the cancellation; the run completes', async () => {
    const tools = await open({ server: 'test', url: server.url }, { timeoutMs: 200 });
    const { model, runtime } = runtimeWith(tools, [allowRuns, allowTest], [{ toolCalls: [{ name: 'test_hang', arguments: {} }] }, answer('it hung')]);

    const result = await runtime.run(request);
    await runtime.close();

    expect(result.status).toBe('completed');
    expect(result.output).toBe('it hung');
    expect(result.toolCalls[0]!.outcome).toMatchObject({ status: 'error', error: { kind: 'timeout' } });
    await vi.waitFor(() => expect(server.cancelled).toEqual(['hang']));
    model.verify();
  });

  it('turns a server killed mid-run into upstream error results; the run completes', async () => {
    const tools = await open({ server: 'test', url: server.url });
    void server.reached('hang').then(() => server.kill());
    const { model, runtime } = runtimeWith(tools, [allowRuns, allowTest], [
      { toolCalls: [{ name: 'test_greet', arguments: { name: 'Ada' } }] },
      { toolCalls: [{ name: 'test_hang', arguments: {} }] },
      { toolCalls: [{ name: 'test_greet', arguments: { name: 'Bob' } }] },
      answer('the server went away'),
    ]);

    const result = await runtime.run(request);
    await runtime.close();

    expect(result.status).toBe('completed');
    expect(result.output).toBe('the server went away');
    expect(result.toolCalls.map((call) => call.outcome.status)).toEqual(['ok', 'error', 'error']);
    for (const call of result.toolCalls.slice(1)) {
      expect(call.outcome).toMatchObject({ error: { message: expect.stringContaining('MCP server "test" is unreachable') } });
    }
    model.verify();
  });

  it('close() ends the session on the server', async () => {
    const tools = await open({ server: 'test', url: server.url });
    expect(server.sessions()).toBe(1);

    await tools.close();

    expect(server.sessions()).toBe(0);
  });
});

function contextWith(signal: AbortSignal) {
  return { signal, idempotencyKey: 'run-1:call-1', runId: 'run-1', callId: 'call-1', tenantId: 'acme', principalId: 'user-7' };
}
