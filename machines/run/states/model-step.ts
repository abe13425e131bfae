import { assign } from 'xstate';
import type { ModelResponse } from '../../../src/models/contract.js';
import type { ErrorKind } from '../../../src/errors.js';
import { modelRequestFor, planToolCalls } from '../plan.js';
import { failedIn, runSetup, traced, usageAfter } from '../setup.js';
import type { RunContext } from '../types.js';

type Done = { context: RunContext; event: { output: ModelResponse } };
const response = ({ event }: Done) => ({ response: event.output });
const stepMark = {
  type: 'mark',
  params: ({ context, event }: Done) => ({
    mark: {
      kind: 'model.step' as const,
      model: context.settings.model,
      usage: event.output.usage,
      finishReason: event.output.finishReason,
      toolCalls: event.output.toolCalls.length,
      text: event.output.text,
    },
  }),
} as const;
/** What every failing answer does: the step is marked and counted. */
const counted = [stepMark, { type: 'countModelCall', params: response }] as const;
const failWith = (kind: ErrorKind, message: (done: Done) => string) =>
  ({ type: 'fail', params: (done: Done) => ({ error: { kind, layer: 'model' as const, message: message(done), retryable: false } }) }) as const;

/** One model step; the chart, not the model, decides whether another tool round fits the budgets. */
export const modelStep = runSetup.createStateConfig({
  entry: [traced('modelStep').entry, { type: 'startModelStep' }],
  exit: traced('modelStep').exit,
  invoke: {
    id: 'callModel',
    src: 'callModel',
    input: ({ context }) => Object.assign({ runId: context.runId, deadline: context.modelDeadline }, modelRequestFor(context)),
    onDone: [
      {
        guard: { type: 'isOverTokenBudget', params: response },
        target: 'failed',
        actions: [...counted, failWith('budget-exceeded', ({ context }) => `model: the run spent its budget of ${context.settings.maxTotalTokens} tokens`)],
      },
      {
        guard: { type: 'isIncompleteAnswer', params: response },
        target: 'failed',
        actions: [
          ...counted,
          {
            type: 'fail',
            params: ({ event }) => ({
              error:
                event.output.finishReason === 'length'
                  ? { kind: 'truncated' as const, layer: 'model' as const, message: 'model: the answer was cut at the model’s output limit (finishReason "length"); raise the model’s output limit or ask for less', retryable: false }
                  : { kind: 'content-filtered' as const, layer: 'model' as const, message: 'model: the provider withheld the answer (finishReason "content_filter")', retryable: false },
            }),
          },
        ],
      },
      {
        guard: { type: 'isEmptyAnswer', params: response },
        target: 'failed',
        actions: [...counted, failWith('model-behavior', () => 'model: the model returned neither text nor tool calls')],
      },
      {
        guard: { type: 'asksForToolsPastHopBudget', params: response },
        target: 'failed',
        actions: [
          ...counted,
          failWith('budget-exceeded', ({ context }) => `model: the model asked for tools after ${context.hops} tool rounds; max_tool_hops is ${context.settings.maxToolHops}`),
        ],
      },
      {
        guard: { type: 'asksForTooManyTools', params: response },
        target: 'failed',
        actions: [
          ...counted,
          failWith(
            'budget-exceeded',
            ({ context, event }) =>
              `model: the model asked for ${event.output.toolCalls.length} tool calls in one step; max_tool_calls_per_step is ${context.settings.maxToolCallsPerStep}`,
          ),
        ],
      },
      {
        guard: { type: 'asksForTools', params: response },
        target: 'toolExecution',
        actions: [
          stepMark,
          assign(({ context, event }) => ({
            usage: usageAfter(context, event.output),
            calls: planToolCalls(event.output.toolCalls, context.accepted.capabilities, context.hops, context.settings.maxToolArgumentChars),
            cursor: 0,
            messages: [...context.messages, { role: 'assistant' as const, content: event.output.text, toolCalls: event.output.toolCalls }],
          })),
        ],
      },
      { target: 'assembly', actions: [stepMark, assign(({ context, event }) => ({ usage: usageAfter(context, event.output), output: event.output.text }))] },
    ],
    onError: { target: 'failed', actions: failedIn('model') },
  },
});
