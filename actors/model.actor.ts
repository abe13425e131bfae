import { fromPromise } from 'xstate';
import { checked } from '../src/errors.js';
import { ModelResponse, type ModelAdapter, type ModelDelta, type ModelRequest } from '../src/models/contract.js';

/** The model step as the chart asks for it: the request plus the run, so streamed text reaches the run's listeners. */
export type ModelStepInput = ModelRequest & { runId: string };

/** One model step through any `ModelAdapter`; the answer is checked before the chart sees it. */
export function modelActor(model: ModelAdapter, options: { onDelta?: (runId: string, delta: ModelDelta) => void } = {}) {
  return fromPromise<ModelResponse, ModelStepInput>(async ({ input, signal }) => {
    const { runId, ...request } = input;
    const stream = options.onDelta;
    return checked(ModelResponse, await model.step(request, { signal, ...(stream ? { onDelta: (delta: ModelDelta) => stream(runId, delta) } : {}) }), 'model');
  });
}
