import { createActor, type Actor, type ActorLogic, type ActorSystem, type AnyStateMachine, type EventObject, type InputFrom, type Snapshot } from 'xstate';

/** What the supervisor is told: start a new run, or bring back a persisted one. */
export type SupervisorEvent<Machine extends AnyStateMachine> =
  | { type: 'run.spawn'; runId: string; input: InputFrom<Machine> }
  | { type: 'run.restore'; runId: string; snapshot: Snapshot<unknown> }
  /** Stops a run here without ending it: it stays as last saved, for another process to take on. */
  | { type: 'run.release'; runId: string };

/**
 * The supervisor's snapshot: the runs it holds, by run id. The map is the supervisor's own and
 * changes in place (a copy per spawn would cost every run the number of runs held).
 */
export type SupervisorSnapshot<Machine extends AnyStateMachine> = Snapshot<undefined> & {
  runs: ReadonlyMap<string, Actor<Machine>>;
};

/**
 * The runtime's one long-lived actor: every run, new or restored from the store, is spawned as
 * its child in one actor system, so the inspector shows runtime → run → one actor per layer call.
 * A run that finishes (or stops with an error) leaves it; stopping it stops every run it holds.
 * @example
 * const runtime = createActor(runSupervisor(runMachine.provide({ actors })), { inspect }).start();
 * runtime.send({ type: 'run.spawn', runId, input });
 * const run = runtime.getSnapshot().runs.get(runId);
 */
export function runSupervisor<Machine extends AnyStateMachine>(
  machine: Machine,
  options: { /** Told of each run before it starts, so its first snapshot is seen. */ adopt?: (run: Actor<Machine>, runId: string) => void } = {},
): ActorLogic<SupervisorSnapshot<Machine>, SupervisorEvent<Machine>, undefined, ActorSystem<any>, EventObject> {
  return {
    config: machine,
    getInitialSnapshot: () => ({ status: 'active', output: undefined, error: undefined, runs: new Map() }),
    transition(snapshot, event, scope) {
      if (snapshot.status !== 'active') return snapshot;
      const runs = snapshot.runs as Map<string, Actor<Machine>>;
      if (event.type === 'run.spawn' || event.type === 'run.restore') {
        const actorOptions =
          event.type === 'run.spawn' ? { id: event.runId, parent: scope.self, input: event.input } : { id: event.runId, parent: scope.self, snapshot: event.snapshot };
        const run = createActor(machine, actorOptions as never) as Actor<Machine>;
        runs.set(event.runId, run);
        options.adopt?.(run, event.runId);
        // Started after this step, as XState starts the actors a machine spawns.
        scope.defer(() => run.start());
        return snapshot;
      }
      if (event.type === 'run.release') {
        const run = runs.get(event.runId);
        if (run) {
          runs.delete(event.runId);
          scope.stopChild(run);
        }
        return snapshot;
      }
      const type = (event as EventObject).type;
      if (type === 'xstate.stop') {
        for (const run of runs.values()) scope.stopChild(run);
        return { status: 'stopped', output: undefined, error: undefined, runs: new Map() };
      }
      // A run that reached a final state, or stopped on an error, leaves.
      const ended = /^xstate\.(?:done|error)\.actor\.(.*)$/.exec(type)?.[1];
      if (ended !== undefined) runs.delete(ended);
      return snapshot;
    },
    getPersistedSnapshot: () => ({ status: 'active', output: undefined, error: undefined, runs: new Map() }),
    restoreSnapshot: (snapshot) => snapshot as SupervisorSnapshot<Machine>,
  };
}
