// Graph helpers for the path tests: the one module that imports xstate/graph and holds the casts it needs.
import { getInitialSnapshot, getNextSnapshot, type AnyEventObject, type SnapshotFrom } from 'xstate';
import { getSimplePaths, getStateNodes } from 'xstate/graph';
import { runMachine } from '../../machines/run/machine.js';
import type { RunInput } from '../../machines/run/types.js';
import { pathSettings, sampleEventsFor, serialize, stateKey, type PathOptions, type PathSettings, type PathStep, type RunPath } from '../../src/verification/paths.js';
import type { ObservedStep } from './run-scenario.js';

export type RunSnapshot = SnapshotFrom<typeof runMachine>;

/** The input the path walk uses, for walking the chart by hand. */
export function pathInput(options: PathOptions = {}): RunInput {
  return { runId: 'run', request: null, settings: pathSettings(options) };
}

/** Every `invoke` of the run chart, with the state node that declares it. */
export function invokedActors(): { id: string; src: string; state: string }[] {
  return [runMachine.root, ...getStateNodes(runMachine.root)].flatMap((node) =>
    node.invoke.map((definition) => ({ id: definition.id, src: String(definition.src), state: node.id })),
  );
}

/** The snapshot reached from the initial one by taking, at each step, the first sample event that passes `pick`. */
export function walkSamples(options: PathOptions, picks: ((event: AnyEventObject) => boolean)[]): RunSnapshot {
  let snapshot = getInitialSnapshot(runMachine, pathInput(options));
  for (const pick of picks) {
    const event = sampleEventsFor(snapshot).find(pick);
    if (!event) throw new Error(`no sample event fits at ${stateKey(snapshot.value)}`);
    snapshot = getNextSnapshot(runMachine, snapshot, event as never);
  }
  return snapshot;
}

/**
 * The state sequences of every simple path to a final state, found by `getSimplePaths` (an
 * independent walk of the same samples): an oracle for `enumerateRunPaths`.
 */
export function simplePathStates(options: PathOptions = {}): { sequences: Set<string>; endings: Set<string> } {
  const sequences = new Set<string>();
  const endings = new Set<string>();
  const walk = (walked: PathOptions, variety: boolean) => {
    const input = pathInput(walked);
    const paths = getSimplePaths(runMachine, {
      input,
      fromState: getInitialSnapshot(runMachine, input),
      events: ((snapshot: RunSnapshot) => sampleEventsFor(snapshot, [], variety)) as never,
      serializeState: (snapshot) => serialize(snapshot as RunSnapshot, variety),
      stopWhen: (snapshot) => snapshot.status === 'done',
      toState: (snapshot) => snapshot.status === 'done',
    });
    for (const path of paths) {
      sequences.add(path.steps.map((step) => stateKey((step.state as RunSnapshot).value)).join(' > '));
      endings.add(JSON.stringify((path.state as RunSnapshot).value));
    }
  };
  walk(options, false);
  // enumerateRunPaths walks variety at one hop, two calls a step.
  if ((options.maxToolHops ?? 3) > 0) walk(Object.assign({}, options, { maxToolHops: 1, maxToolCallsPerStep: 2 }), true);
  return { sequences, endings };
}

/** The layer calls (and the telemetry actor) a snapshot holds, by id. */
function childrenOf(snapshot: RunSnapshot) {
  const children = new Map<string, { id: string; src: string; input: unknown; ref: unknown }>();
  for (const [id, child] of Object.entries(snapshot.children as Record<string, { src?: unknown; options?: { input?: unknown } } | undefined>)) {
    // The input the call was started with (a live actor's snapshot drops it once the call settles).
    if (child) children.set(id, { id, src: String(child.src), input: child.options?.input, ref: child });
  }
  return children;
}

/** The settings a run was run under, as a path carries them. */
const settingsOf = ({ context: { settings } }: RunSnapshot): PathSettings => ({
  maxToolHops: settings.maxToolHops,
  maxToolCallsPerStep: settings.maxToolCallsPerStep,
  precheckRequired: settings.precheckRequired,
  backgroundUpdates: settings.backgroundUpdates,
});

/**
 * The path a real run took, rebuilt from what the inspector saw (`ObservedStep`s, the first
 * being the run's start): per step, the event that led to it (the layer call it answered and
 * the answer, or the review), the calls it started (from the actor's children), the decisions it
 * recorded, the marks it sent telemetry and the transitions it took. `checkPath` reads it like
 * an enumerated path.
 */
export function observedPath(observed: readonly ObservedStep[]): RunPath {
  const steps: PathStep[] = [];
  for (let index = 1; index < observed.length; index++) {
    const before = observed[index - 1]!.snapshot;
    const { snapshot: after, event, transitions, marks } = observed[index]!;
    const from = stateKey(before.value);
    const to = stateKey(after.value);
    const decisions = after.context.decisions.slice(before.context.decisions.length);
    const verdict = decisions.at(-1)?.verdict;
    const was = childrenOf(before);
    const now = childrenOf(after);
    const started = [...now.values()].filter((child) => was.get(child.id)?.ref !== child.ref).map(({ id, src, input }) => ({ id, src, input }));
    const answer = /^xstate\.(done|error)\.actor\.(.+)$/.exec(event.type);
    const call = answer ? was.get(answer[2]!) : undefined;
    const outcome = answer?.[1] === 'done' ? ('done' as const) : ('error' as const);
    const review = event.type === 'tool.approve' || event.type === 'tool.reject' ? (event as unknown as { callId: string; principalId: string; argsHash?: string }) : undefined;
    steps.push({
      from,
      event: call ? `${call.id}:${verdict ?? (outcome === 'done' ? 'done' : 'error')}` : event.type,
      to,
      hops: before.context.hops,
      cursor: before.context.cursor,
      ...(verdict ? { verdict } : {}),
      ...(call ? { answered: { id: call.id, src: call.src, input: call.input, outcome, ...(outcome === 'done' ? { output: (event as { output?: unknown }).output } : {}) } } : {}),
      started,
      decisions,
      ...(review ? { review: { kind: event.type === 'tool.approve' ? ('approve' as const) : ('reject' as const), callId: review.callId, principalId: review.principalId, ...(review.argsHash ? { argsHash: review.argsHash } : {}) } } : {}),
      released: after.status === 'done' && to === 'completed',
      telemetry: after.status === 'done' || now.has('telemetry'),
      transitions,
      marks,
    });
  }
  const states = observed.map((step) => stateKey(step.snapshot.value));
  const last = observed.at(-1)!.snapshot;
  return {
    states,
    final: last.status === 'done' ? states.at(-1)! : last.status === 'active' ? 'stuck' : 'error',
    startMarks: observed[0]!.marks,
    settings: settingsOf(observed[0]!.snapshot),
    events: steps.map((step) => step.event),
    steps,
  };
}

/** The state names of a path joined the way the tests compare them. */
export const joined = (states: readonly string[]) => states.join(' > ');

/** The verdicts along a path, one per step ('' where the step asked no policy). */
export const verdictsOf = (path: RunPath) => path.steps.map((step) => step.verdict ?? '').join(',');
