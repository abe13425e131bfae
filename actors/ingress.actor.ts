import type { CatalogLayer, PinnedCapability } from '../src/catalog/contract.js';
import { pinCapabilities } from '../src/catalog/registry.js';
import { parseRunRequest, traceContextFor } from '../src/ingress/request.js';
import type { PolicyLayer } from '../src/policy/contract.js';
import { checked, isRunchartError, RunchartError } from '../src/errors.js';
import { PolicyDecision } from '../src/policy/contract.js';
import type { AcceptedRequest, RunInput } from '../machines/run/types.js';
import { fromLayerCall, type LayerCallOptions } from './layer-call.js';

/** What ingress needs besides the request: limits, the catalog and policy to pin capabilities, a trace id source. */
export interface IngressOptions extends LayerCallOptions {
  maxInputChars: number;
  requireTraceId: boolean;
  catalog: CatalogLayer;
  policy: PolicyLayer;
  newTraceId: () => string;
  /** Resolves once the stores are open; a request is accepted only then. */
  ready?: (() => Promise<void>) | undefined;
  /**
   * Pinned sets by tenant and principal, for a policy whose tool-stage answers depend on nothing
   * else (the built-in rules): pinning is then one lookup per run instead of a decision per capability.
   */
  pinCache?: Map<string, PinnedCapability[]>;
}

/**
 * Parses the caller's request and pins the capabilities this principal may see (`acceptRequest`):
 * those whose tool-stage verdict is not deny (a deny-by-default capability is never shown to the model).
 * @example
 * runMachine.provide({ actors: { acceptRequest: ingressActor({ maxInputChars: 32_000, requireTraceId: false, catalog, policy, newTraceId }) } });
 */
export function ingressActor(options: IngressOptions) {
  const accept = accepting(options);
  return fromLayerCall<AcceptedRequest, RunInput>(({ input, options: call }) => accept(input, call), options);
}

function accepting(options: IngressOptions): (input: RunInput, call: { readonly signal: AbortSignal }) => Promise<AcceptedRequest> {
  // Runs that see the same capabilities share one pinned list (context is never mutated), so a
  // parked run does not hold its own copy of every description and schema.
  const interned = new Map<string, PinnedCapability[]>();
  return async (input, call) => {
    if (options.ready) await options.ready();
    const request = parseRunRequest(input.request, options);
    const trace = traceContextFor(request, options.newTraceId);
    const cacheKey = `${request.tenantId}\u0000${request.principalId}`;
    const capabilities = options.pinCache?.get(cacheKey) ?? (await pin(request.tenantId, request.principalId, input.runId, call));
    if (options.pinCache && !options.pinCache.has(cacheKey)) {
      if (options.pinCache.size >= 10_000) options.pinCache.clear();
      options.pinCache.set(cacheKey, capabilities);
    }
    return {
      tenantId: request.tenantId,
      principalId: request.principalId,
      ...trace,
      ...(request.sessionId ? { sessionId: request.sessionId } : {}),
      input: request.input,
      capabilities,
    };
  };

  async function pin(tenantId: string, principalId: string, runId: string, call: { readonly signal: AbortSignal }): Promise<PinnedCapability[]> {
    const visible = [];
    for (const capability of options.catalog.list()) {
      let answer: unknown;
      try {
        answer = await options.policy.evaluate(
          { stage: 'tool', runId, tenantId, principalId, capability: capability.name, version: capability.version },
          call,
        );
      } catch (error) {
        // Pinning asks policy; its failure is policy's, and the run fails closed.
        if (isRunchartError(error)) throw error;
        throw new RunchartError('internal', 'policy', `policy: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      }
      const decision = checked(PolicyDecision, answer, 'policy');
      if (decision.verdict !== 'deny') visible.push(capability);
    }
    const key = visible.map((capability) => `${capability.name}@${capability.version}`).join('\n');
    let pinned = interned.get(key);
    if (!pinned) {
      if (interned.size >= 1_000) interned.clear();
      interned.set(key, (pinned = pinCapabilities(visible)));
    }
    return pinned;
  }
}
