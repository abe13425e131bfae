import { checked } from '../src/errors.js';
import { PolicyDecision, type PolicyLayer, type PolicyRequest } from '../src/policy/contract.js';
import type { LayerService } from './layers.actor.js';

/** Asks the policy layer one question and checks the answer's shape. */
export function policyService(policy: PolicyLayer): LayerService<PolicyRequest, PolicyDecision> {
  return async (input, { signal }) => checked(PolicyDecision, await policy.evaluate(input, { signal }), 'policy');
}
