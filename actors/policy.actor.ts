import { checked } from '../src/errors.js';
import { PolicyDecision, type PolicyLayer, type PolicyRequest } from '../src/policy/contract.js';
import type { LayerService } from './layers.actor.js';

/**
 * Asks the policy layer one question and checks the answer's shape. `trusted` skips the check
 * for a layer whose answers are right by construction (the built-in rules, covered by their tests);
 * a layer of your own is always checked.
 */
export function policyService(policy: PolicyLayer, options: { trusted?: boolean } = {}): LayerService<PolicyRequest, PolicyDecision> {
  if (options.trusted) return (input, { signal }) => policy.evaluate(input, { signal });
  return async (input, { signal }) => checked(PolicyDecision, await policy.evaluate(input, { signal }), 'policy');
}
