import { toRunchartErrorData } from '../../../src/errors.js';
import { decisionRecord, runSetup, traced } from '../setup.js';

/** The output check: the answer is released only with an `output` allow. */
export const assembly = runSetup.createStateConfig({
  ...traced('assembly'),
  invoke: {
    id: 'evaluatePolicy',
    src: 'evaluatePolicy',
    input: ({ context }) => ({ stage: 'output' as const, runId: context.runId, tenantId: context.tenantId, principalId: context.principalId }),
    onDone: [
      {
        guard: { type: 'isAllowed', params: ({ event }) => ({ decision: event.output }) },
        target: 'background',
        actions: { type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'output', event.output) }) },
      },
      {
        target: 'denied',
        actions: { type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'output', event.output) }) },
      },
    ],
    onError: { target: 'failed', actions: { type: 'fail', params: ({ event }) => ({ error: toRunchartErrorData(event.error, 'policy') }) } },
  },
});
