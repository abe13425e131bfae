import { assign } from 'xstate';
import { toRunchartErrorData } from '../../../src/errors.js';
import { runSetup, traced } from '../setup.js';

/** Recalls memory for the input; a memory failure degrades to an empty context and a warning. */
export const retrieval = runSetup.createStateConfig({
  ...traced('retrieval'),
  invoke: {
    id: 'recallMemory',
    src: 'recallMemory',
    input: ({ context }) => ({
      tenantId: context.tenantId,
      principalId: context.principalId,
      ...(context.sessionId ? { sessionId: context.sessionId } : {}),
      query: context.input,
      limit: context.settings.recallLimit,
    }),
    onDone: { target: 'modelStep', actions: assign({ recalled: ({ event }) => event.output.items, history: ({ event }) => event.output.history }) },
    onError: {
      target: 'modelStep',
      actions: { type: 'warn', params: ({ event }) => ({ message: `memory recall failed, continuing without it: ${toRunchartErrorData(event.error, 'memory').message}` }) },
    },
  },
});
