import { checked, RunchartError } from '../src/errors.js';
import { ModelResponse, type ModelAdapter, type ModelDelta } from '../src/models/contract.js';
import type { ModelStepInput } from '../machines/run/types.js';
import { fromLayerCall, type LayerCallOptions } from './layer-call.js';

export type { ModelStepInput };

/** What a model step may return: how long its text and each tool call's arguments may be. */
export interface ModelLimits {
  /** Past this, the step fails with budget-exceeded and its text goes nowhere. */
  maxTextChars: number;
  /** Arguments past this are cut to a short prefix and their length kept: the chart refuses the call. */
  maxArgumentChars: number;
}

/** How much of refused arguments is kept, so a reader sees what the model tried. */
const keptArgumentChars = 200;

/**
 * One model step through any `ModelAdapter` (`callModel`): the answer is checked before the chart
 * sees it, bounded (an answer too long fails the step; arguments too long are cut), and the step
 * ends with a `timeout` error at its absolute deadline whether or not the adapter heeds its signal.
 * @example
 * runMachine.provide({ actors: { callModel: modelActor(openaiModel({ model: 'gpt-5.4' }), { now: Date.now }) } });
 */
export function modelActor(
  model: ModelAdapter,
  options: LayerCallOptions & { now?: () => number; limits?: ModelLimits; deltasFor?: (runId: string) => ((delta: ModelDelta) => void) | undefined } = {},
) {
  const now = options.now ?? Date.now;
  return fromLayerCall<ModelResponse, ModelStepInput>(async (args) => {
    const { runId, deadline, ...request } = args.input;
    // A restored step whose deadline passed while the process was down is not asked again.
    const remaining = deadline === null || deadline === undefined ? null : deadline - now();
    if (remaining !== null && remaining <= 0) throw late();
    // Stream only when someone listens to this run: a plain call is cheaper for the model and for us.
    const onDelta = options.deltasFor?.(runId);
    const step = model.step(request, onDelta ? { signal: args.signal, onDelta } : args.options);
    const answer = remaining === null ? await step : await beforeDeadline(step, remaining);
    return bounded(checked(ModelResponse, answer, 'model'), options.limits);
  }, options);
}

const late = () => new RunchartError('timeout', 'model', 'model: no answer before the step’s deadline (runtime.model_deadline_ms)', { retryable: true });

/** The step's answer, or a `timeout` error once `remaining` ms have passed (the adapter's signal is aborted with the step's state). */
function beforeDeadline<T>(step: Promise<T>, remaining: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(late()), Math.min(remaining, 2 ** 31 - 1));
    step.then(
      (value) => (clearTimeout(timer), resolve(value)),
      (error: unknown) => (clearTimeout(timer), reject(error)),
    );
  });
}

function bounded(response: ModelResponse, limits: ModelLimits | undefined): ModelResponse {
  if (!limits) return response;
  if (response.text !== null && response.text.length > limits.maxTextChars) {
    throw new RunchartError(
      'budget-exceeded',
      'model',
      `model: the answer is ${response.text.length} characters, over limits.max_model_text_chars (${limits.maxTextChars}); nothing of it was kept`,
    );
  }
  if (!response.toolCalls.some((call) => call.arguments.length > limits.maxArgumentChars)) return response;
  return Object.assign({}, response, {
    toolCalls: response.toolCalls.map((call) =>
      call.arguments.length > limits.maxArgumentChars
        ? { id: call.id, name: call.name, arguments: `${call.arguments.slice(0, keptArgumentChars)}…`, argumentsChars: call.arguments.length }
        : call,
    ),
  });
}
