import { assign } from 'xstate';
import { requests } from '../requests.js';
import { asking, decisionRecord, markDecision, runSetup, traced } from '../setup.js';

const authorize = asking('background.authorizing', requests.backgroundAuthorizing);
const queue = asking('background.queueing', requests.queueing);
const marks = traced('background');

/** Queues the turn's write-back behind policy stage `memory.write`; the result is released once it is queued. */
export const background = runSetup.createStateConfig({
  entry: marks.entry,
  exit: marks.exit,
  initial: 'deciding',
  states: {
    deciding: {
      always: [
        { guard: 'isBackgroundDisabled', target: '#run.completed', actions: assign({ background: 'skipped' }) },
        { target: 'authorizing' },
      ],
    },
    authorizing: {
      entry: authorize.entry,
      exit: authorize.exit,
      on: {
        'run.resume': authorize.resume,
        'policy.decided': [
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
        'policy.failed': {
          target: '#run.completed',
          actions: [
            assign({ background: 'failed' }),
            { type: 'warn', params: ({ event }) => ({ message: `background skipped, policy failed: ${event.error.message}` }) },
          ],
        },
      },
    },
    queueing: {
      entry: queue.entry,
      exit: queue.exit,
      on: {
        'run.resume': queue.resume,
        'background.queued': { target: '#run.completed', actions: assign({ background: 'queued' }) },
        'background.failed': {
          target: '#run.completed',
          actions: [
            assign({ background: 'failed' }),
            { type: 'warn', params: ({ event }) => ({ message: `background tasks could not be queued: ${event.error.message}` }) },
          ],
        },
      },
    },
  },
});
