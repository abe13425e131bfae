import { fromPromise } from 'xstate';
import { checked } from '../src/errors.js';
import { ModelResponse, type ModelAdapter, type ModelDelta, type ModelRequest } from '../src/models/contract.js';

/** The model step as the chart asks for it: the request plus the run, so streamed text reaches the run's listeners. */
export type ModelStepInput = ModelRequest & { runId: string };

/** One model step through any `ModelAdapter`; the answer is checked before the chart sees it. */
export function modelActor(model: ModelAdapter, options: { deltasFor?: (runId: string) => ((delta: ModelDelta) => void) | undefined } = {}) {
  return fromPromise<ModelResponse, ModelStepInput>(async ({ input, signal }) => {
    const { runId, ...request } = input;
    // Stream only when someone listens to this run: a plain call is cheaper for the model and for us.
    const onDelta = options.deltasFor?.(runId);
    return checked(ModelResponse, await model.step(request, { signal, ...(onDelta ? { onDelta } : {}) }), 'model');
  });
}
