import { describe, expect, it } from 'vitest';
import { waitFor } from 'xstate';
import { createMemoryJournal, hashArguments, isRunchartError, type PolicyRule, type RunResult } from '../../src/index.js';
import { scriptedModel, type ScriptedModel } from '../../src/testing/index.js';
import { allowRuns, request, runtimeWith, spiedRefund, toolMessagesOf } from '../support/scenario.js';

const refundsNeedApproval: PolicyRule = { id: 'refunds-need-approval', stage: 'tool', effect: 'require_approval', capabilities: ['payments.*'] };
const managersApprove: PolicyRule = { id: 'managers-approve-refunds', stage: 'approval', effect: 'allow', capabilities: ['payments.*'], principals: ['manager'] };
const refundArguments = JSON.stringify({ orderId: 'o-1', amount: 20 });

/** A runtime whose model asks for one refund, then answers; the run parks for approval. */
async function parkedRun() {
  const refund = spiedRefund();
  const model: ScriptedModel = scriptedModel([
    { toolCalls: [{ name: 'payments_refund', arguments: refundArguments, id: 'refund-1' }] },
    { text: 'the refund is done' },
  ]);
  const runtime = runtimeWith({ model, capabilities: [refund.capability], rules: [allowRuns, refundsNeedApproval, managersApprove] });
  const handle = runtime.start(request({ input: 'refund order o-1' }));
  const parked = await handle.result;
  return { refund, model, runtime, handle, parked };
}

/** Expects `promise` to reject with a RunchartError and returns it. */
async function refused(promise: Promise<unknown>) {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(isRunchartError(error)).toBe(true);
  return error as Error;
}

describe('approval', () => {
  it('leaves nothing of the run in the journal once it has finished, approved or rejected: calls and approval deadlines alike', async () => {
    for (const review of ['approve', 'reject'] as const) {
      const journal = createMemoryJournal();
      const refund = spiedRefund();
      const model = scriptedModel([{ toolCalls: [{ name: 'payments_refund', arguments: refundArguments, id: 'refund-1' }] }, { text: 'done' }]);
      const runtime = runtimeWith({ model, journal, capabilities: [refund.capability], rules: [allowRuns, refundsNeedApproval, managersApprove] });
      const parked = await runtime.run(request({ input: 'refund order o-1' }));
      expect([...journal.entries.values()].map((entry) => entry.key)).toEqual([`${parked.runId}:c0.0:approval`]);
      const done = review === 'approve' ? await runtime.approve(parked.runId, 'c0.0', { principalId: 'manager' }) : await runtime.reject(parked.runId, 'c0.0', { principalId: 'manager', reason: 'no' });
      expect(done.status, review).toBe('completed');
      await runtime.drain();
      expect([...journal.entries.values()], review).toEqual([]);
      await runtime.close();
    }
  });

  it('parks the run with the pending call and does not run the handler', async () => {
    const { refund, model, parked } = await parkedRun();

    expect(parked.status).toBe('awaiting_approval');
    expect(parked.output).toBeNull();
    expect(parked.toolCalls).toHaveLength(1);
    expect(parked.toolCalls[0]).toMatchObject({
      callId: 'c0.0',
      capability: 'payments.refund',
      version: '1.0.0',
      args: refundArguments,
      argsHash: hashArguments(refundArguments),
      outcome: { status: 'awaiting_approval' },
      decision: { stage: 'tool', verdict: 'require_approval', ruleId: 'refunds-need-approval' },
    });
    expect(refund.calls).toHaveLength(0);
    expect(model.remaining).toBe(1);
    // The capability needs approval, so it is shown to the model: only a deny hides it.
    expect(model.requests[0]!.tools.map((tool) => tool.name)).toEqual(['payments_refund']);
  });

  it('completes after an allowed approval, runs the tool exactly once, and refuses a second approval', async () => {
    const { refund, model, runtime, parked } = await parkedRun();

    const done = await runtime.approve(parked.runId, 'c0.0', { principalId: 'manager' });

    expect(done.status).toBe('completed');
    expect(done.output).toBe('the refund is done');
    expect(refund.calls).toHaveLength(1);
    expect(refund.calls[0]!.args).toEqual({ orderId: 'o-1', amount: 20 });
    expect(done.toolCalls).toHaveLength(1);
    expect(done.toolCalls[0]).toMatchObject({
      callId: 'c0.0',
      outcome: { status: 'ok', output: { refunded: true } },
      decision: { stage: 'tool', verdict: 'require_approval', ruleId: 'refunds-need-approval' },
      approval: { stage: 'approval', verdict: 'allow', ruleId: 'managers-approve-refunds', principalId: 'manager', argsHash: hashArguments(refundArguments) },
    });
    expect(done.decisions.map((decision) => `${decision.stage}:${decision.verdict}:${decision.principalId}`)).toEqual([
      'precheck:allow:user-7',
      'tool:require_approval:user-7',
      'approval:allow:manager',
      'output:allow:user-7',
      'memory.write:allow:user-7',
    ]);
    expect(toolMessagesOf(model.requests[1]!)).toEqual([{ role: 'tool', toolCallId: 'refund-1', content: JSON.stringify({ refunded: true }) }]);
    model.verify();

    const again = await refused(runtime.approve(parked.runId, 'c0.0', { principalId: 'manager' }));
    expect(again.message).toBe(`runtime: run "${parked.runId}" is completed; no call of it is awaiting approval`);
    // Another tenant learns nothing of how the run ended.
    const elsewhere = await refused(runtime.approve(parked.runId, 'c0.0', { principalId: 'manager', tenantId: 'globex' }));
    expect(elsewhere.message).toBe(`runtime: no run "${parked.runId}" is waiting for approval`);
    expect(refund.calls).toHaveLength(1);
  });

  it('accepts an approval bound to the hash of the exact arguments', async () => {
    const { refund, runtime, parked } = await parkedRun();
    const done = await runtime.approve(parked.runId, 'c0.0', { principalId: 'manager', argsHash: hashArguments(refundArguments) });
    expect(done.status).toBe('completed');
    expect(refund.calls).toHaveLength(1);
  });

  it('refuses an approver no approval rule allows, naming the rule, and keeps the run parked', async () => {
    const { refund, model, runtime, parked } = await parkedRun();

    const error = await refused(runtime.approve(parked.runId, 'c0.0', { principalId: 'intern' }));

    expect(error.message).toContain('default-deny');
    expect(error.message).toContain('intern');
    expect(refund.calls).toHaveLength(0);
    const still = await runtime.get(parked.runId);
    expect(still?.status).toBe('awaiting_approval');
    expect(still?.toolCalls.at(-1)?.outcome).toEqual({ status: 'awaiting_approval' });
    expect(still?.decisions.at(-1)).toMatchObject({ stage: 'approval', verdict: 'deny', ruleId: 'default-deny', principalId: 'intern' });

    const done = await runtime.approve(parked.runId, 'c0.0', { principalId: 'manager' });
    expect(done.status).toBe('completed');
    expect(refund.calls).toHaveLength(1);
    expect(done.toolCalls[0]!.approval).toMatchObject({ principalId: 'manager', verdict: 'allow' });
    model.verify();
  });

  it.each(['refused first', 'allowed first'])('serves a refused and an allowed approver who approve at the same moment (%s): the refusal never keeps the approver out', async (order) => {
    for (let trial = 0; trial < 10; trial++) {
      const { refund, runtime, parked } = await parkedRun();
      const refusedReview = () => refused(runtime.approve(parked.runId, 'c0.0', { principalId: 'clerk' }));
      const allowedReview = () => runtime.approve(parked.runId, 'c0.0', { principalId: 'manager' });
      const [first, second] = order === 'refused first' ? [refusedReview(), allowedReview()] : [allowedReview(), refusedReview()];
      const [refusal, done] = (order === 'refused first' ? await Promise.all([first, second]) : (await Promise.all([first, second])).reverse()) as [Error | RunResult, Error | RunResult];
      if (order === 'refused first') expect((refusal as Error).message).toMatch(/clerk may not review call "c0.0"/);
      else expect((refusal as Error).message).toMatch(/no call "c0.0" awaiting approval \(the run is completed\)/);
      expect(done as RunResult).toMatchObject({ status: 'completed', output: 'the refund is done' });
      expect(refund.calls).toHaveLength(1);
      await runtime.close();
    }
  });

  it('refuses an approver an approval rule denies, naming that rule', async () => {
    const refund = spiedRefund();
    const model = scriptedModel([{ toolCalls: [{ name: 'payments_refund', arguments: refundArguments }] }]);
    const noSelfApproval: PolicyRule = { id: 'no-self-approval', stage: 'approval', effect: 'deny', principals: ['user-7'] };
    const runtime = runtimeWith({
      model,
      capabilities: [refund.capability],
      rules: [allowRuns, refundsNeedApproval, { ...managersApprove, principals: ['*'] }, noSelfApproval],
    });
    const parked = await runtime.run(request());

    const error = await refused(runtime.approve(parked.runId, 'c0.0', { principalId: 'user-7' }));

    expect(error.message).toContain('no-self-approval');
    expect(refund.calls).toHaveLength(0);
    expect((await runtime.get(parked.runId))?.status).toBe('awaiting_approval');
  });

  it('refuses a review that names no reviewer before it reaches the run, even where any approver may approve, and keeps the run parked', async () => {
    const refund = spiedRefund();
    const model = scriptedModel([{ toolCalls: [{ name: 'payments_refund', arguments: refundArguments, id: 'refund-1' }] }, { text: 'the refund is done' }]);
    const anyoneApproves: PolicyRule = { id: 'anyone-approves', stage: 'approval', effect: 'allow', capabilities: ['payments.*'] };
    const runtime = runtimeWith({ model, capabilities: [refund.capability], rules: [allowRuns, refundsNeedApproval, anyoneApproves] });
    const parked = await runtime.run(request({ input: 'refund order o-1' }));
    expect(parked.status).toBe('awaiting_approval');
    const slips = [undefined, {}, { principal: 'boss' }, { principalId: '' }, { principalId: '  ' }, { principalId: 7 }] as never[];
    for (const slip of slips) {
      for (const verb of ['approve', 'reject'] as const) {
        const error = await refused(runtime[verb](parked.runId, 'c0.0', slip));
        expect(error.message, `${verb} ${JSON.stringify(slip)}`).toBe(
          `runtime: ${verb} needs options.principalId, the reviewer (e.g. runtime.${verb}(runId, callId, { principalId: 'manager-1' }))`,
        );
        expect((error as unknown as { kind: string }).kind).toBe('invalid-input');
      }
    }
    expect((await runtime.get(parked.runId))?.status).toBe('awaiting_approval');
    expect(refund.calls).toHaveLength(0);
    const done = await runtime.approve(parked.runId, 'c0.0', { principalId: 'boss' });
    expect(done.status).toBe('completed');
    expect(refund.calls).toHaveLength(1);
    // The approval is recorded in the reviewer's name, never the requester's.
    expect(done.decisions.filter((decision) => decision.stage === 'approval')).toEqual([expect.objectContaining({ verdict: 'allow', ruleId: 'anyone-approves', principalId: 'boss' })]);
    await runtime.close();
  });

  it('refuses an approval for another call id and keeps the run parked', async () => {
    const { refund, runtime, parked } = await parkedRun();

    const error = await refused(runtime.approve(parked.runId, 'c0.1', { principalId: 'manager' }));

    expect(error.message).toContain('c0.1');
    expect(refund.calls).toHaveLength(0);
    expect((await runtime.get(parked.runId))?.status).toBe('awaiting_approval');
  });

  it('refuses an approval whose argsHash does not match the parked arguments', async () => {
    const { refund, runtime, parked } = await parkedRun();
    const otherHash = hashArguments(JSON.stringify({ orderId: 'o-1', amount: 2000 }));

    const error = await refused(runtime.approve(parked.runId, 'c0.0', { principalId: 'manager', argsHash: otherHash }));

    expect(error.message).toMatch(/argsHash/);
    expect(refund.calls).toHaveLength(0);
    expect((await runtime.get(parked.runId))?.status).toBe('awaiting_approval');
  });

  it('refuses an approval for an unknown run', async () => {
    const { runtime } = await parkedRun();
    const error = await refused(runtime.approve('no-such-run', 'c0.0', { principalId: 'manager' }));
    expect(error.message).toContain('no-such-run');
  });

  it('sends a rejection to the model as the tool result and goes on', async () => {
    const { refund, model, runtime, parked } = await parkedRun();

    const done = await runtime.reject(parked.runId, 'c0.0', { principalId: 'manager', reason: 'over the refund limit' });

    expect(done.status).toBe('completed');
    expect(done.output).toBe('the refund is done');
    expect(refund.calls).toHaveLength(0);
    expect(done.toolCalls[0]!.outcome).toEqual({ status: 'rejected', reason: 'over the refund limit (by manager)' });
    const [message] = toolMessagesOf(model.requests[1]!);
    expect(message).toEqual({ role: 'tool', toolCallId: 'refund-1', content: 'rejected by the approver: over the refund limit (by manager)' });
    expect(done.usage.toolCalls).toBe(0);
    model.verify();
  });

  it('treats an approval naming another tenant as not found', async () => {
    const { refund, runtime, parked } = await parkedRun();

    const error = await refused(runtime.approve(parked.runId, 'c0.0', { principalId: 'manager', tenantId: 'globex' }));

    expect(error.message).toBe(`runtime: no run "${parked.runId}" is waiting for approval`);
    expect(refund.calls).toHaveLength(0);
    expect((await runtime.get(parked.runId))?.status).toBe('awaiting_approval');
    const done = await runtime.approve(parked.runId, 'c0.0', { principalId: 'manager', tenantId: 'acme' });
    expect(done.status).toBe('completed');
  });

  it('cancels a parked run', async () => {
    const { refund, model, runtime, handle, parked } = await parkedRun();

    handle.cancel('changed my mind');

    expect(handle.actor.getSnapshot().value).toBe('cancelled');
    expect((await runtime.get(parked.runId))?.status).toBe('cancelled');
    await runtime.drain();
    const after: RunResult | undefined = await runtime.get(parked.runId);
    expect(after?.status).toBe('cancelled');
    expect(refund.calls).toHaveLength(0);
    expect((await refused(runtime.approve(parked.runId, 'c0.0', { principalId: 'manager' }))).message).toBe(`runtime: run "${parked.runId}" is cancelled; no call of it is awaiting approval`);
    expect((await refused(runtime.approve('no-such-run', 'c0.0', { principalId: 'manager' }))).message).toBe('runtime: no run "no-such-run" is waiting for approval');
    expect(refund.calls).toHaveLength(0);
    expect(model.remaining).toBe(1);
  });

  it('rejects a parked call whose approval deadline passes, tells the model, and refuses a late approval', async () => {
    const refund = spiedRefund();
    const model = scriptedModel([{ toolCalls: [{ name: 'payments_refund', arguments: refundArguments, id: 'refund-1' }] }, { text: 'nobody approved' }]);
    const runtime = runtimeWith({
      model,
      capabilities: [refund.capability],
      rules: [allowRuns, refundsNeedApproval, managersApprove],
      config: { runtime: { approval_timeout_ms: 20 } },
    });
    const handle = runtime.start(request());
    expect((await handle.result).status).toBe('awaiting_approval');

    await waitFor(handle.actor, (snapshot) => snapshot.status === 'done');
    await runtime.drain();
    const after = await runtime.get(handle.runId);

    expect(after?.status).toBe('completed');
    expect(after?.output).toBe('nobody approved');
    expect(after?.toolCalls[0]!.outcome).toMatchObject({ status: 'rejected', reason: expect.stringMatching(/deadline/) });
    expect(toolMessagesOf(model.requests[1]!)[0]!.content).toMatch(/^rejected by the approver: .*deadline/);
    expect(refund.calls).toHaveLength(0);
    await refused(runtime.approve(handle.runId, 'c0.0', { principalId: 'manager' }));
    expect(refund.calls).toHaveLength(0);
    model.verify();
  });
});
