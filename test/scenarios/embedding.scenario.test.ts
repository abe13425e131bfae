import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createActor, setup, waitFor } from 'xstate';
import { z } from 'zod';
import {
  approvalActor,
  backgroundActor,
  createCatalog,
  createGateway,
  createInMemoryMemory,
  createMemoryQueue,
  createRuntime,
  createRulesPolicy,
  defineCapability,
  createMemoryJournal,
  executionActor,
  isRunchartError,
  ingressActor,
  memoryActor,
  modelActor,
  policyActor,
  runMachine,
  settingsFrom,
  parseConfig,
  toRunResult,
  type RunContext,
} from '../../src/index.js';
import { scriptedModel } from '../../src/testing/index.js';
import { openStoreDirectory } from '../../src/store/directory.js';
import { tempDir } from '../support/temp.js';

const add = defineCapability({
  name: 'math.add',
  version: '1.0.0',
  description: 'Add two numbers',
  input: z.object({ a: z.number(), b: z.number() }),
  output: z.number(),
  effects: 'read',
  handler: ({ a, b }) => a + b,
});
const rules = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'] as ('precheck' | 'output' | 'memory.write')[], effect: 'allow' as const },
  { id: 'math', stage: 'tool' as const, effect: 'allow' as const, capabilities: ['math.*'] },
];

describe('the embedded defaults', () => {
  it('keep runs, the journal, the queue and memory in append-only files under store.dir', async () => {
    const dir = await tempDir();
    const runtime = createRuntime({
      config: { store: { dir }, policy: { rules }, telemetry: { emit_structured_events: false } },
      capabilities: [add],
      model: scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }, { text: '5' }]),
    });
    const result = await runtime.run({ input: 'what is 2+3?', tenantId: 'acme', principalId: 'u', sessionId: 's' });
    await runtime.drain();
    await runtime.close();
    expect(result.status).toBe('completed');
    for (const file of ['runs.jsonl', 'runs-finished.jsonl', 'journal.jsonl', 'queue.jsonl', 'memory']) expect(existsSync(join(dir, file)), file).toBe(true);
    expect(existsSync(join(dir, 'lock'))).toBe(false);
    // A finished run is one line of the append-only file; its steps before are lines of runs.jsonl that no longer count.
    const finished = readFileSync(join(dir, 'runs-finished.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    expect(finished).toEqual([expect.objectContaining({ runId: result.runId, schemaVersion: 3, status: 'completed', tenantId: 'acme' })]);
    const steps = readFileSync(join(dir, 'runs.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    expect(steps.length).toBeGreaterThan(0);
    expect(steps.every((run) => run.runId === result.runId && run.status === 'running')).toBe(true);
    // A finished run's journal entries are released: nothing will replay its calls.
    const journal = readFileSync(join(dir, 'journal.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    expect(journal.at(-1)).toEqual({ release: result.runId });
    // The write-back went to the tenant's own memory file.
    const memory = readdirSync(join(dir, 'memory'));
    expect(memory).toHaveLength(1);
    const [header, item, ...more] = readFileSync(join(dir, 'memory', memory[0]!), 'utf8').trim().split('\n').map((line) => JSON.parse(line));
    expect(header).toEqual({ schemaVersion: 2, tenantId: 'acme' });
    expect(item).toMatchObject({ key: `${result.runId}:memory.write`, input: 'what is 2+3?', output: '5' });
    expect(more).toEqual([]);
  });
});

describe('the run machine in your own XState system', () => {
  it('runs as a child actor of a parent machine, with each layer call provided through the actor factories', async () => {
    const config = parseConfig({ policy: { rules } });
    const catalog = createCatalog([add]);
    const policy = createRulesPolicy(config.policy.rules);
    const memory = createInMemoryMemory();
    const queue = createMemoryQueue({ handlers: { 'memory.write': async () => {} } });
    const provided = runMachine.provide({
      actors: {
        acceptRequest: ingressActor({ maxInputChars: 1000, requireTraceId: false, catalog, policy, newTraceId: () => '4bf92f3577b34da6a3ce929d0e0e4736' }),
        evaluatePolicy: policyActor(policy),
        recallMemory: memoryActor(memory),
        callModel: modelActor(scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 20, b: 22 } }] }, { text: '42' }])),
        executeTool: executionActor(createGateway({ catalog }), { now: Date.now, deadlineMs: 5_000 }),
        enqueueBackground: backgroundActor(queue, []),
        awaitApproval: approvalActor(createMemoryJournal(), { now: Date.now, timeoutMs: 60_000 }),
      },
    });
    const parent = setup({
      types: { context: {} as { answer: string | null } },
      actors: { agentRun: provided },
    }).createMachine({
      context: { answer: null },
      initial: 'asking',
      states: {
        asking: {
          invoke: {
            id: 'agentRun',
            src: 'agentRun',
            input: { runId: 'embedded-1', request: { input: 'what is 20+22?', tenantId: 'acme', principalId: 'u' }, settings: settingsFrom(config) },
            onDone: { target: 'answered' },
          },
        },
        answered: { type: 'final' },
      },
    });
    const actor = createActor(parent).start();
    const child = actor.getSnapshot().children.agentRun!;
    const finished = await waitFor(child, (snapshot) => snapshot.status === 'done');
    const result = toRunResult(finished.value, finished.context as RunContext);
    expect(result).toMatchObject({ status: 'completed', output: '42', usage: { modelCalls: 2, toolCalls: 1 } });
    await waitFor(actor, (snapshot) => snapshot.status === 'done');
  });

  it('fails a run whose layers are not provided, naming what to provide', async () => {
    const config = parseConfig({});
    const actor = createActor(runMachine, { input: { runId: 'bare-1', request: { input: 'hi', tenantId: 'acme', principalId: 'u' }, settings: settingsFrom(config) } }).start();
    const finished = await waitFor(actor, (snapshot) => snapshot.status === 'done');
    expect(finished.value).toBe('failed');
    expect(finished.context.error).toMatchObject({ kind: 'not-provided', layer: 'runtime' });
    expect(finished.context.error?.message).toMatch(/nothing answers "acceptRequest".*provide\(\{ actors: \{ acceptRequest/);
  });
});

describe('a runtime used by mistake', () => {
  it('refuses an option createRuntime does not take, naming it and the nearest one it does', () => {
    const attempt = (options: object) => {
      try {
        createRuntime(options as never);
      } catch (error) {
        return error as Error;
      }
      throw new Error('createRuntime accepted the options');
    };
    expect(attempt({ modell: scriptedModel([]) }).message).toBe('createRuntime: unknown option "modell"; did you mean "model"?');
    expect(attempt({ confg: {} }).message).toBe('createRuntime: unknown option "confg"; did you mean "config"?');
    const unrelated = attempt({ store: { kind: 'memory' } });
    expect(isRunchartError(unrelated) && unrelated.kind).toBe('invalid-input');
    expect(unrelated.message).toMatch(/^createRuntime: unknown option "store"; the options are config, model, capabilities, .*acceptOnly$/);
  });

  it('refuses to start or review runs once closed, with an error that says so, and closes once however often asked', async () => {
    let closes = 0;
    const runtime = createRuntime({ model: scriptedModel([{ text: 'hi' }]), config: { store: { kind: 'memory' } }, resources: [{ close: () => void closes++ }] });
    expect((await runtime.run({ input: 'hello', tenantId: 'acme', principalId: 'user-7' })).status).toBe('completed');
    await Promise.all([runtime.close(), runtime.close()]);
    await runtime.close();
    expect(closes).toBe(1);
    const message = 'runtime: this runtime is closed; create a new one with createRuntime to start or review runs';
    expect(() => runtime.start({ input: 'hello', tenantId: 'acme', principalId: 'user-7' })).toThrow(message);
    for (const attempt of [
      () => runtime.run({ input: 'hello', tenantId: 'acme', principalId: 'user-7' }),
      () => runtime.approve('run-1', 'c0.0', { principalId: 'manager' }),
      () => runtime.reject('run-1', 'c0.0', { principalId: 'manager' }),
      () => runtime.submit({ input: 'hello', tenantId: 'acme', principalId: 'user-7' }),
      () => runtime.recover(),
    ]) {
      const error = await attempt().then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(isRunchartError(error) && error.kind).toBe('invalid-input');
      expect((error as Error).message).toBe(message);
    }
  });
});

describe('a store directory handed to the runtime', () => {
  it('is closed with the runtime, its lock removed, even when no run came to use it', async () => {
    const dir = await tempDir();
    const storeDirectory = await openStoreDirectory(dir);
    const runtime = createRuntime({ config: { store: { kind: 'lowdb', dir } }, storeDirectory });
    await runtime.close();
    expect(existsSync(join(dir, 'lock'))).toBe(false);
    (await openStoreDirectory(dir)).close();
  });
});

describe('a store another runtime holds', () => {
  it('fails the second runtime’s run as the caller’s mistake, naming the holder, with one warning, and lists nothing without a tenant', async () => {
    const dir = await tempDir();
    const config = { store: { kind: 'lowdb' as const, dir } };
    const first = createRuntime({ config, model: scriptedModel([{ text: 'first' }]) });
    expect((await first.run({ input: 'hi', tenantId: 'acme', principalId: 'user-7' })).status).toBe('completed');
    const warnings: string[] = [];
    const second = createRuntime({ config, model: scriptedModel([]), onWarning: (message) => warnings.push(message) });
    try {
      const error = await second.run({ input: 'hi', tenantId: 'acme', principalId: 'user-7' }).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(isRunchartError(error) && { kind: error.kind, layer: error.layer }).toEqual({ kind: 'invalid-input', layer: 'store' });
      expect((error as Error).message).toMatch(new RegExp(`could not be saved: store: .*lock is held by process ${process.pid} .*a store has one writer`));
      expect(warnings.filter((warning) => warning.startsWith('store: saving run'))).toHaveLength(1);
      const unlisted = await first.list({} as never).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect((unlisted as Error).message).toBe("runtime: list needs the tenant whose runs to list, as { tenantId: 'acme' }");
      expect((await first.list({ tenantId: 'acme' })).map((run) => run.status)).toEqual(['completed']);
    } finally {
      await second.close();
      await first.close();
    }
  });
});
