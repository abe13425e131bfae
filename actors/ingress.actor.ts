import { fromPromise } from 'xstate';
import type { CatalogLayer } from '../src/catalog/contract.js';
import { pinCapabilities } from '../src/catalog/registry.js';
import { parseRunRequest, traceContextFor } from '../src/ingress/request.js';
import type { PolicyLayer } from '../src/policy/contract.js';
import { checked, isRunchartError, RunchartError } from '../src/errors.js';
import { PolicyDecision } from '../src/policy/contract.js';
import type { AcceptedRequest, RunInput } from '../machines/run/types.js';

/** What ingress needs besides the request: limits, the catalog and policy to pin capabilities, a trace id source. */
export interface IngressOptions {
  maxInputChars: number;
  requireTraceId: boolean;
  catalog: CatalogLayer;
  policy: PolicyLayer;
  newTraceId: () => string;
}

/**
 * Parses the caller's request and pins the capabilities this principal may see: those whose
 * tool-stage verdict is not deny (a deny-by-default capability is never shown to the model).
 */
export function ingressActor(options: IngressOptions) {
  return fromPromise<AcceptedRequest, RunInput>(async ({ input, signal }) => {
    const request = parseRunRequest(input.request, options);
    const trace = traceContextFor(request, options.newTraceId);
    const visible = [];
    for (const capability of options.catalog.list()) {
      let answer: unknown;
      try {
        answer = await options.policy.evaluate(
          { stage: 'tool', runId: input.runId, tenantId: request.tenantId, principalId: request.principalId, capability: capability.name, version: capability.version },
          { signal },
        );
      } catch (error) {
        // Pinning asks policy; its failure is policy's, and the run fails closed.
        if (isRunchartError(error)) throw error;
        throw new RunchartError('internal', 'policy', `policy: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
      const decision = checked(PolicyDecision, answer, 'policy');
      if (decision.verdict !== 'deny') visible.push(capability);
    }
    return {
      ...trace,
      tenantId: request.tenantId,
      principalId: request.principalId,
      ...(request.sessionId ? { sessionId: request.sessionId } : {}),
      input: request.input,
      capabilities: pinCapabilities(visible),
    };
  });
}
