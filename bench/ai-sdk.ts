// The Vercel AI SDK baseline (ai@6): the same one-hop run as a `generateText` tool loop with the SDK's own mock model; the only bench file importing `ai`.
import { generateText, stepCountIs, tool, type ModelMessage, type ToolExecutionOptions } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import type { ZodType } from 'zod';
import type { Workload } from './measure.js';
import { authorizeCall, baselineRequest, baselineWorkload, maxToolHops, services, startWriteBack, systemMessage, type BaselineRequest, type Services } from './baselines.js';
import type { ChatMessage } from '../src/index.js';
import { freshTenants, type Outcome, type RequestShape } from './workloads.js';

type CallOptions = Parameters<MockLanguageModelV3['doGenerate']>[0];
type GenerateResult = Awaited<ReturnType<MockLanguageModelV3['doGenerate']>>;

const usage = () => ({
  inputTokens: { total: 10, noCache: 10, cacheRead: undefined, cacheWrite: undefined },
  outputTokens: { total: 5, text: 5, reasoning: undefined },
});

/**
 * The SDK's `MockLanguageModelV3` deciding as the bench's instant model does: after the user's
 * question it calls `math_add` {a:2,b:3}; after the tool result it answers with it (held back
 * while `stats.parking`, like the other workloads' second calls).
 */
function mockModel(deps: Services, recordPrompt: boolean, prompts: { last: CallOptions['prompt'] }): MockLanguageModelV3 {
  const { stats } = deps;
  const model: MockLanguageModelV3 = new MockLanguageModelV3({
    provider: 'bench',
    modelId: 'bench-instant',
    doGenerate: (options: CallOptions): Promise<GenerateResult> => {
      // The mock keeps every call's options; a long bench would hold them all.
      model.doGenerateCalls.length = 0;
      stats.modelCalls++;
      const last = options.prompt[options.prompt.length - 1];
      if (last?.role === 'user') {
        if (recordPrompt) prompts.last = options.prompt;
        return Promise.resolve({
          content: [{ type: 'tool-call', toolCallId: 'call_1', toolName: 'math_add', input: '{"a":2,"b":3}' }],
          finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
          usage: usage(),
          warnings: [],
        });
      }
      if (last?.role === 'tool') {
        const part = last.content[0];
        const value = part?.type === 'tool-result' && part.output.type === 'json' ? part.output.value : undefined;
        const answer: GenerateResult = { content: [{ type: 'text', text: `2 + 3 = ${JSON.stringify(value)}` }], finishReason: { unified: 'stop', raw: 'stop' }, usage: usage(), warnings: [] };
        if (stats.parking) return new Promise((resolve) => stats.parked.push(() => resolve(answer)));
        return Promise.resolve(answer);
      }
      return Promise.reject(new Error(`bench AI SDK model: unexpected last message (${last?.role ?? 'none'})`));
    },
  });
  return model;
}

/** A prompt message in the shape runchart's model is shown, for the app workload's check of the history. */
function asChatMessage(message: CallOptions['prompt'][number]): ChatMessage {
  if (message.role === 'system') return { role: 'system', content: message.content };
  const text = message.content.map((part) => (part.type === 'text' ? part.text : '')).join('');
  if (message.role === 'user') return { role: 'user', content: text };
  if (message.role === 'assistant') return { role: 'assistant', content: text };
  return { role: 'tool', toolCallId: '', content: '' };
}

/** What each run hands its tool through `experimental_context`: whose run it is, for the tool-stage policy. */
interface RunContext {
  request: BaselineRequest;
  hop: number;
}

/**
 * The AI SDK's loop, with the calls every baseline makes around it: precheck and in-memory recall
 * before `generateText`; in the tool's `execute`, the tool-stage decision, then `math.add`'s
 * handler (the SDK parses the model's arguments with the capability's zod schema); the output and
 * memory.write checks after it, and the write-back started once the result is out.
 */
export function aiSdkWorkload(shape: RequestShape = freshTenants): Workload & { deps: Services } {
  const deps = services();
  // The first call's prompt, kept as given: converted for the check outside the SDK's timed work.
  const prompts: { last: CallOptions['prompt'] } = { last: [] };
  const model = mockModel(deps, shape.checkPrompt !== undefined, prompts);
  const capability = deps.byToolName.get('math_add')!;
  const tools = {
    math_add: tool({
      description: capability.description,
      inputSchema: capability.input as ZodType<{ a: number; b: number }>,
      execute: async (args: { a: number; b: number }, options: ToolExecutionOptions) => {
        const context = options.experimental_context as RunContext;
        const planned = { call: { id: options.toolCallId, name: 'math_add', arguments: '' }, callId: `c${context.hop++}.0`, capability };
        const signal = options.abortSignal ?? new AbortController().signal;
        const decision = await authorizeCall(deps, context.request, planned, signal);
        if (decision.verdict !== 'allow') return `denied by policy: ${decision.reason}`;
        const { runId, tenantId, principalId } = context.request;
        return capability.handler(args, { signal, idempotencyKey: `${runId}:${planned.callId}`, runId, callId: planned.callId, tenantId, principalId });
      },
    }),
  };

  async function run(request: BaselineRequest): Promise<Outcome> {
    const controller = new AbortController();
    const { signal } = controller;
    const scope = { runId: request.runId, tenantId: request.tenantId, principalId: request.principalId };
    const precheck = await deps.policy.evaluate({ stage: 'precheck', ...scope }, { signal });
    if (precheck.verdict !== 'allow') return { status: 'denied', output: null, modelCalls: 0, toolCalls: 0, toolOutput: undefined };
    const recalled = await deps.memory.recall(
      { tenantId: request.tenantId, principalId: request.principalId, ...(request.sessionId ? { sessionId: request.sessionId } : {}), query: request.input, limit: 5 },
      { signal },
    );
    const context: RunContext = { request, hop: 0 };
    // The session's turns before the question, as runchart shows them to its model.
    const messages: ModelMessage[] = recalled.history.map((turn) => ({ role: turn.role, content: turn.content }));
    messages.push({ role: 'user', content: request.input });
    const result = await generateText({
      model,
      system: systemMessage(recalled).content as string,
      messages,
      tools,
      stopWhen: stepCountIs(maxToolHops + 1),
      abortSignal: signal,
      experimental_context: context,
    });
    const toolResults = result.steps.flatMap((step) => step.toolResults);
    const outcome = { modelCalls: result.steps.length, toolCalls: toolResults.length, toolOutput: toolResults[0]?.output };
    const outputCheck = await deps.policy.evaluate({ stage: 'output', ...scope }, { signal });
    if (outputCheck.verdict !== 'allow') return { status: 'denied', output: null, ...outcome };
    const writeCheck = await deps.policy.evaluate({ stage: 'memory.write', ...scope }, { signal });
    if (writeCheck.verdict === 'allow') startWriteBack(deps, request, result.text);
    return { status: result.finishReason === 'stop' ? 'completed' : `finished with ${result.finishReason}`, output: result.text, ...outcome };
  }

  const name = `AI SDK${shape.label}`;
  const workload = baselineWorkload(name, deps, (index) => ({ outcome: run(baselineRequest(index, shape)) }));
  return {
    ...workload,
    deps,
    async run(index) {
      await workload.run(index);
      shape.checkPrompt?.(index, prompts.last.map(asChatMessage));
    },
  };
}
