import type { ModelAdapter, ModelRequest, ModelResponse } from '../models/contract.js';

/** One scripted step: a final text, tool calls, a raw response, a function of the request, or an error to throw. */
export type ScriptedStep =
  | { text: string; usage?: ModelResponse['usage'] }
  | { toolCalls: { name: string; arguments: string | Record<string, unknown>; id?: string }[]; text?: string; usage?: ModelResponse['usage'] }
  | { response: unknown }
  | { error: Error }
  | ((request: ModelRequest) => ModelResponse | Promise<ModelResponse>);

/** A scripted model that also tells what it was asked and whether its script was used up. */
export interface ScriptedModel extends ModelAdapter {
  readonly requests: ModelRequest[];
  readonly remaining: number;
  /** Throws when steps were left unused. */
  verify(): void;
}

/**
 * A strict model for tests and demos: it answers with its steps in order, throws when called
 * beyond its script, and `verify()` throws when steps are left unused. Its answers stand for
 * the model's decisions; every other layer stays real.
 * @example
 * const model = scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }, { text: '5' }]);
 * await runtime.run(request); model.verify();
 */
export function scriptedModel(steps: ScriptedStep[], options: { name?: string; delayMs?: number } = {}): ScriptedModel {
  const requests: ModelRequest[] = [];
  let index = 0;
  // long-lived: one per scripted model (made once, so its getters cost no run anything; test/unit/object-literals.test.ts)
  return {
    name: options.name ?? 'scripted',
    requests,
    get remaining() {
      return steps.length - index;
    },
    verify() {
      if (index < steps.length) throw new Error(`scripted model: ${steps.length - index} of ${steps.length} steps were never used`);
    },
    async step(request, { signal }) {
      requests.push(structuredClone(request));
      const step = steps[index++];
      if (!step) throw new Error(`scripted model: called ${index} times, but the script has only ${steps.length} steps`);
      if (options.delayMs) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, options.delayMs);
          signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)), { once: true });
        });
      }
      signal.throwIfAborted();
      const usage = { inputTokens: 10, outputTokens: 5 };
      if (typeof step === 'function') return step(request);
      if ('error' in step) throw step.error;
      if ('response' in step) return step.response as ModelResponse;
      if ('toolCalls' in step) {
        return {
          text: step.text ?? null,
          toolCalls: step.toolCalls.map((call, position) => ({
            id: call.id ?? `call_${index}_${position}`,
            name: call.name,
            arguments: typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments),
          })),
          usage: step.usage ?? usage,
          finishReason: 'tool_calls',
        };
      }
      return { text: step.text, toolCalls: [], usage: step.usage ?? usage, finishReason: 'stop' };
    },
  };
}
