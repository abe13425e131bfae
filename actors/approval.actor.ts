import type { ExecutionJournal } from '../src/execution/contract.js';
import type { ApprovalWaitInput } from '../machines/run/types.js';
import { fromLayerCall, type LayerCallOptions } from './layer-call.js';

/**
 * Resolves when a parked call's approval deadline passes (`awaitApproval`); a review arriving
 * first leaves the state, which stops the wait. The deadline is fixed in the journal the first
 * time the call parks, so a run restored after a restart waits only for what is left.
 * @example
 * runMachine.provide({ actors: { awaitApproval: approvalActor(journal, { now: Date.now, timeoutMs: 86_400_000 }) } });
 */
export function approvalActor(journal: ExecutionJournal, options: LayerCallOptions & { now: () => number; timeoutMs: number }) {
  return fromLayerCall<void, ApprovalWaitInput>(async ({ input, signal }) => {
    const key = `${input.runId}:${input.callId}:approval`;
    let entry = await journal.get(key);
    if (!entry) {
      entry = { key, runId: input.runId, state: 'started', attempts: 0, deadline: options.now() + options.timeoutMs, updatedAt: options.now() };
      await journal.put(entry);
    }
    const remaining = (entry.deadline ?? 0) - options.now();
    if (remaining <= 0) return;
    await new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      // Unref'd: a parked run must not keep a CLI process alive.
      const timer = setTimeout(resolve, Math.min(remaining, 2 ** 31 - 1));
      timer.unref();
      signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true });
    });
  }, options);
}
