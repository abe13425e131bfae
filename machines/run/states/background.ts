import { assign } from 'xstate';
import { toRunchartErrorData } from '../../../src/errors.js';
import { backgroundTasksFor } from '../plan.js';
import { decisionRecord, runSetup, traced } from '../setup.js';

/** Queues the turn's write-back behind policy stage `memory.write`; the result is released once it is queued. */
export const background = runSetup.createStateConfig({
  ...traced('background'),
  initial: 'deciding',
  states: {
    deciding: {
      always: [
        { guard: 'isBackgroundDisabled', target: '#run.completed', actions: assign({ background: 'skipped' }) },
        { target: 'authorizing' },
      ],
    },
    authorizing: {
      ...traced('background.authorizing'),
      invoke: {
        id: 'evaluatePolicy',
        src: 'evaluatePolicy',
        input: ({ context }) => ({ stage: 'memory.write' as const, runId: context.runId, tenantId: context.tenantId, principalId: context.principalId }),
        onDone: [
          {
            guard: { type: 'isAllowed', params: ({ event }) => ({ decision: event.output }) },
            target: 'queueing',
            actions: { type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'memory.write', event.output) }) },
          },
          {
            target: '#run.completed',
            actions: [
              { type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'memory.write', event.output) }) },
              assign({ background: 'denied' }),
            ],
          },
        ],
        onError: {
          target: '#run.completed',
          actions: [
            assign({ background: 'failed' }),
            { type: 'warn', params: ({ event }) => ({ message: `background skipped, policy failed: ${toRunchartErrorData(event.error, 'policy').message}` }) },
          ],
        },
      },
    },
    queueing: {
      ...traced('background.queueing'),
      invoke: {
        id: 'enqueueBackground',
        src: 'enqueueBackground',
        input: ({ context }) => ({ tasks: backgroundTasksFor(context) }),
        onDone: { target: '#run.completed', actions: assign({ background: 'queued' }) },
        onError: {
          target: '#run.completed',
          actions: [
            assign({ background: 'failed' }),
            { type: 'warn', params: ({ event }) => ({ message: `background tasks could not be queued: ${toRunchartErrorData(event.error, 'background').message}` }) },
          ],
        },
      },
    },
  },
});
