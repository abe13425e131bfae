import { assign } from 'xstate';
import { requests } from '../requests.js';
import { asking, runSetup } from '../setup.js';

const recall = asking('retrieval', requests.retrieval);

/** Recalls memory for the input; a memory failure degrades to an empty context and a warning. */
export const retrieval = runSetup.createStateConfig({
  entry: recall.entry,
  exit: recall.exit,
  on: {
    'run.resume': recall.resume,
    'memory.recalled': { target: 'modelStep', actions: assign({ recalled: ({ event }) => event.output }) },
    'memory.failed': {
      target: 'modelStep',
      actions: { type: 'warn', params: ({ event }) => ({ message: `memory recall failed, continuing without it: ${event.error.message}` }) },
    },
  },
});
