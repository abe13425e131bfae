import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { BackgroundTask } from '../background/contract.js';
import type { QueuePersistence } from '../background/queue.js';
import { RunchartError } from '../errors.js';
import { JournalEntry, type ExecutionJournal } from '../execution/contract.js';
import { createJournalEntries, runOfEntry } from '../execution/journal-entries.js';
import { isFinalStatus, PersistedRun, summaryOf, type RunStore } from './contract.js';
import { readFormerDocument, removeFormerDocument, type StoreDirectory } from './directory.js';
import { openFinishedIndex, memoryFinishedIndex, type FinishedRun } from './finished-index.js';
import type { JsonLog, LinePlace } from './log.js';

// Runs, the journal and the queue are written on every step of every run, and a run waits for some
// of those writes: they are append-only JSON Lines files (the appends of one synchronous stretch in
// one synchronous write, far cheaper than lowdb's rewrite of a whole document through a temp file
// and a rename; measured in bench/README.md). Memory is in append-only files too, one per tenant (src/memory/lowdb.ts).

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

/** Of how many runs finished last a file run store keeps the id, so that a late save of an earlier step of one is dropped without a look-up. */
const RECENTLY_FINISHED = 10_000;

/**
 * Runs in two append-only files: `runs.jsonl` gets each unfinished run's snapshot after every
 * step (the last line of a run wins; compacted to the unfinished runs as it grows), and
 * `runs-finished.jsonl` one line per finished run, which wins over anything in `runs.jsonl`.
 * Unfinished runs are kept in memory; finished ones are found through an index on disk
 * (`finished-index.ts`), and their snapshots read from the file when asked for, so a long-lived
 * process keeps nothing per finished run (besides the ids of the last 10,000, so that a late save
 * of an earlier step of one is dropped at once; the runtime saves a run's steps in order, so no
 * save comes later than that). Every line is parsed as a `PersistedRun` where it is
 * read; one that is not (`null`, a field missing) is skipped and reported as a torn line is. A
 * store of the earlier layout (no index yet) is indexed once at open.
 * @example
 * const runStore = await createFileRunStore(directory);
 */
export async function createFileRunStore(directory: StoreDirectory): Promise<RunStore> {
  const active = new Map<string, PersistedRun>();
  /** The runs finished lately, oldest first. */
  const recent = new Set<string>();
  const finishedBytes = await stat(join(directory.path, 'runs-finished.jsonl')).then(
    (found) => found.size,
    () => 0,
  );
  // A reader beside the writer builds its index in memory: the files on disk are the writer's.
  const index = directory.readOnly ? memoryFinishedIndex() : openFinishedIndex(directory.path, finishedBytes, directory.onWarning);
  directory.whenClosed(() => index.close());
  const finishedLog = await directory.openLog<PersistedRun>('runs-finished.jsonl', (run, place) => index.add(summaryOf(run), place), {
    schema: PersistedRun,
    from: index.covered,
    firstLine: index.coveredLines + 1,
  });
  // Every line past the index was read (good ones indexed, bad ones reported): the next open starts after them.
  const finishedNow = await stat(join(directory.path, 'runs-finished.jsonl')).then((found) => found.size, () => 0);
  index.coverUpTo(finishedNow, finishedLog.lastLineAtOpen);
  const activeLog = await directory.openLog<PersistedRun>('runs.jsonl', (run) => void active.set(run.runId, run), { schema: PersistedRun });
  // A run with a finished line is finished, whatever runs.jsonl still holds of its steps.
  for (const runId of [...active.keys()]) if (index.find(runId)) active.delete(runId);
  const compact = await keepCompact(
    directory,
    activeLog,
    { name: 'runs.jsonl', live: () => [...active.values()], count: () => active.size },
    {
      file: 'runs.json',
      moveIn: (data: { runs?: Record<string, PersistedRun> }) => {
        for (const run of Object.values(data.runs ?? {})) if (!active.has(run.runId) && !index.find(run.runId)) active.set(run.runId, run);
      },
    },
  );
  const finish = (run: PersistedRun, place: LinePlace) => {
    index.add(summaryOf(run), place);
    recent.delete(run.runId);
    recent.add(run.runId);
    if (recent.size > RECENTLY_FINISHED) recent.delete(recent.values().next().value!);
    active.delete(run.runId);
  };
  const copy = (run: PersistedRun): PersistedRun => structuredClone(run);
  async function readFinished(runId: string, { summary, place }: FinishedRun): Promise<PersistedRun> {
    const run = await finishedLog.readAt(place);
    if (run.runId !== runId || run.status !== summary.status || run.updatedAt !== summary.updatedAt) {
      throw new RunchartError('internal', 'store', `store: the line of run ${runId} in runs-finished.jsonl holds another record (was the file changed by hand?)`);
    }
    return run;
  }
  return {
    async save(run) {
      if (isFinalStatus(run.status)) {
        await finishedLog.append(run, (place) => finish(run, place));
      } else {
        // A finished run stays finished: a late save of an earlier step is dropped.
        if (recent.has(run.runId)) return;
        await activeLog.append(run, () => {
          if (!recent.has(run.runId)) active.set(run.runId, run);
        });
      }
      compact();
    },
    async load(runId) {
      const done = active.has(runId) ? undefined : index.find(runId);
      if (done) return readFinished(runId, done);
      const run = active.get(runId);
      return run && copy(run);
    },
    listActive: async () => [...active.values()].map(copy),
    list: async ({ tenantId }) => [...[...active.values()].filter((run) => run.tenantId === tenantId).map(summaryOf), ...(await index.list(tenantId))],
  };
}

const JournalLine = z.union([z.object({ put: JournalEntry }), z.object({ release: z.string() })]);
type JournalLine = z.infer<typeof JournalLine>;

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
  const log = await directory.openLog<JournalLine>('journal.jsonl', (line) => ('put' in line ? entries.set(line.put) : forget(line.release)), { schema: JournalLine });
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

const StoredTask = z.object({ task: BackgroundTask, state: z.enum(['pending', 'failed']), updatedAt: z.string() });
type StoredTask = z.infer<typeof StoredTask>;

const QueueLine = z.union([StoredTask, z.object({ done: z.string() })]);
type QueueLine = z.infer<typeof QueueLine>;

/**
 * Background tasks in `queue.jsonl`, so a restart finishes what was queued: a line per task as it
 * is queued or fails, and one when it is done (which then leaves; compacted to the tasks not done).
 * @example
 * const queue = createMemoryQueue({ handlers, persistence: await createFileQueuePersistence(directory) });
 */
export async function createFileQueuePersistence(directory: StoreDirectory): Promise<QueuePersistence> {
  const tasks = new Map<string, StoredTask>();
  const log = await directory.openLog<QueueLine>('queue.jsonl', (line) => ('done' in line ? void tasks.delete(line.done) : void tasks.set(line.task.id, line)), { schema: QueueLine });
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
