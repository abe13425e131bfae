import type { BackgroundTask } from '../background/contract.js';
import type { ExecutionJournal, JournalEntry } from '../execution/contract.js';
import type { QueuePersistence } from '../background/queue.js';
import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StoreDirectory } from './directory.js';
import type { PersistedRun, RunStore } from './contract.js';

const finals = new Set(['completed', 'denied', 'failed', 'cancelled']);

/**
 * Runs in two files of the store directory: `runs.json` holds the runs that are not finished (a
 * small lowdb document, rewritten as they move), `runs-finished.jsonl` gets one line per finished
 * run, appended once. So the document lowdb stringifies on every save stays the size of the work
 * in flight, not of the history.
 * @example
 * const runStore = await createLowdbRunStore(directory);
 */
export async function createLowdbRunStore(directory: StoreDirectory): Promise<RunStore> {
  const document = await directory.open<{ runs: Record<string, PersistedRun> }>('runs.json', () => ({ runs: {} }));
  const finishedPath = join(directory.path, 'runs-finished.jsonl');
  const finished = await readFinished(finishedPath, directory.onWarning);
  let appending: Promise<void> = Promise.resolve();
  /** Removals of finished runs from runs.json: not waited for by save, since the finished line already wins. */
  const removals = new Set<Promise<void>>();
  const copy = (run: PersistedRun): PersistedRun => structuredClone(run);
  const all = () => [...Object.values(document.data.runs).filter((run) => !finished.has(run.runId)), ...finished.values()];
  return {
    async save(run) {
      if (!finals.has(run.status)) {
        return document.update((data) => {
          data.runs[run.runId] = run;
        });
      }
      // Appended first: a crash between the two writes leaves the run in both files, and the finished line wins.
      const line = `${JSON.stringify(run)}\n`;
      const appended = appending.then(() => appendFile(finishedPath, line));
      appending = appended.catch(() => {});
      await appended;
      finished.set(run.runId, run);
      if (document.data.runs[run.runId]) {
        // The run is durable as finished once its line is appended; the removal rides on the next write.
        const removal: Promise<void> = document
          .update((data) => {
            delete data.runs[run.runId];
          })
          .catch((error: unknown) => directory.onWarning(`store: run ${run.runId} stays in runs.json (${(error as Error).message}); its finished line wins`))
          .finally(() => removals.delete(removal));
        removals.add(removal);
      }
    },
    async flush() {
      while (removals.size) await Promise.all([...removals]);
    },
    load: async (runId) => {
      const run = finished.get(runId) ?? document.data.runs[runId];
      return run && copy(run);
    },
    listActive: async () => Object.values(document.data.runs).filter((run) => !finished.has(run.runId)).map(copy),
    list: async ({ tenantId }) => all().filter((run) => run.tenantId === tenantId).map(copy),
  };
}

/** Reads the finished runs; a torn last line (a crash mid-append) is reported and skipped. */
async function readFinished(path: string, onWarning: (message: string) => void): Promise<Map<string, PersistedRun>> {
  const runs = new Map<string, PersistedRun>();
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw error;
  });
  const lines = text.split('\n');
  lines.forEach((line, index) => {
    if (!line.trim()) return;
    try {
      const run = JSON.parse(line) as PersistedRun;
      runs.set(run.runId, run);
    } catch {
      onWarning(`store: line ${index + 1} of ${path} is not JSON (a write cut short?); it was skipped`);
    }
  });
  return runs;
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
    async release(runId) {
      const keys = Object.keys(document.data.entries).filter((key) => key.startsWith(`${runId}:`));
      if (keys.length === 0) return;
      await document.update((data) => {
        for (const key of keys) delete data.entries[key];
      });
    },
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
    // A finished task leaves the file (its run is past the point of queueing it again); a failed one stays to be looked at.
    save: (task, state) =>
      document.update((data) => {
        if (state === 'done') delete data.tasks[task.id];
        else data.tasks[task.id] = { task, state, updatedAt: new Date().toISOString() };
      }),
  };
}
