import { fromPromise } from 'xstate';
import { checked } from '../src/errors.js';
import { ModelResponse, type ModelAdapter, type ModelRequest } from '../src/models/contract.js';

/** One model step through any `ModelAdapter`; the answer is checked before the chart sees it. */
export function modelActor(model: ModelAdapter) {
  return fromPromise<ModelResponse, ModelRequest>(async ({ input, signal }) =>
    checked(ModelResponse, await model.step(input, { signal }), 'model'),
  );
}
