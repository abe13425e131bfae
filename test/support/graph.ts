// Graph helpers for the path tests: the one module that imports xstate/graph and holds the casts it needs.
import { getInitialSnapshot, getNextSnapshot, type AnyEventObject, type SnapshotFrom } from 'xstate';
import { getSimplePaths, getStateNodes } from 'xstate/graph';
import { runMachine } from '../../machines/run/machine.js';
import type { RunInput } from '../../machines/run/types.js';
import { pathSettings, sampleEventsFor, serialize, stateKey, type PathOptions, type PathStep, type RunPath } from '../../src/verification/paths.js';

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
  const input = pathInput(options);
  const paths = getSimplePaths(runMachine, {
    input,
    fromState: getInitialSnapshot(runMachine, input),
    events: sampleEventsFor as never,
    serializeState: (snapshot) => serialize(snapshot as RunSnapshot),
    stopWhen: (snapshot) => snapshot.status === 'done',
    toState: (snapshot) => snapshot.status === 'done',
  });
  const sequences = new Set<string>();
  const endings = new Set<string>();
  for (const path of paths) {
    sequences.add(path.steps.map((step) => stateKey((step.state as RunSnapshot).value)).join(' > '));
    endings.add(JSON.stringify((path.state as RunSnapshot).value));
  }
  return { sequences, endings };
}

/** States that ask policy before they move on; a step out of one carries the verdict. */
const decidingStates = new Set(['policy', 'toolExecution.authorizing', 'toolExecution.reviewing', 'assembly', 'background.authorizing']);

/**
 * The path a real run took, rebuilt from the snapshots its actor emitted: verdicts come from the
 * decisions each step recorded, review events from the review it started. `checkPath` reads it
 * like an enumerated path.
 */
export function observedPath(snapshots: readonly RunSnapshot[]): RunPath {
  const steps: PathStep[] = [];
  for (let index = 1; index < snapshots.length; index++) {
    const before = snapshots[index - 1]!;
    const after = snapshots[index]!;
    const from = stateKey(before.value);
    const to = stateKey(after.value);
    const decided = after.context.decisions.slice(before.context.decisions.length);
    const verdict = decidingStates.has(from) ? decided.at(-1)?.verdict : undefined;
    const event =
      to === 'cancelled'
        ? 'run.cancel'
        : from === 'toolExecution.awaitingApproval' && to === 'toolExecution.reviewing'
          ? `tool.${after.context.review?.kind ?? 'unknown'}`
          : verdict
            ? `policy.decided:${verdict}`
            : 'observed';
    steps.push({ from, event, to, hops: before.context.hops, cursor: before.context.cursor, ...(verdict ? { verdict } : {}) });
  }
  const states = snapshots.map((snapshot) => stateKey(snapshot.value));
  const last = snapshots.at(-1)!;
  return { states, final: last.status === 'done' ? states.at(-1)! : 'stuck', events: steps.map((step) => step.event), steps };
}

/** The state names of a path joined the way the tests compare them. */
export const joined = (states: readonly string[]) => states.join(' > ');

/** The verdicts along a path, one per step ('' where the step asked no policy). */
export const verdictsOf = (path: RunPath) => path.steps.map((step) => step.verdict ?? '').join(',');
