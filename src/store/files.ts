import type { BackgroundTask } from '../background/contract.js';
import type { QueuePersistence } from '../background/queue.js';
import { RunchartError } from '../errors.js';
import type { ExecutionJournal, JournalEntry } from '../execution/contract.js';
import { createJournalEntries, runOfEntry } from '../execution/journal-entries.js';
import { isFinalStatus, summaryOf, type PersistedRun, type RunStore, type RunSummary } from './contract.js';
import { readFormerDocument, removeFormerDocument, type StoreDirectory } from './directory.js';
import type { JsonLog, LinePlace } from './log.js';

// Runs, the journal and the queue are written on every step of every run, and a run waits for some
// of those writes: they are append-only JSON Lines files (the appends of one synchronous stretch in
// one synchronous write, ~2 µs here, where lowdb's rewrite of a whole document through a temp file
// and a rename costs ~220 µs). Memory, read far more than written, stays in lowdb documents.

/** What keeps one log small: the records still live, and the file name for reports. */
interface Upkeep<Entry> {
  name: string;
  live: () => Entry[];
  count: () => number;
}

/**
 * Brings a log up to date at open and returns what to call after each write: the records of the
 * earlier whole-document file (`former`) are moved in once; damaged or mostly dead lines (lines
 * from earlier processes count) are compacted away; later, a compaction starts once dead lines
 * outnumber live records four to one (and at least 256 lines were written).
 */
async function keepCompact<Entry, Former>(
  directory: StoreDirectory,
  log: JsonLog<Entry>,
  upkeep: Upkeep<Entry>,
  former?: { file: string; moveIn: (data: Former) => void },
): Promise<() => void> {
  const needed = () => log.appendedSinceCompaction > Math.max(256, 4 * upkeep.count());
  const data = former && (await readFormerDocument<Former>(directory, former.file));
  if (former && data) {
    former.moveIn(data);
    await log.compact(upkeep.live);
    await removeFormerDocument(directory, former.file);
  }
  if (log.damaged || needed()) await log.compact(upkeep.live);
  return () => {
    if (!needed()) return;
    log.compact(upkeep.live).catch((error: unknown) => directory.onWarning(`store: compacting ${upkeep.name} failed (${(error as Error).message}); it grows until the next try`));
  };
}

/** A finished run as the store keeps it in memory: what a listing shows, and where its line is. */
interface FinishedRun {
  summary: RunSummary;
  place: LinePlace;
}

/**
 * Runs in two append-only files: `runs.jsonl` gets each unfinished run's snapshot after every
 * step (the last line of a run wins; compacted to the unfinished runs as it grows), and
 * `runs-finished.jsonl` one line per finished run, which wins over anything in `runs.jsonl`.
 * Unfinished runs are kept in memory; of a finished run only its summary and the place of its
 * line are, and its snapshot is read from the file when asked for, so a long-lived process
 * does not hold every run it ever finished.
 * @example
 * const runStore = await createFileRunStore(directory);
 */
export async function createFileRunStore(directory: StoreDirectory): Promise<RunStore> {
  const finished = new Map<string, FinishedRun>();
  const active = new Map<string, PersistedRun>();
  const keep = (run: PersistedRun, place: LinePlace) => void finished.set(run.runId, { summary: summaryOf(run), place });
  const finishedLog = await directory.openLog<PersistedRun>('runs-finished.jsonl', keep);
  const activeLog = await directory.openLog<PersistedRun>('runs.jsonl', (run) => {
    if (!finished.has(run.runId)) active.set(run.runId, run);
  });
  if (finishedLog.damaged) {
    // Read back one at a time (the file as it was is still there until the rewrite is renamed over it).
    const runs: PersistedRun[] = [];
    for (const { place } of finished.values()) runs.push(await finishedLog.readAt(place));
    await finishedLog.compact(() => runs, keep);
  }
  const compact = await keepCompact(
    directory,
    activeLog,
    { name: 'runs.jsonl', live: () => [...active.values()], count: () => active.size },
    {
      file: 'runs.json',
      moveIn: (data: { runs?: Record<string, PersistedRun> }) => {
        for (const run of Object.values(data.runs ?? {})) if (!finished.has(run.runId) && !active.has(run.runId)) active.set(run.runId, run);
      },
    },
  );
  const copy = (run: PersistedRun): PersistedRun => structuredClone(run);
  async function readFinished(runId: string, { summary, place }: FinishedRun): Promise<PersistedRun> {
    const run = await finishedLog.readAt(place);
    if (run?.runId !== runId || run.status !== summary.status || run.updatedAt !== summary.updatedAt) {
      throw new RunchartError('internal', 'store', `store: the line of run ${runId} in runs-finished.jsonl holds another record (was the file changed by hand?)`);
    }
    return run;
  }
  return {
    async save(run) {
      if (isFinalStatus(run.status)) {
        await finishedLog.append(run, (place) => {
          keep(run, place);
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
    async load(runId) {
      const done = finished.get(runId);
      if (done) return readFinished(runId, done);
      const run = active.get(runId);
      return run && copy(run);
    },
    listActive: async () => [...active.values()].map(copy),
    list: async ({ tenantId }) => [...[...active.values()].map(summaryOf), ...[...finished.values()].map((run) => run.summary)].filter((run) => run.tenantId === tenantId),
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
  const entries = createJournalEntries();
  /** Runs released lately: a put that arrives after the release (a cancelled call finishing late) is not kept. */
  const released = new Set<string>();
  const forget = (runId: string) => {
    entries.forget(runId);
    released.add(runId);
    if (released.size > 10_000) released.delete(released.values().next().value!);
  };
  const isReleased = (entry: JournalEntry) => released.has(runOfEntry(entry));
  const log = await directory.openLog<JournalLine>('journal.jsonl', (line) => ('put' in line ? entries.set(line.put) : forget(line.release)));
  const compact = await keepCompact(
    directory,
    log,
    { name: 'journal.jsonl', live: () => [...entries.values()].map((entry) => ({ put: entry })), count: () => entries.size },
    {
      file: 'journal.json',
      moveIn: (data: { entries?: Record<string, JournalEntry> }) => {
        for (const entry of Object.values(data.entries ?? {})) if (!entries.has(entry.key)) entries.set(entry);
      },
    },
  );
  return {
    get: async (key) => entries.get(key),
    async put(entry) {
      if (isReleased(entry)) return;
      await log.append({ put: entry }, () => entries.set(entry));
      compact();
    },
    async release(runId) {
      if (!entries.holds(runId)) return;
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
  const compact = await keepCompact(
    directory,
    log,
    { name: 'queue.jsonl', live: () => [...tasks.values()], count: () => tasks.size },
    {
      file: 'queue.json',
      moveIn: (data: { tasks?: Record<string, StoredTask> }) => {
        for (const stored of Object.values(data.tasks ?? {})) if (!tasks.has(stored.task.id)) tasks.set(stored.task.id, stored);
      },
    },
  );
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
