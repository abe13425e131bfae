import { checked } from '../src/errors.js';
import { PolicyDecision, type PolicyLayer, type PolicyRequest } from '../src/policy/contract.js';
import { fromLayerCall, type LayerCallOptions } from './layer-call.js';

/**
 * Asks the policy layer one question (any stage) and checks the answer's shape: invoked as
 * `evaluatePolicy` by every state that needs a decision.
 * @example
 * runMachine.provide({ actors: { evaluatePolicy: policyActor(createRulesPolicy(rules)) } });
 */
export function policyActor(policy: PolicyLayer, options: LayerCallOptions = {}) {
  return fromLayerCall<PolicyDecision, PolicyRequest>(
    async ({ input, options: call }) => checked(PolicyDecision, await policy.evaluate(input, call), 'policy'),
    options,
  );
}
