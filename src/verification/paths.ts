import { getAdjacencyMap } from 'xstate/graph';
import { getInitialSnapshot, type AnyEventObject, type SnapshotFrom } from 'xstate';
import { runMachine } from '../../machines/run/machine.js';
import type { AcceptedRequest, RunInput, RunSettings } from '../../machines/run/types.js';
import { RunchartError, type RunchartErrorData } from '../errors.js';
import type { ModelResponse } from '../models/contract.js';
import type { PolicyDecision } from '../policy/contract.js';
import { parseConfig, settingsFrom } from '../config.js';

type RunSnapshot = SnapshotFrom<typeof runMachine>;

/** Which configuration the graph is walked under; the tool loop is unrolled to `maxToolHops`. */
export interface PathOptions {
  maxToolHops?: number;
  backgroundUpdates?: boolean;
  precheckRequired?: boolean;
}

/** One step of a path: the state it left, the event taken, the state it reached. */
export interface PathStep {
  from: string;
  event: string;
  to: string;
  /** Hop and call position of the state left, which tell two visits of one state apart. */
  hops: number;
  cursor: number;
  verdict?: PolicyDecision['verdict'];
}

/** A path through the run chart from `ingress` to a final state. */
export interface RunPath {
  states: string[];
  final: string;
  /** Short labels of the events taken, one per step (`policy.decided:allow`, `tool.approve`, …). */
  events: string[];
  steps: PathStep[];
}

/** The settings the graph is walked under: one tool call per step and a token budget, so every guard has both outcomes. */
export function pathSettings(options: PathOptions = {}): RunSettings {
  return Object.assign(settingsFrom(parseConfig({})), {
    maxToolHops: options.maxToolHops ?? 3,
    maxToolCallsPerStep: 1,
    maxTotalTokens: 1_000,
    backgroundUpdates: options.backgroundUpdates ?? true,
    precheckRequired: options.precheckRequired ?? true,
  });
}

const sampleAccepted: AcceptedRequest = {
  traceId: '0af7651916cd43dd8448eb211c80319c',
  tenantId: 'tenant',
  principalId: 'principal',
  input: 'sample input',
  capabilities: [
    { name: 'sample.tool', version: '1.0.0', toolName: 'sample_tool', description: 'a sample capability', effects: 'read', parameters: { type: 'object' } },
  ],
};

const usage = { inputTokens: 10, outputTokens: 5 };
/** Every kind of answer the chart tells apart: final text, a valid call, an unknown tool, nothing, too many calls, a budget buster. */
export const sampleModelResponses: Record<string, ModelResponse> = {
  final: { text: 'sample answer', toolCalls: [], usage, finishReason: 'stop' },
  tool: { text: null, toolCalls: [{ id: 'm1', name: 'sample_tool', arguments: '{}' }], usage, finishReason: 'tool_calls' },
  unknownTool: { text: null, toolCalls: [{ id: 'm1', name: 'no_such_tool', arguments: '{}' }], usage, finishReason: 'tool_calls' },
  empty: { text: null, toolCalls: [], usage, finishReason: 'stop' },
  tooManyTools: {
    text: null,
    toolCalls: [
      { id: 'm1', name: 'sample_tool', arguments: '{}' },
      { id: 'm2', name: 'sample_tool', arguments: '{}' },
    ],
    usage,
    finishReason: 'tool_calls',
  },
  overBudget: { text: 'sample answer', toolCalls: [], usage: { inputTokens: 1_000_000, outputTokens: 1 }, finishReason: 'stop' },
};

const decisions: PolicyDecision[] = [
  { verdict: 'allow', ruleId: 'sample-allow', reason: 'sample' },
  { verdict: 'deny', ruleId: 'sample-deny', reason: 'sample' },
  { verdict: 'require_approval', ruleId: 'sample-approval', reason: 'sample' },
  { verdict: 'deny', ruleId: 'default-deny', reason: 'no rule matched' },
];

const failure = (type: string, layer: RunchartErrorData['layer']) => ({
  type,
  error: { kind: 'internal', layer, message: `${layer}: sample failure`, retryable: false } satisfies RunchartErrorData,
});

/**
 * A sample of every event the chart handles, for the given state: an answer for each outcome of
 * each layer request, a failure for each, the external events. A test proves the list is
 * complete; the traversal keeps only the events each state handles.
 */
export function sampleEventsFor(snapshot: RunSnapshot): AnyEventObject[] {
  // Offer each state only its own events: the walk then tries nothing a state would ignore.
  const handled = new Set<string>(snapshot._nodes.flatMap((node) => node.ownEvents));
  return allSampleEvents(snapshot).filter((event) => handled.has(event.type));
}

function allSampleEvents(snapshot: RunSnapshot): AnyEventObject[] {
  const callId = snapshot.context.calls[snapshot.context.cursor]?.callId ?? 'c0.0';
  return [
    { type: 'request.accepted', output: sampleAccepted },
    failure('request.refused', 'ingress'),
    ...decisions.map((decision) => ({ type: 'policy.decided', output: decision })),
    failure('policy.failed', 'policy'),
    { type: 'memory.recalled', output: { items: [], history: [] } },
    failure('memory.failed', 'memory'),
    ...Object.values(sampleModelResponses).map((response) => ({ type: 'model.answered', output: response })),
    failure('model.failed', 'model'),
    { type: 'tool.executed', output: { status: 'ok', output: 1 } },
    { type: 'tool.executed', output: { status: 'error', error: { kind: 'tool-failed', message: 'sample tool failure', retryable: false } } },
    failure('tool.failed', 'execution'),
    { type: 'background.queued' },
    failure('background.failed', 'background'),
    { type: 'approval.expired' },
    failure('approval.failed', 'runtime'),
    { type: 'tool.approve', callId, principalId: 'approver' },
    { type: 'tool.reject', callId, principalId: 'approver', reason: 'sample' },
    { type: 'run.cancel' },
    { type: 'run.resume' },
  ];
}

/** A state value as one dotted name: `toolExecution.awaitingApproval`. */
export function stateKey(value: unknown): string {
  if (typeof value === 'string') return value;
  const [[parent, child]] = Object.entries(value as Record<string, unknown>) as [[string, unknown]];
  return `${parent}.${stateKey(child)}`;
}

/** What tells two snapshots apart for the walk (exported for tests that walk the chart another way): the state, the hop, the call, and whether a review approves. */
export function serialize(snapshot: RunSnapshot): string {
  const { hops, cursor, review } = snapshot.context;
  const state = stateKey(snapshot.value);
  // Only `reviewing` acts on the review's kind (approve or reject); elsewhere a leftover review
  // (a refused one, back in awaitingApproval) changes nothing that follows, so it is not a new state.
  return `${snapshot.status}|${state}|${hops}|${cursor}|${state === 'toolExecution.reviewing' ? review?.kind : '-'}`;
}

function eventLabel(event: AnyEventObject): { label: string; verdict?: PolicyDecision['verdict'] } {
  const output = (event as { output?: unknown }).output;
  if (event.type === 'policy.decided') {
    const decision = output as PolicyDecision;
    return { label: `policy.decided:${decision.verdict}${decision.ruleId === 'default-deny' ? '(default)' : ''}`, verdict: decision.verdict };
  }
  if (event.type === 'model.answered') {
    const name = Object.entries(sampleModelResponses).find(([, response]) => response === output)?.[0] ?? 'response';
    return { label: `model.answered:${name}` };
  }
  if (event.type === 'tool.executed') return { label: `tool.executed:${(output as { status: string }).status}` };
  return { label: event.type };
}

/** Past this many paths the walk stops: too many to check in reasonable time (or a loop it cannot bound). */
const MAX_PATHS = 200_000;

/**
 * Walks the run chart with `xstate/graph` and returns every simple path from `ingress` to a final
 * state, the tool loop unrolled to `maxToolHops`. Paths that reach a state with no way on are
 * returned with `final: 'stuck'` (a coverage violation).
 * @example
 * const paths = enumerateRunPaths({ maxToolHops: 2 }); // [{ states: ['ingress', 'policy', …], final: 'completed' }, …]
 */
export function enumerateRunPaths(options: PathOptions = {}): RunPath[] {
  const input: RunInput = { runId: 'run', request: null, settings: pathSettings(options) };
  const adjacency = getAdjacencyMap(runMachine, {
    input,
    fromState: getInitialSnapshot(runMachine, input),
    events: sampleEventsFor as never,
    serializeState: (snapshot) => serialize(snapshot as RunSnapshot),
    // A finished run takes no events; without this the walk would offer `run.cancel` to final states.
    stopWhen: (snapshot) => snapshot.status === 'done',
  });
  const keys = Object.keys(adjacency);
  const start = keys[0]!;
  const paths: RunPath[] = [];
  const onPath = new Set<string>();
  const steps: PathStep[] = [];

  const walk = (key: string) => {
    const vertex = adjacency[key as keyof typeof adjacency]!;
    const snapshot = vertex.state as RunSnapshot;
    if (snapshot.status === 'done') return void paths.push(toPath(start, steps, stateKey(snapshot.value)));
    const transitions = Object.values(vertex.transitions);
    let moved = false;
    // Two events that reach the same state with the same verdict (a tool's ok and error result,
    // two kinds of deny) make the same path for every invariant: walk one of them.
    const taken = new Set<string>();
    onPath.add(key);
    for (const { event, state } of transitions) {
      const next = state as RunSnapshot;
      const nextKey = serialize(next);
      if (nextKey === key) continue;
      moved = true;
      if (onPath.has(nextKey)) continue;
      const { label, verdict } = eventLabel(event);
      const move = `${nextKey}|${verdict ?? ''}`;
      if (taken.has(move)) continue;
      taken.add(move);
      steps.push({ from: stateKey(snapshot.value), event: label, to: stateKey(next.value), hops: snapshot.context.hops, cursor: snapshot.context.cursor, ...(verdict ? { verdict } : {}) });
      walk(nextKey);
      steps.pop();
      if (paths.length > MAX_PATHS) {
        throw new RunchartError(
          'invalid-input',
          'runtime',
          `paths: more than ${MAX_PATHS.toLocaleString('en')} paths at max_tool_hops ${input.settings.maxToolHops}; each tool round multiplies them by about six, so check at a smaller --max-tool-hops (3 to 5), which proves every shorter loop too`,
        );
      }
    }
    onPath.delete(key);
    if (!moved) paths.push(toPath(start, steps, 'stuck'));
  };
  walk(start);
  return paths;
}

function toPath(start: string, steps: PathStep[], final: string): RunPath {
  const first = start.split('|')[1]!;
  return { states: [first, ...steps.map((step) => step.to)], final, events: steps.map((step) => step.event), steps: [...steps] };
}

/** Every event type the samples can produce, for the completeness test. */
export function sampledEventTypes(): Set<string> {
  return new Set(allSampleEvents({ context: { calls: [], cursor: 0 } } as unknown as RunSnapshot).map((event) => event.type));
}
