import { assign } from 'xstate';
import { failedIn, runSetup, traced } from '../setup.js';

/** Parses the caller's request and pins the capabilities this principal may see; nothing else runs for a bad request. */
export const ingress = runSetup.createStateConfig({
  entry: traced('ingress').entry,
  exit: traced('ingress').exit,
  invoke: {
    id: 'acceptRequest',
    src: 'acceptRequest',
    input: ({ context }) => ({ runId: context.runId, request: context.request, settings: context.settings }),
    onDone: {
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
    onError: { target: 'failed', actions: [assign({ request: null }), failedIn('ingress')] },
  },
});
