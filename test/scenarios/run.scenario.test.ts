import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createRuntime, isRunchartError, RunchartError, type TelemetryLayer } from '../../src/index.js';
import { recordingTelemetry, scriptedModel } from '../../src/testing/index.js';
import {
  allowRuns,
  countingMemory,
  request,
  runtimeWith,
  signalledModel,
  spied,
  spiedAdd,
  toolMessagesOf,
  untilAborted,
  deferred,
} from '../support/scenario.js';
import { tempDir } from '../support/temp.js';

const addTwoAndThree = { toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] };

describe('a run with one tool hop', () => {
  it('completes with the tool call, its decision, every stage decision and usage', async () => {
    const add = spiedAdd();
    const model = scriptedModel([addTwoAndThree, { text: '2 + 3 = 5' }]);
    const runtime = runtimeWith({ model, capabilities: [add.capability] });

    const result = await runtime.run(request());

    expect(result.runId).toEqual(expect.any(String));
    expect(result.runId.length).toBeGreaterThan(0);
    expect(result.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(result.status).toBe('completed');
    expect(result.output).toBe('2 + 3 = 5');
    expect(result.error).toBeUndefined();
    expect(result.toolCalls).toHaveLength(1);
    expect(result.toolCalls[0]).toMatchObject({
      capability: 'math.add',
      version: '1.0.0',
      toolName: 'math_add',
      args: JSON.stringify({ a: 2, b: 3 }),
      outcome: { status: 'ok', output: 5 },
      decision: { stage: 'tool', verdict: 'allow', ruleId: 'allow-math', capability: 'math.add' },
    });
    expect(result.decisions.map((decision) => [decision.stage, decision.verdict, decision.ruleId])).toEqual([
      ['precheck', 'allow', 'allow-runs'],
      ['tool', 'allow', 'allow-math'],
      ['output', 'allow', 'allow-runs'],
      ['memory.write', 'allow', 'allow-runs'],
    ]);
    expect(result.usage).toEqual({ modelCalls: 2, toolCalls: 1, inputTokens: 20, outputTokens: 10 });
    expect(result.background).toBe('queued');
    expect(add.calls.map((call) => call.args)).toEqual([{ a: 2, b: 3 }]);
    expect(add.calls[0]!.context).toMatchObject({ runId: result.runId, tenantId: 'acme', principalId: 'user-7', idempotencyKey: `${result.runId}:c0.0` });

    // The model saw the tool under its derived name, and got the result back under its own call id.
    expect(model.requests[0]!.tools.map((tool) => tool.name)).toEqual(['math_add']);
    expect(model.requests[0]!.tools[0]!.parameters).toMatchObject({ type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } });
    expect(toolMessagesOf(model.requests[1]!)).toEqual([{ role: 'tool', toolCallId: 'call_1_0', content: '5' }]);
    model.verify();
  });

  it('authorizes and executes two tool calls of one step before the next model step', async () => {
    const add = spiedAdd();
    const model = scriptedModel([
      {
        toolCalls: [
          { name: 'math_add', arguments: { a: 1, b: 2 }, id: 'first' },
          { name: 'math_add', arguments: { a: 10, b: 20 }, id: 'second' },
        ],
      },
      { text: '3 and 30' },
    ]);
    const runtime = runtimeWith({ model, capabilities: [add.capability] });

    const result = await runtime.run(request());

    expect(result.status).toBe('completed');
    expect(add.calls.map((call) => call.args)).toEqual([
      { a: 1, b: 2 },
      { a: 10, b: 20 },
    ]);
    expect(result.toolCalls.map((call) => [call.callId, call.outcome])).toEqual([
      ['c0.0', { status: 'ok', output: 3 }],
      ['c0.1', { status: 'ok', output: 30 }],
    ]);
    expect(result.decisions.filter((decision) => decision.stage === 'tool').map((decision) => decision.callId)).toEqual(['c0.0', 'c0.1']);
    expect(toolMessagesOf(model.requests[1]!)).toEqual([
      { role: 'tool', toolCallId: 'first', content: '3' },
      { role: 'tool', toolCallId: 'second', content: '30' },
    ]);
    const assistant = model.requests[1]!.messages.find((message) => message.role === 'assistant');
    expect(assistant).toMatchObject({ role: 'assistant', toolCalls: [{ id: 'first' }, { id: 'second' }] });
    expect(result.usage).toMatchObject({ modelCalls: 2, toolCalls: 2 });
    model.verify();
  });
});

describe('telemetry', () => {
  it('sees every state entered, every decision with its rule, and every tool call', async () => {
    const telemetry = recordingTelemetry();
    const model = scriptedModel([addTwoAndThree, { text: '5' }]);
    const runtime = runtimeWith({ model, capabilities: [spiedAdd().capability], telemetry });

    const result = await runtime.run(request({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736' }));
    await runtime.drain();

    expect(result.status).toBe('completed');
    expect(telemetry.runs).toHaveLength(1);
    const recorded = telemetry.runs[0]!;
    expect(recorded.identity).toMatchObject({ runId: result.runId, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', tenantId: 'acme', principalId: 'user-7' });
    expect(telemetry.statesOf(result.runId)).toEqual([
      'ingress',
      'policy',
      'retrieval',
      'modelStep',
      'toolExecution',
      'toolExecution.authorizing',
      'toolExecution.executing',
      'modelStep',
      'assembly',
      'background',
      'background.authorizing',
      'background.queueing',
      'completed',
    ]);
    const decisions = recorded.marks.flatMap((mark) => (mark.kind === 'decision' ? [mark.decision] : []));
    expect(decisions).toEqual(result.decisions);
    expect(decisions.every((decision) => decision.ruleId.length > 0)).toBe(true);
    const toolMarks = recorded.marks.filter((mark) => mark.kind === 'tool.call');
    expect(toolMarks).toEqual([{ kind: 'tool.call', callId: 'c0.0', toolName: 'math_add', capability: 'math.add', outcome: 'ok', result: '5' }]);
    expect(recorded.marks.filter((mark) => mark.kind === 'tool.start')).toEqual([{ kind: 'tool.start', callId: 'c0.0', toolName: 'math_add', capability: 'math.add', version: '1.0.0', arguments: '{"a":2,"b":3}' }]);
    expect(recorded.marks.filter((mark) => mark.kind === 'model.step')).toHaveLength(2);
    expect(recorded.endedWith).toBe('completed');
  });

  it('records invalid and denied tool calls too', async () => {
    const telemetry = recordingTelemetry();
    const model = scriptedModel([{ toolCalls: [{ name: 'nope', arguments: {} }] }, { text: 'done' }]);
    const runtime = runtimeWith({ model, capabilities: [spiedAdd().capability], telemetry });

    const result = await runtime.run(request());

    expect(result.status).toBe('completed');
    const toolMarks = telemetry.runs[0]!.marks.filter((mark) => mark.kind === 'tool.call');
    expect(toolMarks).toEqual([expect.objectContaining({ callId: 'c0.0', toolName: 'nope', outcome: 'invalid' })]);
    model.verify();
  });

  it.each([
    ['startRun', { startRun: () => { throw new Error('exporter down'); } } satisfies TelemetryLayer],
    ['record', { startRun: () => ({ record: () => { throw new Error('exporter down'); }, end: () => {} }) } satisfies TelemetryLayer],
    ['end', { startRun: () => ({ record: () => {}, end: () => { throw new Error('exporter down'); } }) } satisfies TelemetryLayer],
  ])('never fails a run when %s throws, and tells onWarning', async (_method, telemetry) => {
    const warnings: { message: string; error: unknown }[] = [];
    const add = spiedAdd();
    const model = scriptedModel([addTwoAndThree, { text: '5' }]);
    const runtime = runtimeWith({ model, capabilities: [add.capability], telemetry, onWarning: (message, error) => warnings.push({ message, error }) });

    const result = await runtime.run(request());
    await runtime.drain();

    expect(result.status).toBe('completed');
    expect(result.output).toBe('5');
    expect(add.calls).toHaveLength(1);
    expect(warnings.length).toBeGreaterThan(0);
    expect(warnings[0]!.message).toMatch(/telemetry/);
    expect((warnings[0]!.error as Error).message).toBe('exporter down');
    model.verify();
  });
});

describe('cancel', () => {
  it('ends a run in a slow model step as cancelled and aborts the model signal', async () => {
    const model = signalledModel([{ text: 'too late' }], { delayMs: 20_000 });
    const runtime = runtimeWith({ model });

    const handle = runtime.start(request());
    await model.called;
    handle.cancel('the user left');
    const result = await handle.result;

    expect(result.status).toBe('cancelled');
    expect(result.output).toBeNull();
    expect(model.signals).toHaveLength(1);
    expect(model.signals[0]!.aborted).toBe(true);
    expect(result.usage.modelCalls).toBe(0);
    expect(result.error).toEqual({ kind: 'cancelled', layer: 'runtime', message: 'runtime: the user left', retryable: false });
    model.verify();
  });

  it('cancels a run right after it starts: no model call, no recall', async () => {
    const model = scriptedModel([]);
    const memory = countingMemory();
    const runtime = runtimeWith({ model, memory });

    const handle = runtime.start(request());
    handle.cancel();
    const result = await handle.result;

    expect(result.status).toBe('cancelled');
    expect(memory.recalls).toBe(0);
    model.verify();
  });

  it('aborts the signal of a slow tool handler when the run is cancelled', async () => {
    const started = deferred<AbortSignal>();
    const slow = spied({
      name: 'slow.lookup',
      input: z.object({ key: z.string() }),
      handler: async (_args, { signal }) => {
        started.resolve(signal);
        return untilAborted(signal);
      },
    });
    const model = scriptedModel([{ toolCalls: [{ name: 'slow_lookup', arguments: { key: 'k' } }] }]);
    const runtime = runtimeWith({ model, capabilities: [slow.capability], rules: [allowRuns, { id: 'allow-slow', stage: 'tool', effect: 'allow', capabilities: ['slow.*'] }] });

    const handle = runtime.start(request());
    const signal = await started.promise;
    expect(signal.aborted).toBe(false);
    handle.cancel();
    const result = await handle.result;

    expect(result.status).toBe('cancelled');
    expect(signal.aborted).toBe(true);
    expect(slow.calls).toHaveLength(1);
    model.verify();
  });
});

describe('memory', () => {
  it('gives a second run of the same session the first turn as history, and no other tenant', async () => {
    const model = scriptedModel([{ text: 'Nice to meet you, Ada.' }, { text: 'You are Ada.' }, { text: 'I do not know.' }]);
    const runtime = runtimeWith({ model });

    const first = await runtime.run(request({ input: 'my name is Ada', sessionId: 's-1' }));
    expect(first.background).toBe('queued');
    await runtime.drain();
    const second = await runtime.run(request({ input: 'what is my name?', sessionId: 's-1' }));
    const other = await runtime.run(request({ input: 'what is my name?', sessionId: 's-1', tenantId: 'globex' }));

    expect(second.status).toBe('completed');
    expect(model.requests[1]!.messages).toEqual(
      expect.arrayContaining([
        { role: 'user', content: 'my name is Ada' },
        { role: 'assistant', content: 'Nice to meet you, Ada.' },
      ]),
    );
    const history = model.requests[1]!.messages.slice(1, 3);
    expect(history).toEqual([
      { role: 'user', content: 'my name is Ada' },
      { role: 'assistant', content: 'Nice to meet you, Ada.' },
    ]);
    expect(other.status).toBe('completed');
    expect(JSON.stringify(model.requests[2]!.messages)).not.toContain('Ada');
    model.verify();
  });

  it('completes with a warning when recall fails', async () => {
    const memory = countingMemory({ failRecall: true });
    const model = scriptedModel([{ text: 'hello' }]);
    const runtime = runtimeWith({ model, memory });

    const result = await runtime.run(request({ sessionId: 's-1' }));

    expect(result.status).toBe('completed');
    expect(result.output).toBe('hello');
    expect(memory.recalls).toBe(1);
    expect(result.warnings).toEqual([expect.stringMatching(/memory recall failed.*memory store is offline/)]);
    model.verify();
  });
});

describe('config', () => {
  it('refuses an unknown key with a RunchartError naming its path', () => {
    let thrown: unknown;
    try {
      createRuntime({ config: { runtime: { max_hops: 3 } } as never, model: scriptedModel([]) });
    } catch (error) {
      thrown = error;
    }
    expect(isRunchartError(thrown)).toBe(true);
    expect(thrown).toBeInstanceOf(RunchartError);
    expect((thrown as RunchartError).kind).toBe('invalid-input');
    expect((thrown as RunchartError).message).toContain('runtime.max_hops');
  });

  it('keeps store.keep_finished_runs finished runs in the in-memory store, the newest ones', async () => {
    const runtime = createRuntime({
      model: scriptedModel([{ text: 'one' }, { text: 'two' }, { text: 'three' }]),
      config: { store: { kind: 'memory', keep_finished_runs: 2 }, telemetry: { emit_structured_events: false } },
    });
    const results = [];
    for (const input of ['a', 'b', 'c']) results.push(await runtime.run({ input, tenantId: 'acme', principalId: 'u' }));
    await runtime.drain();
    const [first, second, third] = results.map((result) => result.runId);
    expect((await runtime.list({ tenantId: 'acme' })).map((summary) => summary.runId).sort()).toEqual([second, third].sort());
    expect(await runtime.get(first!)).toBeUndefined();
    expect(await runtime.get(third!)).toMatchObject({ status: 'completed', output: 'three' });
    await runtime.close();
  });

  it('keeps memory.keep_loaded_tenants tenants loaded in the lowdb memory, reading a dropped one again from its file', async () => {
    const dir = await tempDir();
    const model = scriptedModel([{ text: 'A1' }, { text: 'B1' }, { text: 'A2' }]);
    const runtime = createRuntime({ model, config: { store: { kind: 'lowdb', dir }, memory: { keep_loaded_tenants: 1 }, telemetry: { emit_structured_events: false } } });
    for (const tenantId of ['acme', 'globex']) {
      await runtime.run({ input: `hello from ${tenantId}`, tenantId, principalId: 'u', sessionId: 's' });
      await runtime.drain();
    }
    // Dropped (globex was used after it): a turn added to its file by hand is read with the file.
    for (const name of await readdir(join(dir, 'memory'))) {
      const file = join(dir, 'memory', name);
      if (JSON.parse((await readFile(file, 'utf8')).split('\n')[0]!).tenantId !== 'acme') continue;
      const manual = { key: 'manual', principalId: 'u', sessionId: 's', runId: 'manual', input: 'added by hand', output: 'noted', createdAt: new Date().toISOString() };
      await writeFile(file, `${JSON.stringify(manual)}\n`, { flag: 'a' });
    }
    await runtime.run({ input: 'again', tenantId: 'acme', principalId: 'u', sessionId: 's' });
    const contents = model.requests[2]!.messages.map((message) => message.content);
    expect(contents).toEqual(expect.arrayContaining(['hello from acme', 'A1', 'added by hand', 'noted', 'again']));
    expect(contents.join(' ')).not.toContain('globex');
    await runtime.close();
  });

  it('refuses an unknown top-level section', () => {
    expect(() => createRuntime({ config: { limit: {} } as never })).toThrow(/limit: unknown key/);
  });
});

describe('subscribing to a run', () => {
  it('hears no model text of a run whose output policy denies it: no delta, no text in a mark', async () => {
    const { createRuntime } = await import('../../src/index.js');
    const model = {
      name: 'streaming',
      async step(_request: unknown, options: { onDelta?: (delta: { text: string }) => void }) {
        options.onDelta?.({ text: 'the secret ' });
        options.onDelta?.({ text: 'answer' });
        return { text: 'the secret answer', toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
      },
    };
    const rules = [
      { id: 'runs', stage: ['precheck', 'memory.write'] as ('precheck' | 'memory.write')[], effect: 'allow' as const },
      { id: 'no-output', stage: 'output' as const, effect: 'deny' as const },
    ];
    const runtime = createRuntime({ model, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules } } });
    const handle = runtime.start({ input: 'hi', tenantId: 'acme', principalId: 'u' });
    const heard: unknown[] = [];
    handle.subscribe((event) => heard.push(event));
    const result = await handle.result;
    await runtime.drain();
    expect(result).toMatchObject({ status: 'denied', output: null });
    expect(heard.some((event) => (event as { type: string }).type === 'delta')).toBe(false);
    expect(JSON.stringify(heard)).not.toContain('secret');
    expect(heard).toContainEqual({ type: 'mark', mark: expect.objectContaining({ kind: 'model.step', text: null }) });
  });

  it('hears every mark, streamed model text and the settled result, in order', async () => {
    const { createRuntime } = await import('../../src/index.js');
    const model = {
      name: 'streaming',
      async step(_request: unknown, options: { onDelta?: (delta: { text: string }) => void }) {
        options.onDelta?.({ text: 'Hel' });
        options.onDelta?.({ text: 'lo' });
        return { text: 'Hello', toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
      },
    };
    const runtime = createRuntime({ model, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } } });
    const handle = runtime.start({ input: 'hi', tenantId: 'acme', principalId: 'u' });
    const events: string[] = [];
    handle.subscribe((event) => events.push(event.type === 'mark' ? `${event.mark.kind}${'state' in event.mark ? `:${event.mark.state}` : ''}` : event.type === 'delta' ? `delta:${event.text}` : `settled:${event.result.status}`));
    await handle.result;
    await runtime.drain();
    // The model's text is held until the output check allows it, then handed out in order.
    expect(events.indexOf('delta:Hel')).toBeGreaterThan(events.indexOf('state.enter:assembly'));
    expect(events.indexOf('delta:lo')).toBe(events.indexOf('delta:Hel') + 1);
    expect(events[events.indexOf('delta:Hel') - 1]).toBe('decision');
    expect(events.at(-1)).toBe('settled:completed');
    expect(events.filter((event) => event.startsWith('state.enter')).at(-1)).toBe('state.enter:completed');
  });
});
