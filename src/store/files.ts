import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackgroundTask } from '../background/contract.js';
import type { QueuePersistence } from '../background/queue.js';
import type { ExecutionJournal, JournalEntry } from '../execution/contract.js';
import type { PersistedRun, RunStore } from './contract.js';
import type { StoreDirectory } from './directory.js';
import { removeMigrated, type JsonLog } from './log.js';

// Runs, the journal and the queue are written on every step of every run, and a run waits for some
// of those writes: they are append-only JSON Lines files (one short append per tick, ~25 µs here,
// where lowdb's rewrite of a whole document through a temp file and a rename costs ~220 µs).
// Memory, read far more than written, stays a lowdb document.

const finals = new Set(['completed', 'denied', 'failed', 'cancelled']);

/** Compacts a log once it holds this many dead lines per live record (and at least `floor` lines). */
function needsCompaction(log: JsonLog<unknown>, live: number, floor = 256): boolean {
  return log.appendedSinceCompaction > Math.max(floor, 4 * live);
}

/**
 * Reads a document of the lowdb format this store used before (`runs.json`, `journal.json`,
 * `queue.json`) so its records move into the log; a file that does not parse is moved aside.
 */
async function readFormer<Data>(directory: StoreDirectory, name: string): Promise<Data | undefined> {
  const path = join(directory.path, name);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as Data;
  } catch (error) {
    const aside = `${path}.corrupt-${Date.now()}`;
    await rename(path, aside);
    directory.onWarning(`store: ${path} could not be read (${(error as Error).message}); it was moved to ${aside}`);
    return undefined;
  }
}

/**
 * Runs in two append-only files: `runs.jsonl` gets each unfinished run's snapshot after every
 * step (the last line of a run wins; compacted to the unfinished runs as it grows), and
 * `runs-finished.jsonl` one line per finished run, which wins over anything in `runs.jsonl`.
 * @example
 * const runStore = await createFileRunStore(directory);
 */
export async function createFileRunStore(directory: StoreDirectory): Promise<RunStore> {
  const finished = new Map<string, PersistedRun>();
  const active = new Map<string, PersistedRun>();
  const finishedLog = await directory.openLog<PersistedRun>('runs-finished.jsonl', (run) => void finished.set(run.runId, run));
  const activeLog = await directory.openLog<PersistedRun>('runs.jsonl', (run) => {
    if (!finished.has(run.runId)) active.set(run.runId, run);
  });
  const former = await readFormer<{ runs?: Record<string, PersistedRun> }>(directory, 'runs.json');
  if (former) {
    for (const run of Object.values(former.runs ?? {})) if (!finished.has(run.runId) && !active.has(run.runId)) active.set(run.runId, run);
    await activeLog.compact(() => [...active.values()]);
    await removeMigrated(join(directory.path, 'runs.json'));
  }
  for (const runId of finished.keys()) active.delete(runId);
  // Lines that could not be read, or mostly dead ones (from earlier processes), are left behind now.
  if (finishedLog.damaged) await finishedLog.compact(() => [...finished.values()]);
  if (activeLog.damaged || needsCompaction(activeLog, active.size)) await activeLog.compact(() => [...active.values()]);

  const copy = (run: PersistedRun): PersistedRun => structuredClone(run);
  const compact = () => {
    if (!needsCompaction(activeLog, active.size)) return;
    activeLog.compact(() => [...active.values()]).catch((error: unknown) => directory.onWarning(`store: compacting runs.jsonl failed (${(error as Error).message}); it grows until the next try`));
  };
  return {
    async save(run) {
      if (finals.has(run.status)) {
        await finishedLog.append(run, () => {
          finished.set(run.runId, run);
          active.delete(run.runId);
        });
      } else {
        // A finished run stays finished: a late save of an earlier step is dropped.
        if (finished.has(run.runId)) return;
        await activeLog.append(run, () => {
          if (!finished.has(run.runId)) active.set(run.runId, run);
        });
      }
      compact();
    },
    load: async (runId) => {
      const run = finished.get(runId) ?? active.get(runId);
      return run && copy(run);
    },
    listActive: async () => [...active.values()].map(copy),
    list: async ({ tenantId }) => [...active.values(), ...finished.values()].filter((run) => run.tenantId === tenantId).map(copy),
  };
}

type JournalLine = { put: JournalEntry } | { release: string };

/**
 * The execution journal in `journal.jsonl`: what each idempotency key started and finished, and
 * which runs are done with theirs (the last line of a key wins; compacted to the live keys).
 * @example
 * const journal = await createFileJournal(directory);
 */
export async function createFileJournal(directory: StoreDirectory): Promise<ExecutionJournal> {
  const entries = new Map<string, JournalEntry>();
  /** Runs released lately: a put that arrives after the release (a cancelled call finishing late) is not kept. */
  const released = new Set<string>();
  const forget = (runId: string) => {
    for (const key of entries.keys()) if (key.startsWith(`${runId}:`)) entries.delete(key);
    released.add(runId);
    if (released.size > 10_000) released.delete(released.values().next().value!);
  };
  const isReleased = (key: string) => released.has(key.slice(0, key.indexOf(':')));
  const log = await directory.openLog<JournalLine>('journal.jsonl', (line) => ('put' in line ? void entries.set(line.put.key, line.put) : forget(line.release)));
  const former = await readFormer<{ entries?: Record<string, JournalEntry> }>(directory, 'journal.json');
  if (former) {
    for (const entry of Object.values(former.entries ?? {})) if (!entries.has(entry.key)) entries.set(entry.key, entry);
    await log.compact(() => [...entries.values()].map((entry) => ({ put: entry })));
    await removeMigrated(join(directory.path, 'journal.json'));
  }
  if (log.damaged || needsCompaction(log, entries.size)) await log.compact(() => [...entries.values()].map((entry) => ({ put: entry })));
  const compact = () => {
    if (!needsCompaction(log, entries.size)) return;
    log.compact(() => [...entries.values()].map((entry) => ({ put: entry }))).catch((error: unknown) => directory.onWarning(`store: compacting journal.jsonl failed (${(error as Error).message})`));
  };
  return {
    get: async (key) => entries.get(key),
    async put(entry) {
      if (isReleased(entry.key)) return;
      await log.append({ put: entry }, () => void entries.set(entry.key, entry));
      compact();
    },
    async release(runId) {
      if (![...entries.keys()].some((key) => key.startsWith(`${runId}:`))) return;
      await log.append({ release: runId }, () => forget(runId));
      compact();
    },
  };
}

interface StoredTask {
  task: BackgroundTask;
  state: 'pending' | 'failed';
  updatedAt: string;
}

type QueueLine = StoredTask | { done: string };

/**
 * Background tasks in `queue.jsonl`, so a restart finishes what was queued: a line per task as it
 * is queued or fails, and one when it is done (which then leaves; compacted to the tasks not done).
 * @example
 * const queue = createMemoryQueue({ handlers, persistence: await createFileQueuePersistence(directory) });
 */
export async function createFileQueuePersistence(directory: StoreDirectory): Promise<QueuePersistence> {
  const tasks = new Map<string, StoredTask>();
  const log = await directory.openLog<QueueLine>('queue.jsonl', (line) => ('done' in line ? void tasks.delete(line.done) : void tasks.set(line.task.id, line)));
  const former = await readFormer<{ tasks?: Record<string, StoredTask> }>(directory, 'queue.json');
  if (former) {
    for (const stored of Object.values(former.tasks ?? {})) if (!tasks.has(stored.task.id)) tasks.set(stored.task.id, stored);
    await log.compact(() => [...tasks.values()]);
    await removeMigrated(join(directory.path, 'queue.json'));
  }
  if (log.damaged || needsCompaction(log, tasks.size)) await log.compact(() => [...tasks.values()]);
  const compact = () => {
    if (!needsCompaction(log, tasks.size)) return;
    log.compact(() => [...tasks.values()]).catch((error: unknown) => directory.onWarning(`store: compacting queue.jsonl failed (${(error as Error).message})`));
  };
  return {
    pending: async () => [...tasks.values()].filter((stored) => stored.state === 'pending').map((stored) => stored.task),
    known: async (id) => tasks.has(id),
    // A finished task leaves (its run is past the point of queueing it again); a failed one stays to be looked at.
    async save(task, state) {
      if (state === 'done') {
        await log.append({ done: task.id }, () => void tasks.delete(task.id));
      } else {
        const stored: StoredTask = { task, state, updatedAt: new Date().toISOString() };
        await log.append(stored, () => void tasks.set(task.id, stored));
      }
      compact();
    },
  };
}
