import { RunchartError } from '../src/errors.js';
import { fromLayerCall } from '../actors/layer-call.js';

/**
 * A typed stand-in for a layer call the runtime (or your own code) provides: it fails with a
 * `not-provided` error naming what to provide, so an unprovided chart fails closed.
 * @example
 * setup({ actors: { evaluatePolicy: placeholder<PolicyDecision, PolicyRequest>('evaluatePolicy') } });
 */
export function placeholder<Output, Input>(name: string) {
  return fromLayerCall<Output, Input>(async () => {
    throw new RunchartError('not-provided', 'runtime', `runtime: nothing answers "${name}"; provide it with runMachine.provide({ actors: { ${name}: … } })`);
  });
}
