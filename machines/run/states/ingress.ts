import { assign } from 'xstate';
import { toRunchartErrorData } from '../../../src/errors.js';
import { runSetup, traced } from '../setup.js';

/** Parses the caller's request and pins the capabilities this principal may see; nothing else runs for a bad request. */
export const ingress = runSetup.createStateConfig({
  ...traced('ingress'),
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
        assign(({ event }) => ({
        request: null,
        traceId: event.output.traceId,
        parentSpanId: event.output.parentSpanId ?? null,
        tenantId: event.output.tenantId,
        principalId: event.output.principalId,
        sessionId: event.output.sessionId ?? null,
        input: event.output.input,
        capabilities: event.output.capabilities,
        })),
      ],
    },
    onError: {
      target: 'failed',
      actions: [assign({ request: null }), { type: 'fail', params: ({ event }) => ({ error: toRunchartErrorData(event.error, 'ingress') }) }],
    },
  },
});
