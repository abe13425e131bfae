// The async-loop and plain-XState baselines: the same calls as the one-hop run, as a hand-written async loop and as a plain XState chart; and what the baselines share.
import { assign, createActor, fromPromise, setup, toPromise } from 'xstate';
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
import { benchRules, checkCounts, checkOutcome, freshTenants, instantModel, mathAdd, newStats, type FakeStats, type Outcome, type RequestShape } from './workloads.js';

const systemPrompt = 'You are a helpful assistant. Use the tools you are given when they help.';
export const maxToolHops = 3;

/** What both baselines call: the same fake model and tool as runchart, the rules policy, in-memory recall. */
export interface Services {
  stats: FakeStats;
  model: ModelAdapter;
  policy: PolicyLayer;
  memory: MemoryLayer;
  tools: ToolSpec[];
  byToolName: Map<string, Capability>;
  /** Write-backs started after a result was released, as runchart's background queue runs them; awaited by `settle`. */
  writeBacks: Set<Promise<void>>;
}

export function services(): Services {
  const stats = newStats();
  const tool = mathAdd(stats);
  return {
    stats,
    model: instantModel(stats),
    policy: createRulesPolicy(benchRules),
    memory: createInMemoryMemory(),
    tools: [{ name: toolNameFor(tool.name), description: tool.description, parameters: tool.parameters }],
    byToolName: new Map([[toolNameFor(tool.name), tool]]),
    writeBacks: new Set(),
  };
}

/**
 * The turn's memory write-back, as runchart's background task does it: started once the result
 * is released, not awaited by the run.
 */
export function startWriteBack(services: Services, request: BaselineRequest, output: string | null): void {
  const done: Promise<void> = services.memory
    .remember(
      {
        tenantId: request.tenantId,
        principalId: request.principalId,
        ...(request.sessionId ? { sessionId: request.sessionId } : {}),
        runId: request.runId,
        input: request.input,
        output: output ?? '',
        createdAt: new Date().toISOString(),
      },
      { idempotencyKey: `${request.runId}:memory.write`, signal: new AbortController().signal },
    )
    .finally(() => services.writeBacks.delete(done));
  services.writeBacks.add(done);
}

/** Waits for every started write-back. */
async function settleWriteBacks(services: Services): Promise<void> {
  while (services.writeBacks.size) await Promise.all([...services.writeBacks]);
}

export interface BaselineRequest {
  runId: string;
  input: string;
  tenantId: string;
  principalId: string;
  /** Only on the app workload: its turns are the session's history. */
  sessionId?: string;
}

export const baselineRequest = (index: number, shape: RequestShape = freshTenants): BaselineRequest => ({ runId: `run-${index}`, ...shape.request(index) });

export function systemMessage(recalled: RecallResult): ChatMessage {
  const memory = recalled.items.length ? `\n\nThings you may know from earlier conversations:\n${recalled.items.map((item) => `- ${item.text}`).join('\n')}` : '';
  return { role: 'system', content: systemPrompt + memory };
}

/** A planned call: its capability (undefined for an unknown tool) and its id in the run. */
export interface PlannedCall {
  call: ToolCall;
  callId: string;
  capability: Capability | undefined;
}

const planCalls = (services: Services, calls: ToolCall[], hop: number): PlannedCall[] =>
  calls.map((call, index) => ({ call, callId: `c${hop}.${index}`, capability: services.byToolName.get(call.name) }));

/** The tool-stage decision for one call. */
export function authorizeCall(services: Services, request: BaselineRequest, planned: PlannedCall, signal: AbortSignal): Promise<PolicyDecision> {
  const capability = planned.capability!;
  return services.policy.evaluate(
    { stage: 'tool', runId: request.runId, tenantId: request.tenantId, principalId: request.principalId, capability: capability.name, version: capability.version, callId: planned.callId },
    { signal },
  );
}

/** One allowed call: JSON and zod parse of the arguments, then the handler; the tool message for the model. */
async function executeCall(request: BaselineRequest, planned: PlannedCall, signal: AbortSignal): Promise<{ message: ChatMessage; executed: boolean; output?: unknown }> {
  const { call, callId } = planned;
  const capability = planned.capability!;
  let json: unknown;
  try {
    json = JSON.parse(call.arguments);
  } catch (error) {
    return { message: { role: 'tool', toolCallId: call.id, content: `error: the arguments are not valid JSON (${(error as Error).message})` }, executed: false };
  }
  const args = capability.input.safeParse(json);
  if (!args.success) return { message: { role: 'tool', toolCallId: call.id, content: 'error: the arguments do not match the input schema' }, executed: false };
  const output = await capability.handler(args.data, {
    signal,
    idempotencyKey: `${request.runId}:${callId}`,
    runId: request.runId,
    callId,
    tenantId: request.tenantId,
    principalId: request.principalId,
  });
  return { message: { role: 'tool', toolCallId: call.id, content: JSON.stringify(output ?? null) }, executed: true, output };
}

const unknownToolMessage = (call: ToolCall): ChatMessage => ({ role: 'tool', toolCallId: call.id, content: `error: unknown tool "${call.name}"` });
const deniedMessage = (call: ToolCall, decision: PolicyDecision): ChatMessage => ({ role: 'tool', toolCallId: call.id, content: `denied by policy: ${decision.reason}` });

/** One model step's tool calls, one after the other: tool-stage policy, then the call. */
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
  for (const planned of planCalls(services, calls, hop)) {
    if (!planned.capability) {
      messages.push(unknownToolMessage(planned.call));
      continue;
    }
    const decision = await authorizeCall(services, request, planned, signal);
    if (decision.verdict !== 'allow') {
      messages.push(deniedMessage(planned.call, decision));
      continue;
    }
    const result = await executeCall(request, planned, signal);
    messages.push(result.message);
    if (result.executed) {
      executed++;
      lastOutput = result.output;
    }
  }
  return { messages, executed, lastOutput };
}

/** The hand-written loop: precheck, recall, model ⇄ tools, output check, memory-write check and write-back; one AbortController per run. */
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
  const writeCheck = await services.policy.evaluate({ stage: 'memory.write', ...scope }, { signal });
  if (writeCheck.verdict === 'allow') startWriteBack(services, request, output);
  return { status: 'completed', output, modelCalls, toolCalls, toolOutput };
}

/** One started baseline run: its outcome, and whether it is still in flight (parked at its second model call). */
export interface Launched {
  outcome: Promise<Outcome>;
  /** Without it (a loop has no state to inspect), in flight means not settled yet. */
  inFlight?(): boolean;
}

/** A baseline as a workload: every figure checks each run's outcome and the fakes' counters. */
export function baselineWorkload(name: string, deps: Services, launch: (index: number) => Launched): Workload {
  const { stats } = deps;
  const counted = () => ({ modelCalls: stats.modelCalls, toolCalls: stats.toolCalls });
  async function settleAll(runs: Launched[], firstIndex: number, what: string, before: ReturnType<typeof counted>) {
    (await Promise.all(runs.map((run) => run.outcome))).forEach((outcome, i) => checkOutcome(name, firstIndex + i, outcome));
    checkCounts(`${name}, ${what}`, stats, before, runs.length);
  }
  return {
    name,
    async run(index) {
      const before = counted();
      await settleAll([launch(index)], index, `run ${index}`, before);
    },
    async runMany(count, firstIndex) {
      const before = counted();
      const runs = Array.from({ length: count }, (_, i) => launch(firstIndex + i));
      await settleAll(runs, firstIndex, `${count} runs in flight`, before);
    },
    async park(count, firstIndex): Promise<ParkedRuns> {
      const before = counted();
      stats.parking = true;
      let settled = 0;
      const runs = Array.from({ length: count }, (_, i) => launch(firstIndex + i));
      for (const run of runs) run.outcome.then(() => settled++, () => settled++);
      await waitUntil(() => stats.parked.length === count || settled > 0, 120_000, `${count} ${name} runs to park`);
      stats.parking = false;
      if (settled > 0) throw new Error(`bench: ${name}: ${settled} runs finished while they should be parked`);
      return {
        inFlight: () => (runs[0]?.inFlight ? runs.filter((run) => run.inFlight!()).length : count - settled),
        async release() {
          for (const resume of stats.parked.splice(0)) resume();
          await settleAll(runs, firstIndex, `${count} parked runs`, before);
        },
      };
    },
    settle: () => settleWriteBacks(deps),
    close: async () => {},
  };
}

/** The async-loop baseline as a workload. */
export function asyncLoopWorkload(): Workload {
  const deps = services();
  return baselineWorkload('async loop', deps, (index) => ({ outcome: loopRun(deps, baselineRequest(index)) }));
}

interface ChartContext {
  request: BaselineRequest;
  messages: ChatMessage[];
  hops: number;
  calls: PlannedCall[];
  cursor: number;
  modelCalls: number;
  toolCalls: number;
  toolOutput: unknown;
  output: string | null;
  status: 'running' | 'completed' | 'denied' | 'failed';
  error: string | null;
}

/** A plain XState v5 chart for the same steps: one fresh `fromPromise` actor per step (9 per one-hop run). */
function chartFor(deps: Services) {
  const policyRequest = (context: ChartContext, stage: 'precheck' | 'output' | 'memory.write'): PolicyRequest => ({
    stage,
    runId: context.request.runId,
    tenantId: context.request.tenantId,
    principalId: context.request.principalId,
  });
  const failed = { target: 'failed', actions: 'recordError' } as const;
  const current = (context: ChartContext) => context.calls[context.cursor]!;
  return setup({
    types: { context: {} as ChartContext, input: {} as BaselineRequest, output: {} as Outcome },
    actors: {
      checkPolicy: fromPromise<PolicyDecision, PolicyRequest>(({ input, signal }) => deps.policy.evaluate(input, { signal })),
      recall: fromPromise<RecallResult, RecallQuery>(({ input, signal }) => deps.memory.recall(input, { signal })),
      callModel: fromPromise<ModelResponse, ModelRequest>(({ input, signal }) => deps.model.step(input, { signal })),
      authorizeCall: fromPromise<PolicyDecision, { request: BaselineRequest; planned: PlannedCall }>(({ input, signal }) => authorizeCall(deps, input.request, input.planned, signal)),
      executeCall: fromPromise<Awaited<ReturnType<typeof executeCall>>, { request: BaselineRequest; planned: PlannedCall }>(({ input, signal }) =>
        executeCall(input.request, input.planned, signal),
      ),
    },
    actions: {
      recordError: assign({ error: ({ event }) => String((event as { error?: unknown }).error) }),
    },
  }).createMachine({
    id: 'baseline',
    context: ({ input }) => ({
      request: input,
      messages: [],
      hops: 0,
      calls: [],
      cursor: 0,
      modelCalls: 0,
      toolCalls: 0,
      toolOutput: undefined,
      output: null,
      status: 'running',
      error: null,
    }),
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
              target: 'nextCall',
              actions: assign({
                modelCalls: ({ context }) => context.modelCalls + 1,
                messages: ({ context, event }) => [...context.messages, { role: 'assistant', content: event.output.text, toolCalls: event.output.toolCalls }],
                calls: ({ context, event }) => planCalls(deps, event.output.toolCalls, context.hops),
                cursor: 0,
              }),
            },
          ],
          onError: failed,
        },
      },
      nextCall: {
        always: [
          { guard: ({ context }) => context.cursor >= context.calls.length, target: 'model', actions: assign({ hops: ({ context }) => context.hops + 1 }) },
          {
            guard: ({ context }) => !current(context).capability,
            target: 'nextCall',
            reenter: true,
            actions: assign({ messages: ({ context }) => [...context.messages, unknownToolMessage(current(context).call)], cursor: ({ context }) => context.cursor + 1 }),
          },
          { target: 'authorizeCall' },
        ],
      },
      authorizeCall: {
        invoke: {
          id: 'authorizeCall',
          src: 'authorizeCall',
          input: ({ context }) => ({ request: context.request, planned: current(context) }),
          onDone: [
            { guard: ({ event }) => event.output.verdict === 'allow', target: 'executeCall' },
            {
              target: 'nextCall',
              actions: assign({ messages: ({ context, event }) => [...context.messages, deniedMessage(current(context).call, event.output)], cursor: ({ context }) => context.cursor + 1 }),
            },
          ],
          onError: failed,
        },
      },
      executeCall: {
        invoke: {
          id: 'executeCall',
          src: 'executeCall',
          input: ({ context }) => ({ request: context.request, planned: current(context) }),
          onDone: {
            target: 'nextCall',
            actions: assign({
              messages: ({ context, event }) => [...context.messages, event.output.message],
              toolCalls: ({ context, event }) => context.toolCalls + (event.output.executed ? 1 : 0),
              toolOutput: ({ context, event }) => (event.output.executed ? event.output.output : context.toolOutput),
              cursor: ({ context }) => context.cursor + 1,
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
          onDone: [{ guard: ({ event }) => event.output.verdict === 'allow', target: 'authorizeWrite' }, { target: 'denied' }],
          onError: failed,
        },
      },
      authorizeWrite: {
        invoke: {
          id: 'checkWrite',
          src: 'checkPolicy',
          input: ({ context }) => policyRequest(context, 'memory.write'),
          onDone: [
            { guard: ({ event }) => event.output.verdict === 'allow', target: 'completed', actions: ({ context }) => startWriteBack(deps, context.request, context.output) },
            { target: 'completed' },
          ],
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
  const deps = services();
  const machine = chartFor(deps);
  return baselineWorkload('plain XState', deps, (index) => {
    const actor = createActor(machine, { input: baselineRequest(index) }).start();
    return {
      outcome: toPromise(actor),
      inFlight: () => {
        const snapshot = actor.getSnapshot();
        return snapshot.status === 'active' && snapshot.value === 'model' && snapshot.context.modelCalls === 1 && snapshot.context.toolCalls === 1;
      },
    };
  });
}
