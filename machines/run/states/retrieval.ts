import { assign } from 'xstate';
import { toRunchartErrorData } from '../../../src/errors.js';
import { runSetup, traced } from '../setup.js';

/** Recalls memory for the input; a memory failure degrades to an empty context and a warning. */
export const retrieval = runSetup.createStateConfig({
  entry: traced('retrieval').entry,
  exit: traced('retrieval').exit,
  invoke: {
    id: 'recallMemory',
    src: 'recallMemory',
    input: ({ context }) => ({
      tenantId: context.accepted.tenantId,
      principalId: context.accepted.principalId,
      ...(context.accepted.sessionId ? { sessionId: context.accepted.sessionId } : {}),
      query: context.accepted.input,
      limit: context.settings.recallLimit,
    }),
    onDone: { target: 'modelStep', actions: assign({ recalled: ({ event }) => event.output }) },
    onError: {
      target: 'modelStep',
      actions: {
        type: 'warn',
        params: ({ event }) => ({ message: `memory recall failed, continuing without it: ${toRunchartErrorData(event.error, 'memory').message}` }),
      },
    },
  },
});
