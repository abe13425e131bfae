// The runtime builds a run's persisted snapshot itself (`persistedSnapshotOf`), without XState's
// walk of the whole context. These runs check that it is XState's own `getPersistedSnapshot()`,
// key for key and in the same order, at every step of every kind of run: a change of format in a
// new XState fails here, not in a user's store.
import { describe, expect, it } from 'vitest';
import type { PolicyRule } from '../../src/index.js';
import { persistedSnapshotOf } from '../../src/store/snapshot.js';
import { scriptedModel, type ScriptedStep } from '../../src/testing/index.js';
import { allowMath, allowRuns, deferred, request, runtimeWith, spiedAdd, spiedRefund } from '../support/scenario.js';

const refundsNeedApproval: PolicyRule = { id: 'refunds-need-approval', stage: 'tool', effect: 'require_approval', capabilities: ['payments.*'] };
const anyoneApproves: PolicyRule = { id: 'anyone-approves', stage: 'approval', effect: 'allow', capabilities: ['payments.*'] };

type Runtime = ReturnType<typeof runtimeWith>;
type Handle = ReturnType<Runtime['start']>;

/** Compares both forms at the run's current step and at every step after; returns how many were compared. */
function compareAtEveryStep(handle: Handle): () => number {
  let compared = 0;
  const compare = () => {
    const ours = persistedSnapshotOf(handle.actor.getSnapshot());
    const theirs = handle.actor.getPersistedSnapshot() as Record<string, unknown>;
    expect(ours).toStrictEqual(theirs);
    expect(JSON.stringify(ours)).toBe(JSON.stringify(theirs));
    compared++;
  };
  compare();
  handle.actor.subscribe(compare);
  return () => compared;
}

async function observed(runtime: Runtime, steps: { input?: string } = {}) {
  const handle = runtime.start(request(steps.input ? { input: steps.input } : {}));
  const compared = compareAtEveryStep(handle);
  return { handle, result: await handle.result, compared };
}

describe('the persisted snapshot the runtime builds', () => {
  it('is XState’s at every step of a completed one-hop run', async () => {
    const model = scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: '{"a":2,"b":3}' }] }, { text: '5' }]);
    const runtime = runtimeWith({ model, capabilities: [spiedAdd().capability] });
    const { result, compared } = await observed(runtime);
    expect(result.status).toBe('completed');
    expect(compared()).toBeGreaterThan(10);
    await runtime.drain();
  });

  it('is XState’s while a run waits for approval, after the approval, and when the run fails', async () => {
    const steps: ScriptedStep[] = [{ toolCalls: [{ name: 'payments_refund', arguments: '{"orderId":"o-1","amount":20}', id: 'refund-1' }] }, { text: 'refunded' }];
    const runtime = runtimeWith({ model: scriptedModel(steps), capabilities: [spiedRefund().capability], rules: [allowRuns, refundsNeedApproval, anyoneApproves] });
    const { handle, result, compared } = await observed(runtime, { input: 'refund order o-1' });
    expect(result.status).toBe('awaiting_approval');
    const parkedAt = compared();
    const next = await runtime.approve(result.runId, result.toolCalls[0]!.callId, { principalId: 'manager' });
    expect(next.status).toBe('completed');
    expect(compared()).toBeGreaterThan(parkedAt);
    expect(handle.actor.getSnapshot().status).toBe('done');
    await runtime.drain();

    const failing = runtimeWith({ model: scriptedModel([{ error: new Error('the model is down') }]), capabilities: [spiedAdd().capability] });
    expect((await observed(failing)).result.status).toBe('failed');
  });

  it('is XState’s when the run is denied or cancelled', async () => {
    const denying = runtimeWith({ model: scriptedModel([]), rules: [allowMath] });
    expect((await observed(denying)).result.status).toBe('denied');

    const answer = deferred();
    const slow = {
      name: 'slow',
      async step() {
        await answer.promise;
        return { text: 'late', toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
      },
    };
    const cancelling = runtimeWith({ model: slow });
    const handle = cancelling.start(request());
    const compared = compareAtEveryStep(handle);
    await new Promise((resolve) => setTimeout(resolve, 5));
    handle.cancel('the caller gave up');
    expect((await handle.result).status).toBe('cancelled');
    answer.resolve();
    expect(compared()).toBeGreaterThan(3);
  });
});
