import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCapability, type CapabilityDefinition } from '../../src/catalog/capability.js';
import type { Capability, CapabilityContext } from '../../src/catalog/contract.js';
import { createCatalog } from '../../src/catalog/registry.js';
import { RunchartError } from '../../src/errors.js';
import { ExecuteResult, hashArguments, type ExecuteRequest } from '../../src/execution/contract.js';
import { createGateway, createMemoryJournal, createSemaphore, type GatewayOptions } from '../../src/execution/gateway.js';

/** A promise with its resolve exposed, for ordering steps without timers. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

/** Resolves once `signal` aborts; never otherwise. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
}

function tool(overrides: Partial<CapabilityDefinition<unknown, unknown>> = {}): Capability {
  return defineCapability<unknown, unknown>({
    name: 'math.add',
    version: '1.0.0',
    description: 'Add two numbers',
    input: z.object({ a: z.number(), b: z.number() }) as z.ZodType<unknown>,
    output: z.number() as z.ZodType<unknown>,
    effects: 'read',
    retryBackoffMs: 0,
    handler: async (args) => {
      const { a, b } = args as { a: number; b: number };
      return a + b;
    },
    ...overrides,
  }) as Capability;
}

/** A capability whose handler counts its calls and records each context. */
function counted(overrides: Partial<CapabilityDefinition<unknown, unknown>> = {}) {
  const contexts: CapabilityContext[] = [];
  const inner = overrides.handler ?? (async (args: unknown) => (args as { a: number }).a + (args as { b: number }).b);
  const capability = tool({
    ...overrides,
    handler: async (args, context) => {
      contexts.push(context);
      return inner(args, context);
    },
  });
  return {
    capability,
    contexts,
    get calls() {
      return contexts.length;
    },
  };
}

let callCounter = 0;
function executeRequest(overrides: Partial<ExecuteRequest> = {}): ExecuteRequest {
  callCounter++;
  return {
    capability: 'math.add',
    version: '1.0.0',
    arguments: '{"a":2,"b":3}',
    idempotencyKey: `run-1:call-${callCounter}`,
    deadline: Date.now() + 5_000,
    runId: 'run-1',
    callId: `call-${callCounter}`,
    tenantId: 'acme',
    principalId: 'user-7',
    ...overrides,
  };
}

function gatewayWith(capabilities: Capability[], options: Omit<GatewayOptions, 'catalog'> = {}) {
  return createGateway({ catalog: createCatalog(capabilities), ...options });
}

const live = () => new AbortController().signal;

function expectError(result: ExecuteResult, kind: string) {
  expect(ExecuteResult.parse(result)).toEqual(result);
  expect(result.status).toBe('error');
  if (result.status !== 'error') throw new Error('unreachable');
  expect(result.error.kind).toBe(kind);
  expect(result.error.message).toMatch(/^execution: /);
  return result.error;
}

describe('gateway: the ok path', () => {
  it('parses the arguments, runs the handler and returns its output', async () => {
    const add = counted();
    const result = await gatewayWith([add.capability]).execute(executeRequest(), { signal: live() });
    expect(result).toEqual({ status: 'ok', output: 5 });
    expect(add.calls).toBe(1);
  });

  it('hands the handler the parsed arguments, with defaults applied', async () => {
    let seen: unknown;
    const capability = tool({
      input: z.object({ a: z.number(), b: z.number().default(10) }) as z.ZodType<unknown>,
      handler: async (args) => {
        seen = args;
        return 0;
      },
    });
    await gatewayWith([capability]).execute(executeRequest({ arguments: '{"a":1}' }), { signal: live() });
    expect(seen).toEqual({ a: 1, b: 10 });
  });

  it('hands the handler its context: signal, idempotency key and identity', async () => {
    const add = counted();
    const request = executeRequest({ idempotencyKey: 'run-9:call-3', runId: 'run-9', callId: 'call-3', tenantId: 'globex', principalId: 'u-2' });
    await gatewayWith([add.capability]).execute(request, { signal: live() });
    const [context] = add.contexts;
    expect(context).toMatchObject({ idempotencyKey: 'run-9:call-3', runId: 'run-9', callId: 'call-3', tenantId: 'globex', principalId: 'u-2' });
    expect(context!.signal).toBeInstanceOf(AbortSignal);
    expect(context!.signal.aborted).toBe(false);
  });

  it('returns the output as parsed by the output schema', async () => {
    const capability = tool({
      output: z.object({ total: z.number() }) as z.ZodType<unknown>,
      handler: async () => ({ total: 5, extra: 'dropped' }),
    });
    expect(await gatewayWith([capability]).execute(executeRequest(), { signal: live() })).toEqual({ status: 'ok', output: { total: 5 } });
  });

  it('turns an undefined output into null', async () => {
    const capability = tool({ output: undefined, handler: async () => undefined });
    expect(await gatewayWith([capability]).execute(executeRequest(), { signal: live() })).toEqual({ status: 'ok', output: null });
  });

  it('picks the capability by exact version', async () => {
    const v1 = tool({ version: '1.0.0', handler: async () => 1 });
    const v2 = tool({ version: '2.0.0', handler: async () => 2 });
    const gateway = gatewayWith([v1, v2]);
    expect(await gateway.execute(executeRequest({ version: '2.0.0' }), { signal: live() })).toEqual({ status: 'ok', output: 2 });
    expect(await gateway.execute(executeRequest({ version: '1.0.0' }), { signal: live() })).toEqual({ status: 'ok', output: 1 });
  });
});

describe('gateway: what the model sends', () => {
  it('returns an error naming an unknown capability', async () => {
    const error = expectError(await gatewayWith([tool()]).execute(executeRequest({ capability: 'get_weather' }), { signal: live() }), 'invalid-input');
    expect(error.message).toContain('get_weather');
    expect(error.retryable).toBe(false);
  });

  it('returns an error for a known name at an unknown version', async () => {
    const error = expectError(await gatewayWith([tool()]).execute(executeRequest({ version: '9.9.9' }), { signal: live() }), 'invalid-input');
    expect(error.message).toContain('math.add@9.9.9');
  });

  it.each(['{"a":2,', 'not json', '', '{a:2,b:3}', "{'a':2}"])('returns an error for malformed JSON %j without calling the handler', async (raw) => {
    const add = counted();
    const error = expectError(await gatewayWith([add.capability]).execute(executeRequest({ arguments: raw }), { signal: live() }), 'invalid-input');
    expect(error.message).toContain('not valid JSON');
    expect(error.message).toContain('math.add');
    expect(add.calls).toBe(0);
  });

  it.each(['null', '[]', '[2,3]', '"{}"', '5'])('never treats %j as an empty object', async (raw) => {
    const capability = counted({ input: z.object({ a: z.number().optional() }) as z.ZodType<unknown>, handler: async () => 0 });
    const result = await gatewayWith([capability.capability]).execute(executeRequest({ arguments: raw }), { signal: live() });
    expectError(result, 'invalid-input');
    expect(capability.calls).toBe(0);
  });

  it('returns an error naming the field that breaks the input schema, without calling the handler', async () => {
    const add = counted();
    const gateway = gatewayWith([add.capability]);
    const mistyped = expectError(await gateway.execute(executeRequest({ arguments: '{"a":2,"b":"three"}' }), { signal: live() }), 'invalid-input');
    expect(mistyped.message).toContain('input schema');
    expect(mistyped.message).toContain('b:');
    const missing = expectError(await gateway.execute(executeRequest({ arguments: '{"b":3}' }), { signal: live() }), 'invalid-input');
    expect(missing.message).toContain('a:');
    expect(add.calls).toBe(0);
  });

  it('returns an error for arguments over the size limit, without calling the handler', async () => {
    const add = counted();
    const gateway = gatewayWith([add.capability], { maxArgumentChars: 20 });
    const raw = JSON.stringify({ a: 1, b: 2, padding: 'x'.repeat(50) });
    const error = expectError(await gateway.execute(executeRequest({ arguments: raw }), { signal: live() }), 'invalid-input');
    expect(error.message).toContain('20');
    expect(add.calls).toBe(0);
  });

  it('accepts arguments exactly at the size limit', async () => {
    const raw = '{"a":2,"b":3}';
    const result = await gatewayWith([tool()], { maxArgumentChars: raw.length }).execute(executeRequest({ arguments: raw }), { signal: live() });
    expect(result).toEqual({ status: 'ok', output: 5 });
  });

  it('does not journal a call rejected for bad arguments', async () => {
    const journal = createMemoryJournal();
    const request = executeRequest({ arguments: '{' });
    await gatewayWith([tool()], { journal }).execute(request, { signal: live() });
    expect(journal.entries.has(request.idempotencyKey)).toBe(false);
  });
});

describe('gateway: handler failures, timeouts and outputs', () => {
  it('returns tool-failed when the handler throws', async () => {
    const capability = tool({
      handler: async () => {
        throw new Error('database is down');
      },
    });
    const error = expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'tool-failed');
    expect(error.message).toContain('math.add');
    expect(error.message).toContain('database is down');
    expect(error.retryable).toBe(false);
  });

  it('returns tool-failed when the handler throws something that is not an Error', async () => {
    const capability = tool({
      handler: async () => {
        throw 'a plain string';
      },
    });
    const error = expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'tool-failed');
    expect(error.message).toContain('a plain string');
  });

  it('times out a handler that waits for its signal, and aborts that signal', async () => {
    let handlerSignal: AbortSignal | undefined;
    const capability = tool({
      timeoutMs: 20,
      handler: async (_args, { signal }) => {
        handlerSignal = signal;
        return untilAborted(signal);
      },
    });
    const error = expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'timeout');
    expect(error.message).toContain('math.add');
    expect(error.retryable).toBe(true);
    expect(handlerSignal?.aborted).toBe(true);
  });

  it('times out a handler that ignores its signal and never resolves', async () => {
    let handlerSignal: AbortSignal | undefined;
    const capability = tool({
      timeoutMs: 20,
      handler: (_args, { signal }) => {
        handlerSignal = signal;
        return new Promise<never>(() => {});
      },
    });
    expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'timeout');
    expect(handlerSignal?.aborted).toBe(true);
  });

  it('hands an aborted signal to a handler that first reads it after the timeout', async () => {
    let context: { signal: AbortSignal } | undefined;
    const capability = tool({
      timeoutMs: 20,
      handler: (_args, handlerContext) => {
        context = handlerContext; // the signal is not read yet
        return new Promise<never>(() => {});
      },
    });
    expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'timeout');
    expect(context!.signal.aborted).toBe(true);
    expect((context!.signal.reason as Error).message).toContain('timed out');
  });

  it('rejects a handler that throws before it returns a promise, like one that rejects', async () => {
    const capability = tool({
      handler: () => {
        throw new Error('no promise at all');
      },
    });
    const error = expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'tool-failed');
    expect(error.message).toContain('no promise at all');
  });

  it('times out at the request deadline when it comes before the capability timeout', async () => {
    const capability = tool({ timeoutMs: 60_000, handler: (_args, { signal }) => untilAborted(signal) });
    const result = await gatewayWith([capability]).execute(executeRequest({ deadline: Date.now() + 20 }), { signal: live() });
    expectError(result, 'timeout');
  });

  it('returns a timeout without calling the handler when the deadline has passed', async () => {
    const add = counted();
    const request = executeRequest({ deadline: Date.now() - 1 });
    const error = expectError(await gatewayWith([add.capability]).execute(request, { signal: live() }), 'timeout');
    expect(error.message).toContain('deadline');
    expect(add.calls).toBe(0);
  });

  it('reads the clock from the now option', async () => {
    const add = counted();
    const gateway = gatewayWith([add.capability], { now: () => 1_000_000 });
    expectError(await gateway.execute(executeRequest({ deadline: 1_000_000 }), { signal: live() }), 'timeout');
    expect(await gateway.execute(executeRequest({ deadline: 1_005_000 }), { signal: live() })).toEqual({ status: 'ok', output: 5 });
    expect(add.calls).toBe(1);
  });

  it('returns tool-failed naming the field when the output breaks its schema', async () => {
    const capability = tool({
      output: z.object({ total: z.number() }) as z.ZodType<unknown>,
      handler: async () => ({ total: 'five' }),
    });
    const error = expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'tool-failed');
    expect(error.message).toContain('output schema');
    expect(error.message).toContain('total');
    expect(error.retryable).toBe(false);
  });

  it('returns tool-failed for an output over the size limit', async () => {
    const capability = tool({ output: z.string() as z.ZodType<unknown>, handler: async () => 'x'.repeat(100) });
    const error = expectError(await gatewayWith([capability], { maxResultChars: 50 }).execute(executeRequest(), { signal: live() }), 'tool-failed');
    expect(error.message).toContain('50');
  });

  it('accepts an output whose JSON is exactly at the size limit', async () => {
    const capability = tool({ output: z.string() as z.ZodType<unknown>, handler: async () => 'x'.repeat(48) });
    const result = await gatewayWith([capability], { maxResultChars: 50 }).execute(executeRequest(), { signal: live() });
    expect(result).toEqual({ status: 'ok', output: 'x'.repeat(48) });
  });

  it('handles an output that cannot be serialized', async () => {
    const capability = tool({ output: undefined, handler: async () => 10n });
    const gateway = gatewayWith([capability]);
    const settled = await gateway.execute(executeRequest(), { signal: live() }).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    expect(settled).toBeDefined();
    expect('result' in settled && settled.result.status === 'error' && settled.result.error.kind).toBe('tool-failed');
  });
});

describe('gateway: retries', () => {
  it('retries a retryable failure and succeeds on the third attempt', async () => {
    let attempts = 0;
    const capability = tool({
      retries: 2,
      retryBackoffMs: 1,
      handler: async () => {
        attempts++;
        if (attempts < 3) throw new RunchartError('tool-failed', 'execution', 'flaky', { retryable: true });
        return 42;
      },
    });
    const journal = createMemoryJournal();
    const request = executeRequest();
    const result = await gatewayWith([capability], { journal }).execute(request, { signal: live() });
    expect(result).toEqual({ status: 'ok', output: 42 });
    expect(attempts).toBe(3);
    expect(journal.entries.get(request.idempotencyKey)).toMatchObject({ state: 'completed', attempts: 3, result: { status: 'ok', output: 42 } });
  });

  it('gives up after the last retry and returns the last failure', async () => {
    let attempts = 0;
    const capability = tool({
      retries: 2,
      handler: async () => {
        attempts++;
        throw new RunchartError('tool-failed', 'execution', `flaky ${attempts}`, { retryable: true });
      },
    });
    const error = expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'tool-failed');
    expect(attempts).toBe(3);
    expect(error.message).toContain('flaky 3');
    expect(error.retryable).toBe(true);
  });

  it('does not retry a plain error', async () => {
    let attempts = 0;
    const capability = tool({
      retries: 3,
      handler: async () => {
        attempts++;
        throw new Error('bad');
      },
    });
    expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'tool-failed');
    expect(attempts).toBe(1);
  });

  it('does not retry a RunchartError that is not retryable', async () => {
    let attempts = 0;
    const capability = tool({
      retries: 3,
      handler: async () => {
        attempts++;
        throw new RunchartError('tool-failed', 'execution', 'permanent', { retryable: false });
      },
    });
    expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'tool-failed');
    expect(attempts).toBe(1);
  });

  it('does not retry an output that breaks its schema', async () => {
    let attempts = 0;
    const capability = tool({
      retries: 3,
      handler: async () => {
        attempts++;
        return 'not a number';
      },
    });
    expectError(await gatewayWith([capability]).execute(executeRequest(), { signal: live() }), 'tool-failed');
    expect(attempts).toBe(1);
  });

  it('retries a timeout', async () => {
    let attempts = 0;
    const capability = tool({
      retries: 1,
      timeoutMs: 20,
      handler: async (_args, { signal }) => {
        attempts++;
        if (attempts === 1) return untilAborted(signal);
        return 7;
      },
    });
    expect(await gatewayWith([capability]).execute(executeRequest(), { signal: live() })).toEqual({ status: 'ok', output: 7 });
    expect(attempts).toBe(2);
  });

  it('passes the same idempotency key to every attempt', async () => {
    const keys: string[] = [];
    const capability = tool({
      retries: 2,
      handler: async (_args, { idempotencyKey }) => {
        keys.push(idempotencyKey);
        if (keys.length < 3) throw new RunchartError('tool-failed', 'execution', 'flaky', { retryable: true });
        return 1;
      },
    });
    await gatewayWith([capability]).execute(executeRequest({ idempotencyKey: 'run-1:call-77' }), { signal: live() });
    expect(keys).toEqual(['run-1:call-77', 'run-1:call-77', 'run-1:call-77']);
  });
});

describe('gateway: journal', () => {
  it('runs the handler once for two executions with the same idempotency key and returns the same result', async () => {
    let calls = 0;
    const capability = tool({
      output: z.object({ call: z.number() }) as z.ZodType<unknown>,
      handler: async () => ({ call: ++calls }),
    });
    const journal = createMemoryJournal();
    const gateway = gatewayWith([capability], { journal });
    const request = executeRequest({ idempotencyKey: 'run-1:call-once' });
    const first = await gateway.execute(request, { signal: live() });
    const second = await gateway.execute({ ...request }, { signal: live() });
    expect(first).toEqual({ status: 'ok', output: { call: 1 } });
    expect(second).toEqual(first);
    expect(calls).toBe(1);
    expect(journal.entries.get('run-1:call-once')).toMatchObject({ key: 'run-1:call-once', state: 'completed', attempts: 1, result: first });
  });

  it('runs the handler again for a different idempotency key', async () => {
    const add = counted();
    const gateway = gatewayWith([add.capability]);
    await gateway.execute(executeRequest({ idempotencyKey: 'k-1' }), { signal: live() });
    await gateway.execute(executeRequest({ idempotencyKey: 'k-2' }), { signal: live() });
    expect(add.calls).toBe(2);
    expect(add.contexts.map((context) => context.idempotencyKey)).toEqual(['k-1', 'k-2']);
  });

  it('replays a journaled failure instead of running the handler again', async () => {
    let calls = 0;
    const capability = tool({
      handler: async () => {
        calls++;
        throw new Error('once');
      },
    });
    const gateway = gatewayWith([capability]);
    const request = executeRequest();
    const first = await gateway.execute(request, { signal: live() });
    const second = await gateway.execute(request, { signal: live() });
    expect(second).toEqual(first);
    expect(calls).toBe(1);
  });

  it('returns a completed entry from a shared journal without running the handler', async () => {
    const journal = createMemoryJournal();
    await journal.put({ key: 'run-1:done', state: 'completed', result: { status: 'ok', output: 99 }, attempts: 1, updatedAt: 0 });
    const add = counted();
    const result = await gatewayWith([add.capability], { journal }).execute(executeRequest({ idempotencyKey: 'run-1:done' }), { signal: live() });
    expect(result).toEqual({ status: 'ok', output: 99 });
    expect(add.calls).toBe(0);
  });

  it('runs a call again when the journal shows it only started, counting attempts on', async () => {
    const journal = createMemoryJournal();
    await journal.put({ key: 'run-1:crashed', state: 'started', attempts: 1, updatedAt: 0 });
    const add = counted();
    const result = await gatewayWith([add.capability], { journal }).execute(executeRequest({ idempotencyKey: 'run-1:crashed' }), { signal: live() });
    expect(result).toEqual({ status: 'ok', output: 5 });
    expect(add.calls).toBe(1);
    expect(journal.entries.get('run-1:crashed')).toMatchObject({ state: 'completed', attempts: 2 });
  });

  it('records the start before the handler runs, with the clock from now', async () => {
    const journal = createMemoryJournal();
    let entryDuringCall: unknown;
    const capability = tool({
      handler: async (_args, { idempotencyKey }) => {
        entryDuringCall = { ...journal.entries.get(idempotencyKey) };
        return 1;
      },
    });
    const request = executeRequest({ deadline: 2_000_000 });
    await gatewayWith([capability], { journal, now: () => 1_000_000 }).execute(request, { signal: live() });
    expect(entryDuringCall).toEqual({ key: request.idempotencyKey, runId: request.runId, state: 'started', attempts: 1, deadline: 2_000_000, updatedAt: 1_000_000 });
  });

  it('keeps the first deadline when a started call is replayed (deadlines are absolute)', async () => {
    const journal = createMemoryJournal();
    await journal.put({ key: 'run-1:call-1', state: 'started', attempts: 1, deadline: 1_000_000, updatedAt: 999_000 });
    let calls = 0;
    const capability = tool({ handler: async () => ++calls });
    const result = await gatewayWith([capability], { journal, now: () => 1_000_001 }).execute(
      executeRequest({ idempotencyKey: 'run-1:call-1', deadline: 5_000_000 }),
      { signal: live() },
    );
    expect(result).toMatchObject({ status: 'error', error: { kind: 'timeout' } });
    expect(calls).toBe(0);
  });
});

describe('gateway: cancellation', () => {
  it('rejects when the run signal is already aborted, without calling the handler', async () => {
    const add = counted();
    const controller = new AbortController();
    controller.abort(new Error('run cancelled'));
    await expect(gatewayWith([add.capability]).execute(executeRequest(), { signal: controller.signal })).rejects.toThrow('run cancelled');
    expect(add.calls).toBe(0);
  });

  it('rejects when the run is cancelled during the call, and aborts the handler signal', async () => {
    const started = deferred();
    let handlerSignal: AbortSignal | undefined;
    const capability = tool({
      timeoutMs: 10_000,
      handler: async (_args, { signal }) => {
        handlerSignal = signal;
        started.resolve();
        return untilAborted(signal);
      },
    });
    const controller = new AbortController();
    const pending = gatewayWith([capability]).execute(executeRequest(), { signal: controller.signal });
    await started.promise;
    controller.abort(new Error('run cancelled'));
    await expect(pending).rejects.toThrow('run cancelled');
    expect(handlerSignal?.aborted).toBe(true);
  });

  it('rejects when the run is cancelled between retries', async () => {
    const controller = new AbortController();
    let attempts = 0;
    const capability = tool({
      retries: 3,
      retryBackoffMs: 10_000,
      handler: async () => {
        attempts++;
        setTimeout(() => controller.abort(new Error('run cancelled')), 1);
        throw new RunchartError('tool-failed', 'execution', 'flaky', { retryable: true });
      },
    });
    await expect(gatewayWith([capability]).execute(executeRequest(), { signal: controller.signal })).rejects.toThrow('run cancelled');
    expect(attempts).toBe(1);
  });
});

describe('gateway: concurrency', () => {
  it('runs at most `concurrency` handlers at once', async () => {
    let active = 0;
    let maxActive = 0;
    const gates = Array.from({ length: 5 }, () => deferred());
    const started: number[] = [];
    const capability = tool({
      input: z.object({ index: z.number() }) as z.ZodType<unknown>,
      handler: async (args) => {
        const { index } = args as { index: number };
        active++;
        maxActive = Math.max(maxActive, active);
        started.push(index);
        await gates[index]!.promise;
        active--;
        return index;
      },
    });
    const gateway = gatewayWith([capability], { concurrency: 2 });
    const pending = gates.map((_gate, index) => gateway.execute(executeRequest({ arguments: JSON.stringify({ index }) }), { signal: live() }));
    // Release them one by one, in the order they started, until all have run.
    for (let released = 0; released < gates.length; released++) {
      while (started.length <= released) await new Promise((resolve) => setImmediate(resolve));
      gates[started[released]!]!.resolve();
    }
    const results = await Promise.all(pending);
    expect(results.map((result) => result.status)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    expect(maxActive).toBe(2);
  });
});

describe('hashArguments', () => {
  it('is the sha256 hex of the exact argument text, so an approval binds to every byte', () => {
    expect(hashArguments('{"a":2,"b":3}')).toBe(createHash('sha256').update('{"a":2,"b":3}').digest('hex'));
    expect(hashArguments('{"a":2, "b":3}')).not.toBe(hashArguments('{"a":2,"b":3}'));
    expect(hashArguments('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});

describe('createSemaphore', () => {
  it('lets at most `limit` tasks run at once and runs them all', async () => {
    const semaphore = createSemaphore(3);
    let active = 0;
    let maxActive = 0;
    const tasks = Array.from({ length: 10 }, (_unused, index) =>
      semaphore.run(async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((resolve) => setImmediate(resolve));
        active--;
        return index;
      }),
    );
    expect(await Promise.all(tasks)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(maxActive).toBe(3);
    expect(active).toBe(0);
  });

  it('starts waiting tasks in the order they arrived', async () => {
    const semaphore = createSemaphore(1);
    const order: number[] = [];
    const first = deferred();
    const running = semaphore.run(async () => {
      order.push(0);
      await first.promise;
    });
    const waiting = [1, 2, 3].map((index) => semaphore.run(async () => void order.push(index)));
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual([0]);
    first.resolve();
    await Promise.all([running, ...waiting]);
    expect(order).toEqual([0, 1, 2, 3]);
  });

  it('frees the slot when a task fails', async () => {
    const semaphore = createSemaphore(1);
    await expect(semaphore.run(async () => Promise.reject(new Error('task failed')))).rejects.toThrow('task failed');
    expect(await semaphore.run(async () => 'next')).toBe('next');
  });

  it('keeps the limit after failures', async () => {
    const semaphore = createSemaphore(2);
    let active = 0;
    let maxActive = 0;
    const tasks = Array.from({ length: 8 }, (_unused, index) =>
      semaphore
        .run(async () => {
          active++;
          maxActive = Math.max(maxActive, active);
          await new Promise((resolve) => setImmediate(resolve));
          active--;
          if (index % 2 === 0) throw new Error(`task ${index}`);
          return index;
        })
        .catch(() => 'failed'),
    );
    await Promise.all(tasks);
    expect(maxActive).toBe(2);
  });
});
