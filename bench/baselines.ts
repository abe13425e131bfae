// The two baselines: the same calls as the one-hop run, as a hand-written async loop and as a plain XState chart.
import { assign, createActor, fromPromise, setup, toPromise, type ActorRefFrom } from 'xstate';
import {
  createInMemoryMemory,
  createRulesPolicy,
  toolNameFor,
  type Capability,
  type ChatMessage,
  type MemoryLayer,
  type ModelAdapter,
  type ModelRequest,
  type ModelResponse,
  type PolicyDecision,
  type PolicyLayer,
  type PolicyRequest,
  type RecallQuery,
  type RecallResult,
  type ToolCall,
  type ToolSpec,
} from '../src/index.js';
import { waitUntil, type ParkedRuns, type Workload } from './measure.js';
import { benchRules, checkCounts, checkOutcome, instantModel, mathAdd, newStats, requestFor, type FakeStats, type Outcome } from './workloads.js';

const systemPrompt = 'You are a helpful assistant. Use the tools you are given when they help.';
const maxToolHops = 3;

/** What both baselines call: the same fake model and tool as runchart, the rules policy, in-memory recall. */
interface Services {
  stats: FakeStats;
  model: ModelAdapter;
  policy: PolicyLayer;
  memory: MemoryLayer;
  tools: ToolSpec[];
  byToolName: Map<string, Capability>;
}

function services(): Services {
  const stats = newStats();
  const tool = mathAdd(stats);
  return {
    stats,
    model: instantModel(stats),
    policy: createRulesPolicy(benchRules),
    memory: createInMemoryMemory(),
    tools: [{ name: toolNameFor(tool.name), description: tool.description, parameters: tool.parameters }],
    byToolName: new Map([[toolNameFor(tool.name), tool]]),
  };
}

interface BaselineRequest {
  runId: string;
  input: string;
  tenantId: string;
  principalId: string;
}

const baselineRequest = (index: number): BaselineRequest => ({ runId: `run-${index}`, ...requestFor(index) });

function systemMessage(recalled: RecallResult): ChatMessage {
  const memory = recalled.items.length ? `\n\nThings you may know from earlier conversations:\n${recalled.items.map((item) => `- ${item.text}`).join('\n')}` : '';
  return { role: 'system', content: systemPrompt + memory };
}

/** One model step's tool calls: tool-stage policy, zod parse of the arguments, the handler; one tool message per call. */
async function runTools(
  services: Services,
  request: BaselineRequest,
  calls: ToolCall[],
  hop: number,
  signal: AbortSignal,
): Promise<{ messages: ChatMessage[]; executed: number; lastOutput: unknown }> {
  const messages: ChatMessage[] = [];
  let executed = 0;
  let lastOutput: unknown;
  for (const [index, call] of calls.entries()) {
    const capability = services.byToolName.get(call.name);
    if (!capability) {
      messages.push({ role: 'tool', toolCallId: call.id, content: `error: unknown tool "${call.name}"` });
      continue;
    }
    const callId = `c${hop}.${index}`;
    const decision = await services.policy.evaluate(
      { stage: 'tool', runId: request.runId, tenantId: request.tenantId, principalId: request.principalId, capability: capability.name, version: capability.version, callId },
      { signal },
    );
    if (decision.verdict !== 'allow') {
      messages.push({ role: 'tool', toolCallId: call.id, content: `denied by policy: ${decision.reason}` });
      continue;
    }
    let json: unknown;
    try {
      json = JSON.parse(call.arguments);
    } catch (error) {
      messages.push({ role: 'tool', toolCallId: call.id, content: `error: the arguments are not valid JSON (${(error as Error).message})` });
      continue;
    }
    const args = capability.input.safeParse(json);
    if (!args.success) {
      messages.push({ role: 'tool', toolCallId: call.id, content: `error: the arguments do not match the input schema` });
      continue;
    }
    const output = await capability.handler(args.data, {
      signal,
      idempotencyKey: `${request.runId}:${callId}`,
      runId: request.runId,
      callId,
      tenantId: request.tenantId,
      principalId: request.principalId,
    });
    executed++;
    lastOutput = output;
    messages.push({ role: 'tool', toolCallId: call.id, content: JSON.stringify(output ?? null) });
  }
  return { messages, executed, lastOutput };
}

/** The hand-written loop: precheck, recall, model ⇄ tools, output check; one AbortController per run. */
async function loopRun(services: Services, request: BaselineRequest): Promise<Outcome> {
  const { signal } = new AbortController();
  const scope = { runId: request.runId, tenantId: request.tenantId, principalId: request.principalId };
  const precheck = await services.policy.evaluate({ stage: 'precheck', ...scope }, { signal });
  if (precheck.verdict !== 'allow') return { status: 'denied', output: null, modelCalls: 0, toolCalls: 0, toolOutput: undefined };
  const recalled = await services.memory.recall({ tenantId: request.tenantId, principalId: request.principalId, query: request.input, limit: 5 }, { signal });
  const messages: ChatMessage[] = [systemMessage(recalled), { role: 'user', content: request.input }];
  let modelCalls = 0;
  let toolCalls = 0;
  let toolOutput: unknown;
  let output: string | null = null;
  for (let hop = 0; ; hop++) {
    const response = await services.model.step({ model: 'bench', messages, tools: services.tools }, { signal });
    modelCalls++;
    if (response.toolCalls.length === 0) {
      output = response.text;
      break;
    }
    if (hop >= maxToolHops) return { status: 'failed', output: null, modelCalls, toolCalls, toolOutput, detail: 'hop budget spent' };
    messages.push({ role: 'assistant', content: response.text, toolCalls: response.toolCalls });
    const ran = await runTools(services, request, response.toolCalls, hop, signal);
    messages.push(...ran.messages);
    toolCalls += ran.executed;
    toolOutput = ran.lastOutput;
  }
  const outputCheck = await services.policy.evaluate({ stage: 'output', ...scope }, { signal });
  if (outputCheck.verdict !== 'allow') return { status: 'denied', output: null, modelCalls, toolCalls, toolOutput };
  return { status: 'completed', output, modelCalls, toolCalls, toolOutput };
}

/** The async-loop baseline as a workload. */
export function asyncLoopWorkload(): Workload {
  const name = 'async loop';
  const deps = services();
  const { stats } = deps;
  return {
    name,
    async run(index) {
      const before = { modelCalls: stats.modelCalls, toolCalls: stats.toolCalls };
      checkOutcome(name, index, await loopRun(deps, baselineRequest(index)));
      checkCounts(`${name}, run ${index}`, stats, before, 1);
    },
    async runMany(count, firstIndex) {
      const before = { modelCalls: stats.modelCalls, toolCalls: stats.toolCalls };
      const runs: Promise<Outcome>[] = new Array(count);
      for (let i = 0; i < count; i++) runs[i] = loopRun(deps, baselineRequest(firstIndex + i));
      (await Promise.all(runs)).forEach((outcome, i) => checkOutcome(name, firstIndex + i, outcome));
      checkCounts(`${name}, ${count} runs in flight`, stats, before, count);
    },
    async park(count, firstIndex): Promise<ParkedRuns> {
      const before = { modelCalls: stats.modelCalls, toolCalls: stats.toolCalls };
      stats.parking = true;
      let settled = 0;
      const runs: Promise<Outcome>[] = new Array(count);
      for (let i = 0; i < count; i++) {
        runs[i] = loopRun(deps, baselineRequest(firstIndex + i));
        runs[i]!.then(
          () => settled++,
          () => settled++,
        );
      }
      await waitUntil(() => stats.parked.length === count || settled > 0, 120_000, `${count} ${name} runs to park`);
      stats.parking = false;
      if (settled > 0) throw new Error(`bench: ${name}: ${settled} runs finished while they should be parked`);
      return {
        // A loop has no state to inspect: in flight means unsettled, with its second model call waiting.
        inFlight: () => (settled === 0 ? stats.parked.length : 0),
        async release() {
          for (const resume of stats.parked.splice(0)) resume();
          (await Promise.all(runs)).forEach((outcome, i) => checkOutcome(name, firstIndex + i, outcome));
          checkCounts(`${name}, ${count} parked runs`, stats, before, count);
        },
      };
    },
    settle: async () => {},
    close: async () => {},
  };
}

interface ChartContext {
  request: BaselineRequest;
  messages: ChatMessage[];
  hops: number;
  modelCalls: number;
  toolCalls: number;
  toolOutput: unknown;
  output: string | null;
  status: 'running' | 'completed' | 'denied' | 'failed';
  error: string | null;
}

type ToolsInput = { request: BaselineRequest; calls: ToolCall[]; hop: number };

/** A plain XState v5 chart for the same steps: one fresh `fromPromise` actor per step. */
function chartFor(deps: Services) {
  const policyRequest = (context: ChartContext, stage: 'precheck' | 'output'): PolicyRequest => ({
    stage,
    runId: context.request.runId,
    tenantId: context.request.tenantId,
    principalId: context.request.principalId,
  });
  const failed = { target: 'failed', actions: 'recordError' } as const;
  return setup({
    types: { context: {} as ChartContext, input: {} as BaselineRequest, output: {} as Outcome },
    actors: {
      checkPolicy: fromPromise<PolicyDecision, PolicyRequest>(({ input, signal }) => deps.policy.evaluate(input, { signal })),
      recall: fromPromise<RecallResult, RecallQuery>(({ input, signal }) => deps.memory.recall(input, { signal })),
      callModel: fromPromise<ModelResponse, ModelRequest>(({ input, signal }) => deps.model.step(input, { signal })),
      runTools: fromPromise<Awaited<ReturnType<typeof runTools>>, ToolsInput>(({ input, signal }) => runTools(deps, input.request, input.calls, input.hop, signal)),
    },
    actions: {
      recordError: assign({ error: ({ event }) => String((event as { error?: unknown }).error) }),
    },
  }).createMachine({
    id: 'baseline',
    context: ({ input }) => ({ request: input, messages: [], hops: 0, modelCalls: 0, toolCalls: 0, toolOutput: undefined, output: null, status: 'running', error: null }),
    initial: 'precheck',
    states: {
      precheck: {
        invoke: {
          id: 'checkPolicy',
          src: 'checkPolicy',
          input: ({ context }) => policyRequest(context, 'precheck'),
          onDone: [{ guard: ({ event }) => event.output.verdict === 'allow', target: 'recall' }, { target: 'denied' }],
          onError: failed,
        },
      },
      recall: {
        invoke: {
          id: 'recall',
          src: 'recall',
          input: ({ context }) => ({ tenantId: context.request.tenantId, principalId: context.request.principalId, query: context.request.input, limit: 5 }),
          onDone: {
            target: 'model',
            actions: assign({ messages: ({ context, event }) => [systemMessage(event.output), { role: 'user', content: context.request.input }] }),
          },
          onError: failed,
        },
      },
      model: {
        invoke: {
          id: 'callModel',
          src: 'callModel',
          input: ({ context }) => ({ model: 'bench', messages: context.messages, tools: deps.tools }),
          onDone: [
            { guard: ({ event }) => event.output.toolCalls.length === 0, target: 'output', actions: assign({ output: ({ event }) => event.output.text, modelCalls: ({ context }) => context.modelCalls + 1 }) },
            { guard: ({ context }) => context.hops >= maxToolHops, target: 'failed', actions: assign({ error: 'hop budget spent' }) },
            {
              target: 'tools',
              actions: assign({
                modelCalls: ({ context }) => context.modelCalls + 1,
                messages: ({ context, event }) => [...context.messages, { role: 'assistant', content: event.output.text, toolCalls: event.output.toolCalls }],
              }),
            },
          ],
          onError: failed,
        },
      },
      tools: {
        invoke: {
          id: 'runTools',
          src: 'runTools',
          input: ({ context }) => {
            const last = context.messages[context.messages.length - 1];
            return { request: context.request, calls: last?.role === 'assistant' ? (last.toolCalls ?? []) : [], hop: context.hops };
          },
          onDone: {
            target: 'model',
            actions: assign({
              messages: ({ context, event }) => [...context.messages, ...event.output.messages],
              toolCalls: ({ context, event }) => context.toolCalls + event.output.executed,
              toolOutput: ({ event }) => event.output.lastOutput,
              hops: ({ context }) => context.hops + 1,
            }),
          },
          onError: failed,
        },
      },
      output: {
        invoke: {
          id: 'checkOutput',
          src: 'checkPolicy',
          input: ({ context }) => policyRequest(context, 'output'),
          onDone: [{ guard: ({ event }) => event.output.verdict === 'allow', target: 'completed' }, { target: 'denied' }],
          onError: failed,
        },
      },
      completed: { type: 'final', entry: assign({ status: 'completed' }) },
      denied: { type: 'final', entry: assign({ status: 'denied', output: null }) },
      failed: { type: 'final', entry: assign({ status: 'failed', output: null }) },
    },
    output: ({ context }) => ({
      status: context.status,
      output: context.output,
      modelCalls: context.modelCalls,
      toolCalls: context.toolCalls,
      toolOutput: context.toolOutput,
      ...(context.error ? { detail: context.error } : {}),
    }),
  });
}

/** The plain-XState baseline as a workload: `createActor(...).start()` and `toPromise` per run. */
export function plainXStateWorkload(): Workload {
  const name = 'plain XState';
  const deps = services();
  const { stats } = deps;
  const machine = chartFor(deps);
  const start = (index: number) => createActor(machine, { input: baselineRequest(index) }).start();
  return {
    name,
    async run(index) {
      const before = { modelCalls: stats.modelCalls, toolCalls: stats.toolCalls };
      checkOutcome(name, index, await toPromise(start(index)));
      checkCounts(`${name}, run ${index}`, stats, before, 1);
    },
    async runMany(count, firstIndex) {
      const before = { modelCalls: stats.modelCalls, toolCalls: stats.toolCalls };
      const runs: Promise<Outcome>[] = new Array(count);
      for (let i = 0; i < count; i++) runs[i] = toPromise(start(firstIndex + i));
      (await Promise.all(runs)).forEach((outcome, i) => checkOutcome(name, firstIndex + i, outcome));
      checkCounts(`${name}, ${count} runs in flight`, stats, before, count);
    },
    async park(count, firstIndex): Promise<ParkedRuns> {
      const before = { modelCalls: stats.modelCalls, toolCalls: stats.toolCalls };
      stats.parking = true;
      let settled = 0;
      const actors: ActorRefFrom<typeof machine>[] = new Array(count);
      const runs: Promise<Outcome>[] = new Array(count);
      for (let i = 0; i < count; i++) {
        actors[i] = start(firstIndex + i);
        runs[i] = toPromise(actors[i]!);
        runs[i]!.then(
          () => settled++,
          () => settled++,
        );
      }
      await waitUntil(() => stats.parked.length === count || settled > 0, 120_000, `${count} ${name} runs to park`);
      stats.parking = false;
      if (settled > 0) throw new Error(`bench: ${name}: ${settled} runs finished while they should be parked`);
      return {
        inFlight: () =>
          actors.filter((actor) => {
            const snapshot = actor.getSnapshot();
            return snapshot.status === 'active' && snapshot.value === 'model' && snapshot.context.modelCalls === 1 && snapshot.context.toolCalls === 1;
          }).length,
        async release() {
          for (const resume of stats.parked.splice(0)) resume();
          (await Promise.all(runs)).forEach((outcome, i) => checkOutcome(name, firstIndex + i, outcome));
          checkCounts(`${name}, ${count} parked runs`, stats, before, count);
        },
      };
    },
    settle: async () => {},
    close: async () => {},
  };
}
