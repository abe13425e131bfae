import { decisionRecord, failedIn, markDecision, policyScope, runSetup, traced } from '../setup.js';

/** The output check: the answer is released only with an `output` allow. */
export const assembly = runSetup.createStateConfig({
  entry: traced('assembly').entry,
  exit: traced('assembly').exit,
  invoke: {
    id: 'checkOutput',
    src: 'evaluatePolicy',
    input: ({ context }) => ({ stage: 'output' as const, ...policyScope(context) }),
    onDone: [
      {
        guard: { type: 'isAllowed', params: ({ event }) => ({ decision: event.output }) },
        target: 'background',
        actions: [{ type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'output', event.output) }) }, markDecision],
      },
      {
        target: 'denied',
        actions: [{ type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'output', event.output) }) }, markDecision],
      },
    ],
    onError: { target: 'failed', actions: failedIn('policy') },
  },
});
