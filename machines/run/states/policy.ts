import { decisionRecord, failedIn, markDecision, policyScope, runSetup, traced } from '../setup.js';

/** The precheck: blocking, fail closed; the run cannot reach memory or the model without it. */
export const policy = runSetup.createStateConfig({
  entry: traced('policy').entry,
  exit: traced('policy').exit,
  invoke: {
    id: 'checkPrecheck',
    src: 'evaluatePolicy',
    input: ({ context }) => ({ stage: 'precheck' as const, ...policyScope(context) }),
    onDone: [
      {
        guard: { type: 'isPrecheckPassed', params: ({ event }) => ({ decision: event.output }) },
        target: 'retrieval',
        actions: [{ type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'precheck', event.output) }) }, markDecision],
      },
      {
        target: 'denied',
        actions: [{ type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'precheck', event.output) }) }, markDecision],
      },
    ],
    onError: { target: 'failed', actions: failedIn('policy') },
  },
});
