import { requests } from '../requests.js';
import { asking, decisionRecord, markDecision, runSetup } from '../setup.js';

const outputCheck = asking('assembly', requests.assembly);

/** The output check: the answer is released only with an `output` allow. */
export const assembly = runSetup.createStateConfig({
  entry: outputCheck.entry,
  exit: outputCheck.exit,
  on: {
    'run.resume': outputCheck.resume,
    'policy.decided': [
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
    'policy.failed': { target: 'failed', actions: { type: 'fail', params: ({ event }) => ({ error: event.error }) } },
  },
});
