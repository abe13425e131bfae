import { fromPromise } from 'xstate';
import { checked } from '../src/errors.js';
import { PolicyDecision, type PolicyLayer, type PolicyRequest } from '../src/policy/contract.js';

/** Asks the policy layer one question and checks the answer's shape. */
export function policyActor(policy: PolicyLayer) {
  return fromPromise<PolicyDecision, PolicyRequest>(async ({ input, signal }) =>
    checked(PolicyDecision, await policy.evaluate(input, { signal }), 'policy'),
  );
}
