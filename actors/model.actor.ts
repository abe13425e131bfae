import { checked } from '../src/errors.js';
import { ModelResponse, type ModelAdapter, type ModelDelta } from '../src/models/contract.js';
import type { ModelStepInput } from '../machines/run/types.js';
import type { LayerService } from './layers.actor.js';

export type { ModelStepInput };

/** One model step through any `ModelAdapter`; the answer is checked before the chart sees it. */
export function modelService(
  model: ModelAdapter,
  options: { deltasFor?: (runId: string) => ((delta: ModelDelta) => void) | undefined } = {},
): LayerService<ModelStepInput, ModelResponse> {
  return async (input, { signal }) => {
    const { runId, ...request } = input;
    // Stream only when someone listens to this run: a plain call is cheaper for the model and for us.
    const onDelta = options.deltasFor?.(runId);
    return checked(ModelResponse, await model.step(request, { signal, ...(onDelta ? { onDelta } : {}) }), 'model');
  };
}
