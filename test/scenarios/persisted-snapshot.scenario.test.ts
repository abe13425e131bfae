// The runtime builds a run's persisted snapshot itself (`persistedSnapshotOf`), without XState's
// walk of the whole context. These runs check that it is XState's own `getPersistedSnapshot()`,
// key for key and in the same order, at every step of every kind of run, a restored one included:
// a change of format in a new XState fails here, not in a user's store.
import { isDeepStrictEqual } from 'node:util';
import type { AnyActorRef, AnyMachineSnapshot, InspectionEvent } from 'xstate';
import { afterEach, describe, expect, it } from 'vitest';
import { createInMemoryRunStore, type PolicyRule } from '../../src/index.js';
import { persistedSnapshotOf } from '../../src/store/snapshot.js';
import { scriptedModel, type ScriptedStep } from '../../src/testing/index.js';
import { allowMath, allowRuns, deferred, request, runtimeWith, spiedAdd, spiedRefund } from '../support/scenario.js';

const refundsNeedApproval: PolicyRule = { id: 'refunds-need-approval', stage: 'tool', effect: 'require_approval', capabilities: ['payments.*'] };
const anyoneApproves: PolicyRule = { id: 'anyone-approves', stage: 'approval', effect: 'allow', capabilities: ['payments.*'] };

type Runtime = ReturnType<typeof runtimeWith>;
const opened: Runtime[] = [];

afterEach(async () => {
  for (const runtime of opened.splice(0)) {
    await runtime.drain();
    await runtime.close();
  }
});

/**
 * An inspector that compares both forms at every snapshot of every run's root actor. Mismatches
 * are collected (XState reports an error thrown in an inspector asynchronously), then asserted.
 */
function comparison() {
  const mismatches: string[] = [];
  let compared = 0;
  const inspect = (event: InspectionEvent) => {
    // A run is a machine actor whose parent is the runtime's supervisor.
    if (event.type !== '@xstate.snapshot' || (event.snapshot as { machine?: { id?: string } }).machine?.id !== 'run') return;
    const ours = persistedSnapshotOf(event.snapshot as AnyMachineSnapshot);
    const theirs = (event.actorRef as AnyActorRef).getPersistedSnapshot();
    compared++;
    if (!isDeepStrictEqual(ours, theirs) || JSON.stringify(ours) !== JSON.stringify(theirs)) {
      mismatches.push(`${JSON.stringify((event.snapshot as AnyMachineSnapshot).value)}: ${JSON.stringify(ours)} ≠ ${JSON.stringify(theirs)}`);
    }
  };
  return { inspect, mismatches, compared: () => compared };
}

function opening(runtime: Runtime): Runtime {
  opened.push(runtime);
  return runtime;
}

describe('the persisted snapshot the runtime builds', () => {
  it('is XState’s at every step of a completed one-hop run', async () => {
    const { inspect, mismatches, compared } = comparison();
    const model = scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: '{"a":2,"b":3}' }] }, { text: '5' }]);
    const runtime = opening(runtimeWith({ model, capabilities: [spiedAdd().capability], inspect }));
    expect((await runtime.run(request())).status).toBe('completed');
    expect(compared()).toBeGreaterThan(10);
    expect(mismatches).toEqual([]);
  });

  it('is XState’s while a run waits for approval, and in the process that restores it from the store and approves it', async () => {
    const { inspect, mismatches, compared } = comparison();
    const runStore = createInMemoryRunStore();
    const steps: ScriptedStep[] = [{ toolCalls: [{ name: 'payments_refund', arguments: '{"orderId":"o-1","amount":20}', id: 'refund-1' }] }, { text: 'refunded' }];
    const rules = [allowRuns, refundsNeedApproval, anyoneApproves];
    const first = opening(runtimeWith({ model: scriptedModel(steps.slice(0, 1)), capabilities: [spiedRefund().capability], rules, runStore, inspect }));
    const parked = await first.run(request({ input: 'refund order o-1' }));
    expect(parked.status).toBe('awaiting_approval');
    const parkedAt = compared();
    await first.close();

    const second = opening(runtimeWith({ model: scriptedModel(steps.slice(1)), capabilities: [spiedRefund().capability], rules, runStore, inspect }));
    const next = await second.approve(parked.runId, parked.toolCalls[0]!.callId, { principalId: 'manager' });
    expect(next.status).toBe('completed');
    expect(compared()).toBeGreaterThan(parkedAt + 3);
    expect(mismatches).toEqual([]);
  });

  it('is XState’s when the run fails, is denied or is cancelled', async () => {
    const { inspect, mismatches, compared } = comparison();
    const failing = opening(runtimeWith({ model: scriptedModel([{ error: new Error('the model is down') }]), capabilities: [spiedAdd().capability], inspect }));
    expect((await failing.run(request())).status).toBe('failed');
    const denying = opening(runtimeWith({ model: scriptedModel([]), rules: [allowMath], inspect }));
    expect((await denying.run(request())).status).toBe('denied');

    const answer = deferred();
    const slow = {
      name: 'slow',
      async step() {
        await answer.promise;
        return { text: 'late', toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
      },
    };
    const cancelling = opening(runtimeWith({ model: slow, inspect }));
    const handle = cancelling.start(request());
    await new Promise((resolve) => setTimeout(resolve, 5));
    handle.cancel('the caller gave up');
    expect((await handle.result).status).toBe('cancelled');
    answer.resolve();
    expect(compared()).toBeGreaterThan(10);
    expect(mismatches).toEqual([]);
  });
});
