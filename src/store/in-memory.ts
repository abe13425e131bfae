import { isFinalStatus, type PersistedRun, type RunStore } from './contract.js';

/**
 * Runs in a Map: survives nothing, enough for tests and embedding without disk.
 * @example
 * const runStore = createInMemoryRunStore();
 */
export function createInMemoryRunStore(): RunStore {
  const runs = new Map<string, PersistedRun>();
  const copy = (run: PersistedRun): PersistedRun => structuredClone(run);
  return {
    // Saved as given (the runtime hands over a fresh snapshot each time); copies go out on load.
    save: async (run) => void runs.set(run.runId, run),
    load: async (runId) => {
      const run = runs.get(runId);
      return run && copy(run);
    },
    listActive: async () => [...runs.values()].filter((run) => !isFinalStatus(run.status)).map(copy),
    list: async ({ tenantId }) => [...runs.values()].filter((run) => run.tenantId === tenantId).map(copy),
  };
}
