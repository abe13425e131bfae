import { checked } from '../src/errors.js';
import { ModelResponse, type ModelAdapter, type ModelDelta } from '../src/models/contract.js';
import type { ModelStepInput } from '../machines/run/types.js';
import { fromLayerCall, type LayerCallOptions } from './layer-call.js';

export type { ModelStepInput };

/**
 * One model step through any `ModelAdapter` (`callModel`); the answer is checked before the chart sees it.
 * @example
 * runMachine.provide({ actors: { callModel: modelActor(openaiModel({ model: 'gpt-5.4' })) } });
 */
export function modelActor(
  model: ModelAdapter,
  options: LayerCallOptions & { deltasFor?: (runId: string) => ((delta: ModelDelta) => void) | undefined } = {},
) {
  return fromLayerCall<ModelResponse, ModelStepInput>(async ({ input, signal }) => {
    const { runId, ...request } = input;
    // Stream only when someone listens to this run: a plain call is cheaper for the model and for us.
    const onDelta = options.deltasFor?.(runId);
    return checked(ModelResponse, await model.step(request, onDelta ? { signal, onDelta } : { signal }), 'model');
  }, options);
}
