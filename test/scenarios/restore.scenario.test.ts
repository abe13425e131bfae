import { describe, expect, it } from 'vitest';
import { isRunchartError, SCHEMA_VERSION, type PolicyRule } from '../../src/index.js';
import { createInMemoryRunStore, scriptedModel } from '../../src/testing/index.js';
import { allowRuns, request, runtimeWith, signalledModel, spiedAdd, spiedRefund, toolMessagesOf } from '../support/scenario.js';

const refundRules: PolicyRule[] = [
  allowRuns,
  { id: 'refunds-need-approval', stage: 'tool', effect: 'require_approval', capabilities: ['payments.*'] },
  { id: 'managers-approve-refunds', stage: 'approval', effect: 'allow', capabilities: ['payments.*'], principals: ['manager'] },
];
const askForRefund = { toolCalls: [{ name: 'payments_refund', arguments: { orderId: 'o-1', amount: 20 }, id: 'refund-1' }] };

/** Parks a refund run on `runStore` in a first runtime, then closes that runtime like a process exit. */
async function parkAndStop(runStore: ReturnType<typeof createInMemoryRunStore>, refund: ReturnType<typeof spiedRefund>) {
  const model = scriptedModel([askForRefund]);
  const runtime = runtimeWith({ model, runStore, capabilities: [refund.capability], rules: refundRules });
  const parked = await runtime.run(request({ input: 'refund order o-1' }));
  expect(parked.status).toBe('awaiting_approval');
  await runtime.close();
  model.verify();
  return parked;
}

describe('restore', () => {
  it('approves a parked run from a second runtime on the same store, which restores and completes it', async () => {
    const runStore = createInMemoryRunStore();
    const refund = spiedRefund();
    const parked = await parkAndStop(runStore, refund);
    expect((await runStore.load(parked.runId))?.status).toBe('awaiting_approval');

    const model = scriptedModel([{ text: 'the refund is done' }]);
    const runtime = runtimeWith({ model, runStore, capabilities: [refund.capability], rules: refundRules });
    const done = await runtime.approve(parked.runId, 'c0.0', { principalId: 'manager' });

    expect(done.status).toBe('completed');
    expect(done.runId).toBe(parked.runId);
    expect(done.traceId).toBe(parked.traceId);
    expect(done.output).toBe('the refund is done');
    expect(refund.calls).toHaveLength(1);
    expect(done.toolCalls[0]).toMatchObject({ callId: 'c0.0', outcome: { status: 'ok', output: { refunded: true } }, approval: { principalId: 'manager' } });
    // The restored run carries its conversation: the model sees the original call and its result.
    const second = model.requests[0]!;
    expect(second.messages.find((message) => message.role === 'user')).toEqual({ role: 'user', content: 'refund order o-1' });
    expect(toolMessagesOf(second)).toEqual([{ role: 'tool', toolCallId: 'refund-1', content: JSON.stringify({ refunded: true }) }]);
    expect(done.usage.modelCalls).toBe(2);
    model.verify();

    await runtime.drain();
    expect((await runStore.load(parked.runId))?.status).toBe('completed');
    expect(isRunchartError(await runtime.approve(parked.runId, 'c0.0', { principalId: 'manager' }).catch((error: unknown) => error))).toBe(true);
    expect(refund.calls).toHaveLength(1);
  });

  it('refuses, from the second runtime, an approval naming another tenant', async () => {
    const runStore = createInMemoryRunStore();
    const refund = spiedRefund();
    const parked = await parkAndStop(runStore, refund);

    const runtime = runtimeWith({ model: scriptedModel([]), runStore, capabilities: [refund.capability], rules: refundRules });
    const error = await runtime.approve(parked.runId, 'c0.0', { principalId: 'manager', tenantId: 'globex' }).catch((reason: unknown) => reason);

    expect(isRunchartError(error)).toBe(true);
    expect(refund.calls).toHaveLength(0);
    expect((await runStore.load(parked.runId))?.status).toBe('awaiting_approval');
  });

  it('recovers a parked run that then waits for its approval', async () => {
    const runStore = createInMemoryRunStore();
    const refund = spiedRefund();
    const parked = await parkAndStop(runStore, refund);

    const model = scriptedModel([{ text: 'done' }]);
    const runtime = runtimeWith({ model, runStore, capabilities: [refund.capability], rules: refundRules });
    const handles = await runtime.recover();

    expect(handles.map((handle) => handle.runId)).toEqual([parked.runId]);
    const resumed = await handles[0]!.result;
    expect(resumed.status).toBe('awaiting_approval');
    expect(resumed.toolCalls.at(-1)).toMatchObject({ callId: 'c0.0', outcome: { status: 'awaiting_approval' } });
    expect(refund.calls).toHaveLength(0);
    expect(model.requests).toHaveLength(0);

    const done = await runtime.approve(parked.runId, 'c0.0', { principalId: 'manager' });
    expect(done.status).toBe('completed');
    expect(refund.calls).toHaveLength(1);
    model.verify();
  });

  it('recovers a run stopped in the middle of a model step and runs the step again', async () => {
    const runStore = createInMemoryRunStore();
    const add = spiedAdd();
    const slow = signalledModel([{ text: 'never delivered' }], { delayMs: 20_000 });
    const first = runtimeWith({ model: slow, runStore, capabilities: [add.capability] });
    const handle = first.start(request());
    await slow.called;
    await first.close();
    expect(slow.signals[0]!.aborted).toBe(true);
    expect((await runStore.load(handle.runId))?.status).toBe('running');

    const model = scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }, { text: '5' }]);
    const runtime = runtimeWith({ model, runStore, capabilities: [add.capability] });
    const [resumed] = await runtime.recover();
    const result = await resumed!.result;

    expect(result.runId).toBe(handle.runId);
    expect(result.status).toBe('completed');
    expect(result.output).toBe('5');
    expect(add.calls).toHaveLength(1);
    expect(model.requests[0]!.messages.at(-1)).toEqual({ role: 'user', content: 'what is 2+3?' });
    model.verify();
  });

  it('refuses a persisted run of an unknown schemaVersion, naming both versions', async () => {
    const runStore = createInMemoryRunStore();
    await runStore.save({
      schemaVersion: 99,
      runId: 'from-the-future',
      tenantId: 'acme',
      principalId: 'user-7',
      status: 'running',
      updatedAt: 0,
      snapshot: { status: 'active', value: 'modelStep', context: {} },
    });
    const model = scriptedModel([]);
    const warnings: { message: string; error: unknown }[] = [];
    const runtime = runtimeWith({ model, runStore, onWarning: (message, error) => warnings.push({ message, error }) });

    // The run is refused and reported; recover() goes on with the runs it can read.
    expect(await runtime.recover()).toEqual([]);
    expect(warnings).toHaveLength(1);
    const error = warnings[0]!.error;
    expect(SCHEMA_VERSION).toBe(3);
    expect(isRunchartError(error)).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain('from-the-future');
    expect(message).toMatch(/\b99\b/);
    expect(message).toMatch(/schemaVersion 1 to 3\b/);
    model.verify();
  });

  it('returns a run by id, and nothing to another tenant, live and from the store', async () => {
    const runStore = createInMemoryRunStore();
    const model = scriptedModel([{ text: 'hello' }]);
    const runtime = runtimeWith({ model, runStore });

    const result = await runtime.run(request());
    await runtime.drain();

    expect(await runtime.get(result.runId)).toEqual(result);
    expect(await runtime.get(result.runId, { tenantId: 'acme' })).toEqual(result);
    expect(await runtime.get(result.runId, { tenantId: 'other' })).toBeUndefined();
    expect(await runtime.get('no-such-run')).toBeUndefined();

    const elsewhere = runtimeWith({ model: scriptedModel([]), runStore });
    expect(await elsewhere.get(result.runId)).toMatchObject({ runId: result.runId, status: 'completed', output: 'hello', tenantId: 'acme' });
    expect(await elsewhere.get(result.runId, { tenantId: 'other' })).toBeUndefined();
    model.verify();
  });

  it('returns a parked run by id to its tenant only', async () => {
    const refund = spiedRefund();
    const runtime = runtimeWith({ model: scriptedModel([askForRefund]), capabilities: [refund.capability], rules: refundRules });
    const parked = await runtime.run(request());

    expect((await runtime.get(parked.runId))?.status).toBe('awaiting_approval');
    expect(await runtime.get(parked.runId, { tenantId: 'other' })).toBeUndefined();
  });
});
