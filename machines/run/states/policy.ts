import { requests } from '../requests.js';
import { asking, decisionRecord, markDecision, runSetup } from '../setup.js';

const precheck = asking('policy', requests.policy);

/** The precheck: blocking, fail closed; the run cannot reach memory or the model without it. */
export const policy = runSetup.createStateConfig({
  entry: precheck.entry,
  exit: precheck.exit,
  on: {
    'run.resume': precheck.resume,
    'policy.decided': [
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
    'policy.failed': { target: 'failed', actions: { type: 'fail', params: ({ event }) => ({ error: event.error }) } },
  },
});
