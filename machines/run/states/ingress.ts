import { assign } from 'xstate';
import { requests } from '../requests.js';
import { asking, runSetup } from '../setup.js';

const accept = asking('ingress', requests.ingress);

/** Parses the caller's request and pins the capabilities this principal may see; nothing else runs for a bad request. */
export const ingress = runSetup.createStateConfig({
  entry: accept.entry,
  exit: accept.exit,
  on: {
    'run.resume': accept.resume,
    'request.accepted': {
      target: 'policy',
      actions: [
        {
          type: 'mark',
          params: ({ context, event }) => ({
            mark: {
              kind: 'run.accepted' as const,
              input: event.output.input,
              identity: {
                runId: context.runId,
                traceId: event.output.traceId,
                ...(event.output.parentSpanId ? { parentSpanId: event.output.parentSpanId } : {}),
                tenantId: event.output.tenantId,
                principalId: event.output.principalId,
                ...(event.output.sessionId ? { sessionId: event.output.sessionId } : {}),
              },
            },
          }),
        },
        assign({ request: null, accepted: ({ event }) => event.output }),
      ],
    },
    'request.refused': {
      target: 'failed',
      actions: [assign({ request: null }), { type: 'fail', params: ({ event }) => ({ error: event.error }) }],
    },
  },
});
