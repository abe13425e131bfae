import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitFor } from 'xstate';
import { z } from 'zod';
import { type PolicyRule, createInMemoryRunStore, readableRun, createRuntime, defineCapability, isRunchartError, type PersistedRun, type RuntimeOptions } from '../../src/index.js';
import { recordingTelemetry, scriptedModel } from '../../src/testing/index.js';
import { spiedAdd } from '../support/scenario.js';
import { tempDir } from '../support/temp.js';

const rules: PolicyRule[] = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' as const },
  { id: 'refunds-need-approval', stage: 'tool' as const, effect: 'require_approval' as const, capabilities: ['payments.*'] },
  { id: 'managers', stage: 'approval' as const, effect: 'allow' as const, principals: ['manager'] },
];

function refundCapability(calls: unknown[]) {
  return defineCapability({
    name: 'payments.refund',
    version: '1.0.0',
    description: 'Refund an order',
    input: z.object({ orderId: z.string(), amount: z.number(), cardNumber: z.string().optional() }),
    output: z.object({ refunded: z.number() }),
    effects: 'external',
    sensitive: ['cardNumber'],
    handler: async (args) => {
      calls.push(args);
      return { refunded: args.amount };
    },
  });
}

const fixture = async (name: string) =>
  JSON.parse(await readFile(new URL(`../fixtures/snapshots/${name}`, import.meta.url), 'utf8')) as PersistedRun;

describe('persisted snapshots by schema version', () => {
  it('restores the v1 fixture of a run parked for approval and approves it to completion', async () => {
    const runStore = createInMemoryRunStore();
    await runStore.save(await fixture('v1-awaiting-approval.json'));
    const calls: unknown[] = [];
    const runtime = createRuntime({ runStore, capabilities: [refundCapability(calls)], model: scriptedModel([{ text: 'Refunded 20.' }]), config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules } } });
    const result = await runtime.approve('run-fixture-v1', 'c0.0', { principalId: 'manager' });
    expect(result).toMatchObject({ runId: 'run-fixture-v1', status: 'completed', output: 'Refunded 20.', traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
    expect(calls).toEqual([{ orderId: 'A-1', amount: 20 }]);
    expect(result.toolCalls[0]).toMatchObject({ capability: 'payments.refund', outcome: { status: 'ok', output: { refunded: 20 } } });
  });

  it('restores the v2 fixture (one shared layers actor) of a run parked for approval and approves it to completion under the invoking chart', async () => {
    const runStore = createInMemoryRunStore();
    await runStore.save(await fixture('v2-awaiting-approval.json'));
    const calls: unknown[] = [];
    const telemetry = recordingTelemetry();
    const runtime = createRuntime({
      runStore,
      telemetry,
      capabilities: [refundCapability(calls)],
      model: scriptedModel([{ text: 'Refunded 20.' }]),
      config: { store: { kind: 'memory' }, policy: { rules } },
    });
    const result = await runtime.approve('run-fixture-v2', 'c0.0', { principalId: 'manager' });
    expect(result).toMatchObject({ runId: 'run-fixture-v2', status: 'completed', output: 'Refunded 20.', traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
    expect(calls).toEqual([{ orderId: 'A-1', amount: 20 }]);
    expect(result.toolCalls[0]).toMatchObject({ capability: 'payments.refund', outcome: { status: 'ok', output: { refunded: 20 } } });
    expect(result.decisions.map((decision) => `${decision.stage}:${decision.verdict}`)).toEqual([
      'precheck:allow',
      'tool:require_approval',
      'approval:allow',
      'output:allow',
      'memory.write:allow',
    ]);
    // The restored run's telemetry carries on under the stored trace, with the stored identity.
    expect(telemetry.runs.map((run) => run.identity)).toEqual([
      { runId: 'run-fixture-v2', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', tenantId: 'acme', principalId: 'clerk-1', sessionId: 's-1' },
    ]);
    expect(telemetry.statesOf('run-fixture-v2')).toEqual([
      'toolExecution.reviewing',
      'toolExecution.executing',
      'modelStep',
      'assembly',
      'background',
      'background.authorizing',
      'background.queueing',
      'completed',
    ]);
    await runtime.close();
  });

  it('migrates v1 and v2 runs parked for approval to schemaVersion 3, with the pending wait invoked by its state', async () => {
    for (const name of ['v1-awaiting-approval.json', 'v2-awaiting-approval.json']) {
      const run = readableRun(await fixture(name));
      expect(run.schemaVersion).toBe(3);
      const snapshot = run.snapshot as { value: unknown; children: Record<string, { src: string; snapshot: { input: unknown; identity?: unknown } }> };
      expect(snapshot.value).toEqual({ toolExecution: 'awaitingApproval' });
      expect(Object.keys(snapshot.children).sort()).toEqual(['awaitApproval', 'telemetry']);
      expect(snapshot.children.awaitApproval).toEqual({ src: 'awaitApproval', syncSnapshot: false, snapshot: { status: 'active', input: { runId: run.runId, callId: 'c0.0' } } });
      expect(snapshot.children.telemetry!.snapshot.identity).toMatchObject({ runId: run.runId, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', tenantId: 'acme', principalId: 'clerk-1' });
    }
  });

  it('refuses a snapshot of an unknown version, naming both versions, and still resumes the others', async () => {
    const runStore = createInMemoryRunStore();
    await runStore.save({ ...(await fixture('v1-awaiting-approval.json')), runId: 'from-v4', schemaVersion: 4 });
    await runStore.save(await fixture('v1-awaiting-approval.json'));
    const warnings: unknown[] = [];
    const runtime = createRuntime({
      runStore,
      capabilities: [refundCapability([])],
      onWarning: (_message, error) => warnings.push(error),
      config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules } },
    });
    const handles = await runtime.recover();
    expect(handles.map((handle) => handle.runId)).toEqual(['run-fixture-v1']);
    expect((await handles[0]!.result).status).toBe('awaiting_approval');
    expect(isRunchartError(warnings[0])).toBe(true);
    expect((warnings[0] as Error).message).toMatch(/from-v4 was saved with schemaVersion 4.*schemaVersion 1 to 3/);
  });
});

describe('secrets never land in saved runs', () => {
  it('redacts sensitive arguments and secret patterns on disk, and a redacted call is refused after a restore', async () => {
    const dir = await tempDir();
    const calls: unknown[] = [];
    const options = (model: RuntimeOptions['model']): RuntimeOptions => ({
      capabilities: [refundCapability(calls)],
      model,
      config: { store: { kind: 'lowdb', dir }, policy: { rules }, telemetry: { emit_structured_events: false, redact_patterns: ['internal-code-[0-9]+'] } },
    });
    const first = createRuntime(
      options(
        scriptedModel([{ toolCalls: [{ name: 'payments_refund', arguments: { orderId: 'A-1', amount: 20, cardNumber: '4111111111111111' } }] }]),
      ),
    );
    const parked = await first.run({ input: 'refund A-1, key sk-live1234567890abcdef, code internal-code-42', tenantId: 'acme', principalId: 'clerk' });
    expect(parked.status).toBe('awaiting_approval');
    await first.close();

    const onDisk = await readFile(join(dir, 'runs.jsonl'), 'utf8');
    expect(onDisk).not.toContain('4111111111111111');
    expect(onDisk).not.toContain('sk-live1234567890abcdef');
    expect(onDisk).not.toContain('internal-code-42');
    expect(onDisk).toContain('[redacted]');

    const second = createRuntime(options(scriptedModel([(request) => ({ text: String(request.messages.at(-1)?.content), toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' })])));
    const result = await second.approve(parked.runId, parked.toolCalls[0]!.callId, { principalId: 'manager' });
    expect(calls).toEqual([]);
    expect(result.status).toBe('completed');
    expect(result.toolCalls[0]!.outcome).toMatchObject({ status: 'error', error: { message: expect.stringContaining('redacted or changed') } });
    await second.close();
  });
});

describe('deadlines are absolute and survive a restart', () => {
  it('rejects a parked call whose approval deadline passed while the process was down', async () => {
    const dir = await tempDir();
    const clock = { time: 1_000_000, now() { return this.time; } };
    const calls: unknown[] = [];
    const config = { store: { kind: 'lowdb' as const, dir }, telemetry: { emit_structured_events: false }, runtime: { approval_timeout_ms: 3_600_000 }, policy: { rules } };
    const first = createRuntime({
      config,
      clock,
      capabilities: [refundCapability(calls)],
      model: scriptedModel([{ toolCalls: [{ name: 'payments_refund', arguments: { orderId: 'A-1', amount: 5 } }] }]),
    });
    const parked = await first.run({ input: 'refund', tenantId: 'acme', principalId: 'clerk' });
    expect(parked.status).toBe('awaiting_approval');
    await first.close();

    clock.time += 2 * 3_600_000;
    const second = createRuntime({ config, clock, capabilities: [refundCapability(calls)], model: scriptedModel([{ text: 'The refund was not approved in time.' }]) });
    const [handle] = await second.recover();
    expect((await handle!.result).status).toBe('awaiting_approval');
    // The restored timer fires at once: the deadline passed while no process was up.
    await waitFor(handle!.actor, (snapshot) => snapshot.status === 'done');
    await second.drain();
    const result = (await second.get(parked.runId))!;
    expect(result.status).toBe('completed');
    expect(result.toolCalls[0]!.outcome).toEqual({ status: 'rejected', reason: 'no approval arrived before the approval deadline' });
    expect(calls).toEqual([]);
    await second.close();
  });

  it('keeps waiting for the time that is left when the deadline has not passed', async () => {
    const dir = await tempDir();
    const clock = { time: 1_000_000, now() { return this.time; } };
    const config = { store: { kind: 'lowdb' as const, dir }, telemetry: { emit_structured_events: false }, runtime: { approval_timeout_ms: 3_600_000 }, policy: { rules } };
    const first = createRuntime({ config, clock, capabilities: [refundCapability([])], model: scriptedModel([{ toolCalls: [{ name: 'payments_refund', arguments: { orderId: 'A-1', amount: 5 } }] }]) });
    const parked = await first.run({ input: 'refund', tenantId: 'acme', principalId: 'clerk' });
    await first.close();
    clock.time += 60_000;
    const second = createRuntime({ config, clock, capabilities: [refundCapability([])], model: scriptedModel([{ text: 'ok' }]) });
    const [handle] = await second.recover();
    expect((await handle!.result).status).toBe('awaiting_approval');
    // The journal's last line for the key wins; the deadline is the first one, not now + timeout.
    const lines = (await readFile(join(dir, 'journal.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { put?: { key: string; deadline?: number } });
    const deadlines = lines.filter((line) => line.put?.key === `${parked.runId}:c0.0:approval`).map((line) => line.put!.deadline);
    expect(deadlines.at(-1)).toBe(1_000_000 + 3_600_000);
    await second.close();
  });
});

describe('a saved step is one moment of the run', () => {
  it("holds, in every line of runs.jsonl, the telemetry child's state as the run's own state at that step", async () => {
    const dir = await tempDir();
    const runtime = createRuntime({
      capabilities: [spiedAdd().capability],
      model: scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }, { text: '5' }, { toolCalls: [{ name: 'math_add', arguments: { a: 1, b: 1 } }] }, { text: '2' }]),
      config: { store: { kind: 'lowdb', dir }, telemetry: { emit_structured_events: false }, policy: { rules: [...rules, { id: 'adding', stage: 'tool', effect: 'allow', capabilities: ['math.add'] }] } },
    });
    // Two runs at once, so that one's saves are written while the other moves on.
    await Promise.all([runtime.run({ input: 'add', tenantId: 'acme', principalId: 'u' }), runtime.run({ input: 'add', tenantId: 'acme', principalId: 'u' })]);
    await runtime.drain();
    await runtime.close();
    const lines = (await readFile(join(dir, 'runs.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as PersistedRun);
    const pathOf = (value: unknown): string => (typeof value === 'string' ? value : Object.entries(value as Record<string, unknown>).map(([key, inner]) => `${key}.${pathOf(inner)}`)[0]!);
    const steps = lines.map((run) => {
      const snapshot = run.snapshot as { value: unknown; children: { telemetry?: { snapshot: { state: string } } } };
      return { value: pathOf(snapshot.value), telemetry: snapshot.children.telemetry?.snapshot.state };
    });
    expect(steps.length).toBeGreaterThan(6);
    expect(steps.filter((step) => step.telemetry !== undefined && step.telemetry !== step.value)).toEqual([]);
  });
});
