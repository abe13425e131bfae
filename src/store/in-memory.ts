import { RunchartError } from '../errors.js';
import { isFinalStatus, summaryOf, type PersistedRun, type RunStore } from './contract.js';

/** How many finished runs an in-memory store keeps unless told otherwise. */
export const DEFAULT_KEPT_FINISHED_RUNS = 1_000;

/**
 * Runs in Maps: survives nothing, enough for tests and embedding without disk. Unfinished runs
 * are kept until they finish; of the finished ones, the last `keepFinished` (by the time they
 * finished) are kept and older ones dropped, so a long-lived process does not grow with every
 * run it ever ran.
 * @example
 * const runStore = createInMemoryRunStore({ keepFinished: 500 });
 */
export function createInMemoryRunStore(
  options: {
    keepFinished?: number;
    /**
     * False: keep a run only where a caller can see it (parked, finished), not every step. For a
     * store nothing else shares (the runtime's own with `store.kind: memory`): no step between
     * two resting points could be restored from it. True (the default) when runtimes share it.
     */
    keepSteps?: boolean;
  } = {},
): RunStore {
  const keepFinished = options.keepFinished ?? DEFAULT_KEPT_FINISHED_RUNS;
  if (!Number.isInteger(keepFinished) || keepFinished < 0) {
    throw new RunchartError('invalid-input', 'store', `store: keepFinished must be a whole number of runs, 0 or more (got ${keepFinished})`);
  }
  const active = new Map<string, PersistedRun>();
  /** In the order the runs finished: the first is the first to go. */
  const finished = new Map<string, PersistedRun>();
  const copy = (run: PersistedRun): PersistedRun => structuredClone(run);
  const all = () => [...active.values(), ...finished.values()];
  return {
    keepsSteps: options.keepSteps ?? true,
    // Saved as given (the runtime hands over a fresh snapshot each time); copies go out on load.
    async save(run) {
      // A finished run stays finished: a late save of an earlier step is dropped.
      if (finished.has(run.runId)) {
        if (isFinalStatus(run.status)) finished.set(run.runId, run);
        return;
      }
      if (!isFinalStatus(run.status)) return void active.set(run.runId, run);
      active.delete(run.runId);
      finished.set(run.runId, run);
      if (finished.size > keepFinished) finished.delete(finished.keys().next().value!);
    },
    load: async (runId) => {
      const run = active.get(runId) ?? finished.get(runId);
      return run && copy(run);
    },
    listActive: async () => [...active.values()].map(copy),
    list: async ({ tenantId }) => all().filter((run) => run.tenantId === tenantId).map(summaryOf),
  };
}
