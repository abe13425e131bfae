import { toRunchartErrorData } from '../../../src/errors.js';
import { decisionRecord, runSetup, traced } from '../setup.js';

/** The precheck: blocking, fail closed; the run cannot reach memory or the model without it. */
export const policy = runSetup.createStateConfig({
  ...traced('policy'),
  invoke: {
    id: 'evaluatePolicy',
    src: 'evaluatePolicy',
    input: ({ context }) => ({ stage: 'precheck' as const, runId: context.runId, tenantId: context.tenantId, principalId: context.principalId }),
    onDone: [
      {
        guard: { type: 'isPrecheckPassed', params: ({ event }) => ({ decision: event.output }) },
        target: 'retrieval',
        actions: { type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'precheck', event.output) }) },
      },
      {
        target: 'denied',
        actions: { type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'precheck', event.output) }) },
      },
    ],
    onError: { target: 'failed', actions: { type: 'fail', params: ({ event }) => ({ error: toRunchartErrorData(event.error, 'policy') }) } },
  },
});
