import type { BackgroundTask } from '../background/contract.js';
import type { ExecutionJournal, JournalEntry } from '../execution/contract.js';
import type { QueuePersistence } from '../background/queue.js';
import type { StoreDirectory } from './directory.js';
import type { PersistedRun, RunStore } from './contract.js';

const finals = new Set(['completed', 'denied', 'failed', 'cancelled']);

/**
 * Runs in `runs.json` of the store directory; saves made in one tick share one write.
 * @example
 * const runStore = await createLowdbRunStore(directory);
 */
export async function createLowdbRunStore(directory: StoreDirectory): Promise<RunStore> {
  const document = await directory.open<{ runs: Record<string, PersistedRun> }>('runs.json', () => ({ runs: {} }));
  const copy = (run: PersistedRun): PersistedRun => structuredClone(run);
  return {
    save: (run) =>
      document.update((data) => {
        data.runs[run.runId] = run;
      }),
    load: async (runId) => {
      const run = document.data.runs[runId];
      return run && copy(run);
    },
    listActive: async () => Object.values(document.data.runs).filter((run) => !finals.has(run.status)).map(copy),
    list: async ({ tenantId }) => Object.values(document.data.runs).filter((run) => run.tenantId === tenantId).map(copy),
  };
}

/**
 * The execution journal in `journal.json`: what each idempotency key started and finished.
 * @example
 * const journal = await createLowdbJournal(directory);
 */
export async function createLowdbJournal(directory: StoreDirectory): Promise<ExecutionJournal> {
  const document = await directory.open<{ entries: Record<string, JournalEntry> }>('journal.json', () => ({ entries: {} }));
  return {
    get: async (key) => document.data.entries[key],
    put: (entry) =>
      document.update((data) => {
        data.entries[entry.key] = entry;
      }),
  };
}

interface StoredTask {
  task: BackgroundTask;
  state: 'pending' | 'done' | 'failed';
  updatedAt: string;
}

/**
 * Background tasks in `queue.json`, so a restart finishes what was queued.
 * @example
 * const queue = createMemoryQueue({ handlers, persistence: await createLowdbQueuePersistence(directory) });
 */
export async function createLowdbQueuePersistence(directory: StoreDirectory): Promise<QueuePersistence> {
  const document = await directory.open<{ tasks: Record<string, StoredTask> }>('queue.json', () => ({ tasks: {} }));
  return {
    pending: async () => Object.values(document.data.tasks).filter((stored) => stored.state === 'pending').map((stored) => stored.task),
    known: async (id) => document.data.tasks[id] !== undefined,
    save: (task, state) =>
      document.update((data) => {
        data.tasks[task.id] = { task, state, updatedAt: new Date().toISOString() };
      }),
  };
}
