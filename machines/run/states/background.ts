import { assign } from 'xstate';
import { toRunchartErrorData } from '../../../src/errors.js';
import { backgroundTasksFor } from '../plan.js';
import { decisionRecord, markDecision, policyScope, runSetup, traced } from '../setup.js';

/** Queues the turn's write-back behind policy stage `memory.write`; the result is released once it is queued. */
export const background = runSetup.createStateConfig({
  entry: traced('background').entry,
  exit: traced('background').exit,
  initial: 'deciding',
  states: {
    deciding: {
      always: [
        { guard: 'isBackgroundDisabled', target: '#run.completed', actions: assign({ background: 'skipped' }) },
        { target: 'authorizing' },
      ],
    },
    authorizing: {
      entry: traced('background.authorizing').entry,
      exit: traced('background.authorizing').exit,
      invoke: {
        id: 'authorizeWrite',
        src: 'evaluatePolicy',
        input: ({ context }) => ({ stage: 'memory.write' as const, ...policyScope(context) }),
        onDone: [
          {
            guard: { type: 'isAllowed', params: ({ event }) => ({ decision: event.output }) },
            target: 'queueing',
            actions: [{ type: 'recordDecision', params: ({ context, event }) => ({ decision: decisionRecord(context, 'memory.write', event.output) }) }, markDecision],
          },
          {
            target: '#run.completed',
            actions: [
              assign({
                decisions: ({ context, event }) => [...context.decisions, decisionRecord(context, 'memory.write', event.output)],
                background: 'denied',
              }),
              markDecision,
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
      entry: traced('background.queueing').entry,
      exit: traced('background.queueing').exit,
      invoke: {
        id: 'enqueueBackground',
        src: 'enqueueBackground',
        input: ({ context }) => ({ tasks: backgroundTasksFor(context) }),
        onDone: { target: '#run.completed', actions: assign({ background: 'queued' }) },
        onError: {
          target: '#run.completed',
          actions: [
            assign({ background: 'failed' }),
            {
              type: 'warn',
              params: ({ event }) => ({ message: `background tasks could not be queued: ${toRunchartErrorData(event.error, 'background').message}` }),
            },
          ],
        },
      },
    },
  },
});
