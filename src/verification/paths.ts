import { createActor, getInitialSnapshot, type AnyEventObject, type AnyStateMachine, type InspectionEvent, type SnapshotFrom } from 'xstate';
import { getAdjacencyMap, getStateNodes } from 'xstate/graph';
import { runMachine } from '../../machines/run/machine.js';
import type { AcceptedRequest, RunContext, RunInput, RunSettings } from '../../machines/run/types.js';
import { RunchartError } from '../errors.js';
import { hashArguments } from '../execution/contract.js';
import type { ModelResponse } from '../models/contract.js';
import type { DecisionRecord, PolicyDecision, PolicyVerdict } from '../policy/contract.js';
import type { TelemetryMark } from '../telemetry/contract.js';
import { parseConfig, settingsFrom, unknownOption } from '../config.js';

type RunSnapshot = SnapshotFrom<typeof runMachine>;
type AnyTransition = ReturnType<typeof transitionsOf>[number];

/** Which chart is walked, and under which configuration; the tool loop is unrolled to `maxToolHops`. */
export interface PathOptions {
  maxToolHops?: number;
  /** Tool calls the model may ask for in one step (1 unless told: every branch then shows with one call). */
  maxToolCallsPerStep?: number;
  backgroundUpdates?: boolean;
  precheckRequired?: boolean;
  /** The chart to walk: the run machine unless given (a chart of your own that extends it proves itself). */
  machine?: AnyStateMachine;
  /** More sample events for states of your own chart; each is offered in the states that handle its type. */
  samples?: AnyEventObject[];
  /**
   * Also walk one hop of variety (each kind of capability, two calls a step, a refused reviewer's
   * way back and a second review), taken the plain way to its first model step; true unless told.
   * False walks only the loop, one tool call per step unless told.
   */
  variety?: boolean;
}

/** A layer call a step starts: the id and `src` of the invoke, and the input the chart gave it. */
export interface PathEffect {
  id: string;
  src: string;
  input: unknown;
}

/** The layer call a step answered: the call, and whether the answer was its output or its failure. */
export interface PathAnswer extends PathEffect {
  outcome: 'done' | 'error';
  /** What the call answered (a policy decision, a model response, …); absent for a failure. */
  output?: unknown;
}

/** One step of a path: the state it left, the event taken, the state it reached, and what the chart did on the way. */
export interface PathStep {
  from: string;
  event: string;
  to: string;
  /** Hop and call position of the state left, which tell two visits of one state apart. */
  hops: number;
  cursor: number;
  /** The verdict of the decision the chart recorded in this step, if it recorded one. */
  verdict?: PolicyVerdict;
  /** The layer call whose answer this step took (from the snapshot it left), with the answer. */
  answered?: PathAnswer;
  /** The layer calls this step started: the invokes of the states it entered. (A step is shared by the paths through it: read it, never change it.) */
  started: PathEffect[];
  /** The decisions the chart recorded in this step. */
  decisions: DecisionRecord[];
  /** For `tool.approve` / `tool.reject`: whom the event names, and whether it named the parked call's arguments. */
  review?: { kind: 'approve' | 'reject'; callId: string; principalId: string; argsHash?: string };
  /** True when the step reached `completed`: the run's output is released. */
  released: boolean;
  /** Whether the telemetry actor was running in the snapshot the step reached. */
  telemetry: boolean;
  /** The chart's transitions this step took (microsteps included), as `transitionKey` names them. */
  transitions: string[];
  /** The telemetry marks the step sent to the telemetry actor, as `markLabel` names them (`state.enter modelStep`, `decision`, …). */
  marks: string[];
}

/**
 * A path through the run chart from `ingress` to a final state; or to `stuck` (a state whose only
 * ways on are the chart-wide events, such as `run.cancel`), to `error` (the chart threw), or to
 * `over-budget` (tool work after the last model call `max_tool_hops` allows, where the walk stops).
 */
export interface RunPath {
  states: string[];
  final: string;
  /** Why the chart threw, for a path that ends in `error`. */
  thrown?: string;
  /** The telemetry marks sent as the run started (the initial state's entry). */
  startMarks: string[];
  /** The settings the path was walked (or run) under: the budgets and policy settings `checkPath` judges it by. */
  settings?: PathSettings;
  /** Short labels of the events taken, one per step (`checkPrecheck:allow`, `tool.approve`, …). */
  events: string[];
  steps: PathStep[];
}

/** The settings a path's invariants depend on. */
export type PathSettings = Pick<RunSettings, 'maxToolHops' | 'maxToolCallsPerStep' | 'precheckRequired' | 'backgroundUpdates'>;

/** The settings the graph is walked under: one tool call per step and a token budget, so every guard has both outcomes. */
export function pathSettings(options: PathOptions = {}): RunSettings {
  return Object.assign(settingsFrom(parseConfig({})), {
    maxToolHops: options.maxToolHops ?? 3,
    maxToolCallsPerStep: options.maxToolCallsPerStep ?? 1,
    maxTotalTokens: 1_000,
    backgroundUpdates: options.backgroundUpdates ?? true,
    precheckRequired: options.precheckRequired ?? true,
  });
}

/** The capabilities the sample request pins: one of each effect kind. */
export const sampleCapabilities: AcceptedRequest['capabilities'] = (['read', 'write', 'external'] as const).map((effects) => ({
  name: `sample.${effects}`,
  version: '1.0.0',
  toolName: `sample_${effects}`,
  description: `a sample capability that ${effects === 'read' ? 'reads' : effects === 'write' ? 'writes' : 'calls out'}`,
  effects,
  parameters: { type: 'object' },
}));

const sampleAccepted: AcceptedRequest = {
  traceId: '0af7651916cd43dd8448eb211c80319c',
  tenantId: 'tenant',
  principalId: 'principal',
  input: 'sample input',
  capabilities: sampleCapabilities,
};

const usage = { inputTokens: 10, outputTokens: 5 };
const callTo = (name: string, id = 'm1', args = '{"n":1}') => ({ id, name, arguments: args });

/**
 * Every kind of answer the chart tells apart. The variety walk (one hop, two calls a step) also
 * offers the `variety` ones: a call to each kind of capability, two calls, three.
 */
export const sampleModelResponses: Record<string, ModelResponse> = {
  final: { text: 'sample answer', toolCalls: [], usage, finishReason: 'stop' },
  tool: { text: null, toolCalls: [callTo('sample_read')], usage, finishReason: 'tool_calls' },
  'tool:write': { text: null, toolCalls: [callTo('sample_write')], usage, finishReason: 'tool_calls' },
  'tool:external': { text: null, toolCalls: [callTo('sample_external', 'm1', '{"to":"x"}')], usage, finishReason: 'tool_calls' },
  twoTools: { text: null, toolCalls: [callTo('sample_read', 'm1'), callTo('sample_write', 'm2')], usage, finishReason: 'tool_calls' },
  threeTools: { text: null, toolCalls: [callTo('sample_read', 'm1'), callTo('sample_write', 'm2'), callTo('sample_external', 'm3')], usage, finishReason: 'tool_calls' },
  unknownTool: { text: null, toolCalls: [callTo('no_such_tool')], usage, finishReason: 'tool_calls' },
  malformedArguments: { text: null, toolCalls: [callTo('sample_read', 'm1', '{"n":')], usage, finishReason: 'tool_calls' },
  empty: { text: null, toolCalls: [], usage, finishReason: 'stop' },
  truncated: { text: 'sample ans', toolCalls: [], usage, finishReason: 'length' },
  filtered: { text: null, toolCalls: [], usage, finishReason: 'content_filter' },
  overBudget: { text: 'sample answer', toolCalls: [], usage: { inputTokens: 1_000_000, outputTokens: 1 }, finishReason: 'stop' },
};

/** Every verdict, the default deny among them. */
export const sampleDecisions: PolicyDecision[] = [
  { verdict: 'allow', ruleId: 'sample-allow', reason: 'sample' },
  { verdict: 'deny', ruleId: 'sample-deny', reason: 'sample' },
  { verdict: 'require_approval', ruleId: 'sample-approval', reason: 'sample' },
  { verdict: 'deny', ruleId: 'default-deny', reason: 'no rule matched' },
];

/** The answers only the variety walk offers. */
const varietyResponses = new Set(['tool:write', 'tool:external', 'threeTools']);

/** Sample outputs of each kind of layer call, by `src`; a `src` of your own gets one done event with no output. */
const sampleOutputs: Record<string, (snapshot: RunSnapshot, variety: boolean) => unknown[]> = {
  acceptRequest: () => [sampleAccepted],
  evaluatePolicy: () => sampleDecisions,
  recallMemory: () => [{ items: [{ id: 'm', text: 'sample memory', score: 1 }], history: [] }],
  callModel: (_snapshot, variety) => Object.entries(sampleModelResponses).filter(([name]) => variety || !varietyResponses.has(name)).map(([, response]) => response),
  executeTool: () => [
    { status: 'ok', output: 1 },
    { status: 'error', error: { kind: 'tool-failed', message: 'sample tool failure', retryable: false } },
  ],
  awaitApproval: () => [undefined],
  enqueueBackground: () => [undefined],
};

/** The reviews offered to a parked call: bound to it (with and without its argsHash), and the ones a chart must ignore (another call's, other arguments', nobody's). */
function sampleReviews(snapshot: RunSnapshot): AnyEventObject[] {
  const call = snapshot.context.calls?.[snapshot.context.cursor];
  const callId = call?.callId ?? 'c0.0';
  const argsHash = call?.argsHash ?? hashArguments('{}');
  return [
    { type: 'tool.approve', callId, principalId: 'approver', argsHash },
    { type: 'tool.approve', callId, principalId: 'approver' },
    { type: 'tool.approve', callId, principalId: 'approver', argsHash: hashArguments('{"other":"arguments"}') },
    { type: 'tool.approve', callId: `${callId}.other`, principalId: 'approver' },
    { type: 'tool.approve', callId, principalId: '', argsHash },
    { type: 'tool.reject', callId, principalId: 'approver', reason: 'sample' },
    { type: 'tool.reject', callId: `${callId}.other`, principalId: 'approver', reason: 'sample' },
  ];
}

/**
 * The sample events for one snapshot, only those its states handle: a done event for each sample
 * output of each running layer call (by the call's `src`), an error event for each, the reviews
 * of a parked call in every variant, `run.cancel`, and the caller's own samples.
 */
export function sampleEventsFor(snapshot: RunSnapshot, extra: readonly AnyEventObject[] = [], variety = false): AnyEventObject[] {
  const handled = new Set<string>(snapshot._nodes.flatMap((node) => node.ownEvents));
  const events: AnyEventObject[] = [];
  // The variety walk takes the plain way to its first model step: every branch before it is the loop walk's.
  const plain = variety && (snapshot.context.usage?.modelCalls ?? 0) === 0 && !Object.values(snapshot.children as Record<string, { src?: unknown } | undefined>).some((child) => child?.src === 'callModel');
  for (const type of handled) {
    const done = /^xstate\.done\.actor\.(.+)$/.exec(type)?.[1];
    const failed = /^xstate\.error\.actor\.(.+)$/.exec(type)?.[1];
    if (done !== undefined) {
      const child = snapshot.children[done] as { src?: unknown } | undefined;
      const outputs = sampleOutputs[String(child?.src)]?.(snapshot, variety) ?? [undefined];
      for (const output of plain ? outputs.slice(0, 1) : outputs) events.push({ type, output });
    } else if (plain) {
      continue;
    } else if (failed !== undefined) {
      events.push({ type, error: new RunchartError('internal', 'runtime', `runtime: sample failure of ${failed}`) });
    } else if (type === 'tool.approve' || type === 'tool.reject') {
      events.push(...sampleReviews(snapshot).filter((event) => event.type === type));
    } else if (type === 'run.cancel') {
      events.push({ type: 'run.cancel' });
    }
    for (const event of extra) if (event.type === type) events.push(event);
  }
  return events;
}

/** A state value as one dotted name: `toolExecution.awaitingApproval`. */
export function stateKey(value: unknown): string {
  if (typeof value === 'string') return value;
  const [[parent, child]] = Object.entries(value as Record<string, unknown>) as [[string, unknown]];
  return `${parent}.${stateKey(child)}`;
}

/**
 * What tells two snapshots apart for the walk: the state, the hop, the calls of the step with
 * their capabilities and the current one, and whether a review approves (in the variety walk,
 * also whether the current call's reviewer was refused). Everything else a path carries
 * (messages, usage, the recorded decisions) follows from these and the events taken.
 */
export function serialize(snapshot: RunSnapshot, variety = false): string {
  const { hops, cursor, review, calls } = snapshot.context;
  const state = stateKey(snapshot.value);
  // The step's calls by capability (one call: the current one's): a state with two calls planned is not one with one.
  const tool = state.startsWith('toolExecution.') ? (calls ?? []).map((call) => call.capability ?? '-').join('+') || '-' : '-';
  // `reviewing` acts on the review's kind (approve or reject). In the variety walk, a call parked
  // again after a refused reviewer is a state of its own, so the refusal's way back (and one more
  // review of either kind) is taken once.
  const reviewing = state === 'toolExecution.reviewing' ? (review?.kind ?? '-') : '-';
  const refused = variety && state.startsWith('toolExecution.') ? (snapshot.context.decisions ?? []).some((decision) => decision.stage === 'approval' && decision.verdict !== 'allow' && decision.callId === calls?.[cursor]?.callId) : false;
  return `${snapshot.status}|${state}|${hops}|${cursor}|${tool}|${reviewing}${refused ? '|refused' : ''}`;
}

/** Every transition of a chart, each with the key paths name it by and a label for reports. */
export function transitionsOf(machine: AnyStateMachine) {
  const nodes = [machine.root, ...getStateNodes(machine.root)];
  return nodes.flatMap((node) =>
    [...[...node.transitions.values()].flat(), ...(node.always ?? [])].map((transition) => ({
      key: transitionKey(transition as never),
      transition,
      label: transitionLabel(transition as never),
    })),
  );
}

type TransitionLike = { source: { id: string; path: string[] }; eventType: string; target?: ReadonlyArray<{ path: string[] }> | undefined; guard?: unknown };

/** `source event #n`: the n-th candidate of the source state for that event (eventless transitions under `always`). */
export function transitionKey(transition: TransitionLike & { source: { transitions: Map<string, TransitionLike[]>; always?: TransitionLike[] } }): string {
  const candidates = transition.eventType ? (transition.source.transitions.get(transition.eventType) ?? []) : (transition.source.always ?? []);
  return `${transition.source.id} ${transition.eventType || 'always'} #${candidates.indexOf(transition)}`;
}

function transitionLabel(transition: TransitionLike): string {
  const guard = transition.guard as { type?: string } | string | undefined;
  const guardName = typeof guard === 'string' ? guard : guard?.type;
  const targets = transition.target?.map((target) => target.path.join('.') || '(root)').join(', ') ?? '(stays)';
  return `${transition.source.path.join('.') || '(root)'} —${transition.eventType || 'always'}${guardName ? ` [${guardName}]` : ''}→ ${targets}`;
}

function eventLabel(event: AnyEventObject, verdict: PolicyVerdict | undefined): string {
  const output = (event as { output?: unknown }).output;
  const done = /^xstate\.done\.actor\.(.+)$/.exec(event.type)?.[1];
  if (done !== undefined) {
    const decision = output as PolicyDecision | undefined;
    if (decision && typeof decision === 'object' && 'verdict' in decision) return `${done}:${decision.verdict}${decision.ruleId === 'default-deny' ? '(default)' : ''}`;
    const response = Object.entries(sampleModelResponses).find(([, sample]) => sample === output)?.[0];
    if (response) return `${done}:${response}`;
    if (output && typeof output === 'object' && 'status' in output) return `${done}:${String((output as { status: unknown }).status)}`;
    return `${done}:done`;
  }
  const failed = /^xstate\.error\.actor\.(.+)$/.exec(event.type)?.[1];
  if (failed !== undefined) return `${failed}:error`;
  if (event.type === 'tool.approve' || event.type === 'tool.reject') return `${event.type}${reviewTaint(event) ?? ''}`;
  return verdict ? `${event.type}:${verdict}` : event.type;
}

/** Reviews a chart must ignore (another call's, other arguments', or one naming no reviewer): marked so the walk never merges them with the bound ones. */
function reviewTaint(event: AnyEventObject): string | undefined {
  const review = event as unknown as { callId: string; principalId: string; argsHash?: string };
  if (review.callId.endsWith('.other')) return '(another call)';
  if (review.principalId === '') return '(no reviewer)';
  if (review.argsHash === hashArguments('{"other":"arguments"}')) return '(other arguments)';
  return undefined;
}

/** Past this many paths the walk stops: too many to check in reasonable time (or a loop it cannot bound). */
const MAX_PATHS = 200_000;

/** How a path names a telemetry mark: its kind, and the state of a state's entry or exit (`state.enter modelStep`). */
export function markLabel(mark: TelemetryMark): string {
  return mark.kind === 'state.enter' || mark.kind === 'state.exit' ? `${mark.kind} ${mark.state}` : mark.kind;
}

/** What one event did to the chart: the snapshot it reached, the transitions it took, the marks it sent to telemetry. */
interface Recorded {
  next: RunSnapshot;
  transitions: string[];
  marks: string[];
}

/**
 * Runs events through the chart purely and reports what each did: the transitions it took
 * (microsteps included, from `@xstate.microstep` inspection events) and the marks its actions
 * sent to the telemetry actor. A chart that throws (an action that fails, a mark sent with no
 * telemetry actor to take it) reaches an `error` snapshot, as an actor of it would.
 */
function transitionRecorder(machine: AnyStateMachine) {
  const self = createActor(machine);
  let transitions: string[] = [];
  let marks: string[] = [];
  self.system.inspect({
    next: (event: InspectionEvent) => {
      if (event.type === '@xstate.microstep') for (const transition of event._transitions) transitions.push(transitionKey(transition as never));
    },
  });
  const actionExecutor = (action: { type: string; params?: unknown }) => {
    const params = action.params as { targetId?: unknown; event?: { type?: unknown; mark?: TelemetryMark } } | undefined;
    if (action.type === 'xstate.sendTo' && params?.targetId === 'telemetry' && params.event?.type === 'telemetry.mark' && params.event.mark) marks.push(markLabel(params.event.mark));
  };
  const scope = { self, defer: () => {}, id: '', logger: () => {}, sessionId: '', stopChild: () => {}, system: self.system, emit: () => {}, actionExecutor };
  const recorded = (next: () => RunSnapshot, before: () => RunSnapshot): Recorded => {
    transitions = [];
    marks = [];
    try {
      return { next: next(), transitions, marks };
    } catch (error) {
      return { next: Object.assign({}, before(), { status: 'error' as const, error }) as RunSnapshot, transitions, marks };
    }
  };
  return {
    // The machine's own getInitialSnapshot turns a throw into an error snapshot itself.
    initial: (input: RunInput) => recorded(() => machine.getInitialSnapshot(scope as never, input) as RunSnapshot, () => getInitialSnapshot(machine, input) as RunSnapshot),
    step: (snapshot: RunSnapshot, event: AnyEventObject) => recorded(() => machine.transition(snapshot as never, event, scope as never) as RunSnapshot, () => snapshot),
  };
}

function effectsOf(snapshot: RunSnapshot): Map<string, PathEffect & { ref: unknown }> {
  const effects = new Map<string, PathEffect & { ref: unknown }>();
  for (const [id, child] of Object.entries(snapshot.children as Record<string, { src?: unknown; options?: { input?: unknown }; getSnapshot?: () => { input?: unknown } } | undefined>)) {
    if (!child) continue;
    effects.set(id, { id, src: String(child.src), input: child.options?.input ?? child.getSnapshot?.().input, ref: child });
  }
  return effects;
}

/**
 * Walks the run chart with `xstate/graph` and returns every simple path from its initial state to
 * a final state, the tool loop unrolled to `maxToolHops`. Each step carries what the chart did:
 * the layer call it answered (and the answer), the calls it started (read from the invokes of the
 * states it entered), the decisions it recorded, the marks it sent to telemetry, and the
 * transitions it took. A path that reaches a state from which only the chart-wide events (such as
 * `run.cancel`) lead on is also returned, ending in `stuck`; one on which the chart throws ends
 * in `error`; one that goes on to tool work past `max_tool_hops` is cut there, ending in
 * `over-budget`. Each is a coverage violation.
 * @example
 * const paths = enumerateRunPaths({ maxToolHops: 2 }); // each { states: ['ingress', 'policy', …], final: 'completed' | 'denied' | 'failed' | 'cancelled', … }
 */
export function enumerateRunPaths(options: PathOptions = {}): RunPath[] {
  checkPathOptions(options);
  const hops = options.maxToolHops ?? 3;
  const loops = walkPaths(options, false);
  if (hops === 0 || options.variety === false) return loops;
  // Variety (each kind of capability, two calls a step, a refused reviewer's way back) is walked
  // at one hop, the plain way to its first model step, where it costs little; the loop is walked
  // to the full budget with one kind. The loop's paths come first.
  return [...loops, ...walkPaths(Object.assign({}, options, { maxToolHops: 1, maxToolCallsPerStep: Math.max(2, options.maxToolCallsPerStep ?? 1) }), true)];
}

/** What each option may be: a slip (a misspelt name, a negative budget) is refused, not walked as the defaults. */
const pathOptionChecks: Record<keyof PathOptions, { ok: (value: unknown) => boolean; expected: string }> = {
  maxToolHops: { ok: (value) => Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 50, expected: 'a whole number from 0 to 50' },
  maxToolCallsPerStep: { ok: (value) => Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 64, expected: 'a whole number from 1 to 64' },
  backgroundUpdates: { ok: (value) => typeof value === 'boolean', expected: 'true or false' },
  precheckRequired: { ok: (value) => typeof value === 'boolean', expected: 'true or false' },
  machine: { ok: (value) => typeof value === 'object' && value !== null && 'config' in value, expected: 'a state machine (createMachine, or runMachine extended)' },
  samples: { ok: (value) => Array.isArray(value) && value.every((event) => typeof (event as { type?: unknown } | null)?.type === 'string'), expected: 'a list of events, each with a type' },
  variety: { ok: (value) => typeof value === 'boolean', expected: 'true or false' },
};

function checkPathOptions(options: PathOptions): void {
  const names = Object.keys(pathOptionChecks);
  for (const [name, value] of Object.entries(options)) {
    const check = pathOptionChecks[name as keyof PathOptions] as (typeof pathOptionChecks)[keyof PathOptions] | undefined;
    if (!check) throw new RunchartError('invalid-input', 'runtime', `paths: ${unknownOption(name, names)}`);
    if (value !== undefined && !check.ok(value)) {
      throw new RunchartError('invalid-input', 'runtime', `paths: ${name} must be ${check.expected} (got ${JSON.stringify(value) ?? String(value)})`);
    }
  }
}

type Adjacency = Record<string, { state: unknown; transitions: Record<string, { event: AnyEventObject; state: unknown }> }>;

/**
 * The vertices from which a final state (or a throw) can be reached by a way on of the chart's
 * states. Chart-wide transitions, those of the root (`run.cancel`), leave every state and so are
 * no way on: a state that only they leave is stuck.
 */
function finishingVertices(
  adjacency: Adjacency,
  taken: Map<string, Recorded>,
  serializeState: (snapshot: RunSnapshot) => string,
  rootId: string,
  overBudget: (snapshot: RunSnapshot) => boolean,
): Set<string> {
  const finishing = new Set<string>();
  const reverse = new Map<string, string[]>();
  for (const [key, vertex] of Object.entries(adjacency)) {
    // Where the walk stops, the path ends: in a final state, a throw, or past the hop budget.
    if ((vertex.state as RunSnapshot).status !== 'active' || overBudget(vertex.state as RunSnapshot)) finishing.add(key);
    for (const [eventKey, { state }] of Object.entries(vertex.transitions)) {
      const nextKey = serializeState(state as RunSnapshot);
      if (nextKey === key) continue;
      const transitions = taken.get(`${key}\u0000${eventKey}`)?.transitions ?? [];
      if (!transitions.some((transition) => !transition.startsWith(`${rootId} `))) continue;
      const sources = reverse.get(nextKey);
      if (sources) sources.push(key);
      else reverse.set(nextKey, [key]);
    }
  }
  const queue = [...finishing];
  while (queue.length > 0) {
    for (const source of reverse.get(queue.pop()!) ?? []) {
      if (finishing.has(source)) continue;
      finishing.add(source);
      queue.push(source);
    }
  }
  return finishing;
}

const decisionDigest = (decisions: readonly DecisionRecord[]) => decisions.map((decision) => `${decision.stage}:${decision.verdict}:${decision.callId ?? ''}`).join(';');

function walkPaths(options: PathOptions, variety: boolean): RunPath[] {
  const machine = (options.machine ?? runMachine) as typeof runMachine;
  const input: RunInput = { runId: 'run', request: null, settings: pathSettings(options) };
  const extra = options.samples ?? [];
  const recorder = transitionRecorder(machine);
  /** What each edge did, keyed by the state left and the event: the adjacency map keeps only the snapshots. */
  const taken = new Map<string, Recorded>();
  const keyOfEvent = (event: AnyEventObject) => JSON.stringify(event, (_key, value: unknown) => (value instanceof Error ? value.message : value));
  const serializeState = (snapshot: RunSnapshot) => serialize(snapshot, variety);
  const logic = Object.assign(Object.create(machine) as typeof machine, {
    transition: (snapshot: RunSnapshot, event: AnyEventObject) => {
      const recorded = recorder.step(snapshot, event);
      taken.set(`${serializeState(snapshot)}\u0000${keyOfEvent(event)}`, recorded);
      return recorded.next;
    },
  });
  const initial = recorder.initial(input);
  const overBudget = (snapshot: RunSnapshot) => (snapshot.context.hops ?? 0) > input.settings.maxToolHops;
  const adjacency = getAdjacencyMap(logic, {
    input,
    fromState: initial.next,
    events: ((snapshot: RunSnapshot) => sampleEventsFor(snapshot, extra, variety)) as never,
    serializeState: serializeState as never,
    serializeEvent: keyOfEvent as never,
    // A finished (or broken) run takes no events; without this the walk would offer `run.cancel` to
    // final states. A run past its hop budget is walked no further: a chart that does not stop it would loop for ever.
    stopWhen: (snapshot) => snapshot.status !== 'active' || overBudget(snapshot as RunSnapshot),
  }) as Adjacency;
  const keys = Object.keys(adjacency);
  const start = keys[0]!;
  const finishing = finishingVertices(adjacency, taken, serializeState, machine.root.id, overBudget);
  const { maxToolHops, maxToolCallsPerStep, precheckRequired, backgroundUpdates } = input.settings;
  const settings: PathSettings = { maxToolHops, maxToolCallsPerStep, precheckRequired, backgroundUpdates };
  const paths: RunPath[] = [];
  const onPath = new Set<string>();
  const steps: PathStep[] = [];
  /** Model calls the path has started so far. */
  let modelCalls = 0;
  const path = (final: string, thrown?: unknown): RunPath => {
    const first = stateKey((adjacency[start]!.state as RunSnapshot).value);
    return {
      states: [first, ...steps.map((step) => step.to)],
      final,
      ...(thrown !== undefined ? { thrown: thrown instanceof Error ? thrown.message : String(thrown) } : {}),
      startMarks: initial.marks,
      settings,
      events: steps.map((step) => step.event),
      steps: [...steps],
    };
  };

  /**
   * The ways on from a vertex, each with the step it makes. What a step carries depends on the
   * vertex and the event alone, not on the path that got there: so each is built once and shared
   * by every path through it. Two events that reach the same state through the same transitions
   * and decisions (a tool's ok and error result, two kinds of deny) make the same path for every
   * invariant: one of them is kept.
   */
  const movesFrom = new Map<string, { nextKey: string; step: PathStep; modelCalls: number; toolWork: boolean }[]>();
  const movesOf = (key: string, snapshot: RunSnapshot) => {
    let moves = movesFrom.get(key);
    if (moves) return moves;
    moves = [];
    const kept = new Set<string>();
    const before = effectsOf(snapshot);
    for (const { event, state } of Object.values(adjacency[key]!.transitions)) {
      const next = state as RunSnapshot;
      const nextKey = serializeState(next);
      if (nextKey === key) continue;
      const recorded = taken.get(`${key}\u0000${keyOfEvent(event)}`);
      const transitions = recorded?.transitions ?? [];
      const decisions = (next.context.decisions ?? []).slice((snapshot.context.decisions ?? []).length);
      const verdict = decisions.at(-1)?.verdict;
      const answeredId = /^xstate\.(?:done|error)\.actor\.(.+)$/.exec(event.type)?.[1];
      const answered = answeredId !== undefined ? before.get(answeredId) : undefined;
      const done = event.type.startsWith('xstate.done.');
      const output = (event as { output?: unknown }).output;
      // A policy answer the chart recorded otherwise than it was given must not merge with the honest one.
      const answeredVerdict = done && answered?.src === 'evaluatePolicy' ? ((output as { verdict?: string } | undefined)?.verdict ?? '') : '';
      const taint = event.type === 'tool.approve' || event.type === 'tool.reject' ? (reviewTaint(event) ?? '') : '';
      const move = `${nextKey}|${decisionDigest(decisions)}|${answeredVerdict}|${taint}|${transitions.join(',')}`;
      if (kept.has(move)) continue;
      kept.add(move);
      const after = effectsOf(next);
      const started = [...after.values()].filter((effect) => before.get(effect.id)?.ref !== effect.ref).map(({ id, src, input: effectInput }) => ({ id, src, input: effectInput }));
      const review = event.type === 'tool.approve' || event.type === 'tool.reject' ? (event as unknown as { callId: string; principalId: string; argsHash?: string }) : undefined;
      moves.push({
        nextKey,
        modelCalls: started.filter((effect) => effect.src === 'callModel').length,
        toolWork: started.some((effect) => effect.src === 'executeTool' || effect.src === 'awaitApproval' || (effect.input as { stage?: unknown } | undefined)?.stage === 'tool'),
        step: {
          from: stateKey(snapshot.value),
          event: eventLabel(event, verdict),
          to: stateKey(next.value),
          hops: snapshot.context.hops,
          cursor: snapshot.context.cursor,
          ...(verdict ? { verdict } : {}),
          ...(answered ? { answered: { id: answered.id, src: answered.src, input: answered.input, outcome: done ? ('done' as const) : ('error' as const), ...(done ? { output } : {}) } } : {}),
          started,
          decisions,
          ...(review
            ? { review: { kind: event.type === 'tool.approve' ? ('approve' as const) : ('reject' as const), callId: review.callId, principalId: review.principalId, ...(review.argsHash ? { argsHash: review.argsHash } : {}) } }
            : {}),
          released: next.status === 'done' && stateKey(next.value) === 'completed',
          telemetry: next.status === 'done' || after.has('telemetry'),
          transitions,
          marks: recorded?.marks ?? [],
        },
      });
    }
    movesFrom.set(key, moves);
    return moves;
  };

  const walk = (key: string) => {
    const snapshot = adjacency[key]!.state as RunSnapshot;
    if (snapshot.status === 'done') return void paths.push(path(stateKey(snapshot.value)));
    if (snapshot.status !== 'active') return void paths.push(path('error', snapshot.error));
    if (overBudget(snapshot)) return void paths.push(path('over-budget'));
    if (!finishing.has(key)) paths.push(path('stuck'));
    onPath.add(key);
    for (const move of movesOf(key, snapshot)) {
      if (onPath.has(move.nextKey)) continue;
      steps.push(move.step);
      modelCalls += move.modelCalls;
      // Tool work after the last model call the budget allows: the path is over budget, and walking on would only multiply it.
      if (move.toolWork && modelCalls > input.settings.maxToolHops) paths.push(path('over-budget'));
      else walk(move.nextKey);
      modelCalls -= move.modelCalls;
      steps.pop();
      if (paths.length > MAX_PATHS) {
        throw new RunchartError(
          'invalid-input',
          'runtime',
          `paths: more than ${MAX_PATHS.toLocaleString('en')} paths at max_tool_hops ${input.settings.maxToolHops}; each tool round multiplies them, so check at a smaller --max-tool-hops than ${input.settings.maxToolHops}, which proves every shorter loop too`,
        );
      }
    }
    onPath.delete(key);
  };
  walk(start);
  return paths;
}

/** The context a path's snapshots share the shape of (for callers that walk the chart themselves). */
export type { RunContext };

/** The transitions of `machine` that none of `paths` takes: branches no sample event reaches. */
export function untakenTransitions(machine: AnyStateMachine, paths: readonly RunPath[]): { key: string; label: string }[] {
  const taken = transitionsTaken(paths);
  return transitionsOf(machine)
    .filter((transition) => !taken.has(transition.key))
    .map(({ key, label }) => ({ key, label }));
}

/** The transitions the given paths take, by key. */
export function transitionsTaken(paths: readonly RunPath[]): Set<string> {
  const keys = new Set<string>();
  for (const path of paths) for (const step of path.steps) for (const key of step.transitions) keys.add(key);
  return keys;
}

export type { AnyTransition };
