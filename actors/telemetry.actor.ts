import type { ActorLogic, ActorSystem, EventObject, Snapshot } from 'xstate';
import type { RunIdentity, RunTelemetry, TelemetryLayer, TelemetryMark } from '../src/telemetry/contract.js';
import type { TelemetryEvent, TelemetryInput } from '../machines/run/setup.js';

/**
 * The telemetry actor's snapshot: the run's identity once ingress has accepted the request, and the
 * state it was last in. Both are persisted with the run, so a restored run's telemetry carries on
 * under the same trace without asking anyone.
 */
export type TelemetrySnapshot = Snapshot<undefined> & {
  input: TelemetryInput;
  identity: RunIdentity | null;
  state: string;
};

interface Live {
  run: RunTelemetry | undefined;
  broken: boolean;
  /** Marks made before the run's identity is known (the first state's entry). */
  held: { mark: TelemetryMark; at: number }[];
}

const lives = new WeakMap<object, Live>();

/**
 * Lives as long as the run (invoked at the root with id `telemetry`) and forwards every mark to
 * the telemetry layer. Telemetry never fails a run: a throwing layer is reported once to
 * `onFailure` and then ignored.
 * @example
 * runMachine.provide({ actors: { recordTelemetry: telemetryActor(createTelemetry({ config }), { now: Date.now }) } });
 */
export function telemetryActor(
  layer: TelemetryLayer,
  options: { now: () => number; onFailure?: (error: unknown) => void },
): ActorLogic<TelemetrySnapshot, TelemetryEvent, TelemetryInput, ActorSystem<any>, EventObject> {
  const guard = (live: Live, action: () => void) => {
    if (live.broken) return;
    try {
      action();
    } catch (error) {
      live.broken = true;
      options.onFailure?.(error);
    }
  };
  const begin = (live: Live, identity: RunIdentity, at: number, accepted?: TelemetryMark) =>
    guard(live, () => {
      // The run began with its first held mark; the acceptance (with the input, for layers that
      // capture content) is recorded first so that everything after it carries the run's identity.
      const began = live.held[0]?.at ?? at;
      live.run = layer.startRun(identity, began);
      if (accepted) live.run.record(accepted, began);
      for (const entry of live.held.splice(0)) live.run.record(entry.mark, entry.at);
    });

  return {
    config: layer,
    getInitialSnapshot: (_scope, input) => ({ status: 'active', output: undefined, error: undefined, input, identity: null, state: 'ingress' }),
    start(snapshot, { self }) {
      const live: Live = { run: undefined, broken: false, held: [] };
      lives.set(self, live);
      // A restored run is past ingress: its identity came back with the snapshot.
      if (snapshot.identity) begin(live, snapshot.identity, options.now());
    },
    transition(snapshot, event, { self }) {
      const live = lives.get(self);
      if (!live || snapshot.status !== 'active') return snapshot;
      if ((event as EventObject).type === 'xstate.stop') {
        lives.delete(self);
        const at = options.now();
        if (!live.run) begin(live, { runId: snapshot.input.runId, traceId: '', tenantId: '', principalId: '' }, at);
        guard(live, () => live.run?.end(snapshot.state, at));
        return { status: 'stopped', output: undefined, error: undefined, input: snapshot.input, identity: snapshot.identity, state: snapshot.state };
      }
      if (event.type !== 'telemetry.mark') return snapshot;
      const mark = event.mark;
      const at = options.now();
      if (mark.kind === 'run.accepted') {
        begin(live, mark.identity, at, mark);
        return { status: 'active', output: undefined, error: undefined, input: snapshot.input, identity: mark.identity, state: snapshot.state };
      }
      if (!live.run) live.held.push({ mark, at });
      else guard(live, () => live.run!.record(mark, at));
      // The state is the one field that changes per mark: kept in place (only this actor reads its snapshot).
      if (mark.kind === 'state.enter') snapshot.state = mark.state;
      return snapshot;
    },
    // A copy: the live snapshot's `state` changes in place, and a save may be written after the run has moved on.
    getPersistedSnapshot: (snapshot) => Object.assign({}, snapshot),
    restoreSnapshot: (snapshot) => snapshot as TelemetrySnapshot,
  };
}
