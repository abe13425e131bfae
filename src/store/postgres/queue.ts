import { createHash } from 'node:crypto';
import PgBoss from 'pg-boss';
import { BackgroundTask, type BackgroundHandler, type BackgroundQueue } from '../../background/contract.js';
import { RunchartError } from '../../errors.js';
import type { Database } from './db.js';

// The one file that imports pg-boss. pg-boss keeps its jobs in a schema of its own beside the
// store's (`<schema>_queue`), created and migrated by pg-boss under its own advisory lock, and
// runs its queries on the store's pool. It polls; a NOTIFY after each send wakes idle workers
// in every process at once.

const TASKS = 'runchart-tasks';
const RUNS = 'runchart-runs';
/** The advisory lock class under which one process at a time sets the queue's schema up ("RCHQ"). */
const QUEUE_SETUP_LOCK = 0x52434851;

/** A "run this run" job: what a dispatcher hands a worker. */
export interface RunDispatch {
  runId: string;
  tenantId: string;
}

/** Options of the PostgreSQL background queue. */
export interface PostgresQueueOptions {
  handlers: Record<string, BackgroundHandler>;
  /** Background tasks this process runs at once. */
  concurrency?: number;
  /** Extra attempts after a failure. */
  retries?: number;
  /** The first retry waits 1–2 times this, each next one twice as long (pg-boss adds jitter); whole seconds. */
  backoffSeconds?: number;
  /** A job active this long is taken for dead (its worker crashed) and failed, so its retry runs elsewhere. */
  expireSeconds?: number;
  /** How often an idle worker looks for jobs when no NOTIFY woke it. */
  pollMs?: number;
  /** How often expired jobs are swept (by one process at a time). */
  maintenanceSeconds?: number;
  /** False: this process queues tasks but runs none (another process works them). */
  work?: boolean;
  onGiveUp?: (task: BackgroundTask, error: unknown) => void;
  onWarning?: (message: string, error?: unknown) => void;
}

/** The background queue on PostgreSQL, plus what a run dispatcher needs. */
export interface PostgresQueue extends BackgroundQueue {
  /** Queues a job to run `run`; false when one for that run is already waiting (a dispatch is idempotent by run id). */
  dispatchRun(run: RunDispatch, options?: { retries?: number; expireSeconds?: number }): Promise<boolean>;
  /** Works dispatched runs in this process, `concurrency` at once, until the returned stop is called. */
  workRuns(handler: (run: RunDispatch, options: { signal: AbortSignal; attempt: number }) => Promise<void>, options?: { concurrency?: number }): () => Promise<void>;
  /** Fails the jobs active longer than their expiry now (maintenance does it every `maintenanceSeconds`). */
  maintain(): Promise<void>;
  close(): Promise<void>;
}

/** The job id of a task: derived from its id, so queueing a task twice inserts one job. */
export function jobIdOf(taskId: string): string {
  const hex = createHash('sha256').update(`runchart:task:${taskId}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${((parseInt(hex[16]!, 16) & 3) | 8).toString(16)}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Something a loop sleeps on until a timeout, an abort, or a wake-up (one that came while it was awake counts). */
function alarm() {
  let ring: (() => void) | undefined;
  let rang = false;
  return {
    wake() {
      rang = true;
      ring?.();
    },
    sleep: (ms: number, signal: AbortSignal) =>
      new Promise<void>((resolve) => {
        if (rang || signal.aborted) return resolve(void (rang = false));
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          ring = undefined;
          rang = false;
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal.addEventListener('abort', done);
        ring = done;
      }),
  };
}

/**
 * Opens the queue: pg-boss's schema is created or migrated, the two queues made, and (unless
 * `work: false`) this process starts working background tasks.
 * @example
 * const queue = await openPostgresQueue(db, { handlers: { 'memory.write': async (task) => {} } });
 * await queue.dispatchRun({ runId: 'run-1', tenantId: 'acme' });
 */
export async function openPostgresQueue(db: Database, options: PostgresQueueOptions): Promise<PostgresQueue> {
  const warn = options.onWarning ?? (() => {});
  const retries = options.retries ?? 3;
  const backoffSeconds = Math.max(1, Math.round(options.backoffSeconds ?? 1));
  const expireSeconds = options.expireSeconds ?? 300;
  const pollMs = Math.max(100, options.pollMs ?? 2_000);
  const channel = `${db.schema}_queue`;
  const boss = new PgBoss({
    db: { executeSql: db.executeSql },
    schema: `${db.schema}_queue`,
    schedule: false,
    supervise: true,
    maintenanceIntervalSeconds: options.maintenanceSeconds ?? 30,
  });
  let closing = false;
  let closed: Promise<void> | undefined;
  const loops = new Set<{ name: string; alarm: ReturnType<typeof alarm>; done: Promise<void> }>();
  let stopListening: () => Promise<void>;
  boss.on('error', (error) => {
    if (!closing) warn('background: the PostgreSQL job queue reported an error', error);
  });
  try {
    // pg-boss's own lock does not keep two first starts from both creating its schema: one
    // process at a time sets it up, under a lock of ours held on a connection of its own.
    await db.transaction(async (query) => {
      await query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [QUEUE_SETUP_LOCK, db.schema]);
      await boss.start();
      await boss.createQueue(TASKS, { name: TASKS, policy: 'standard' });
      // short: at most one waiting job per run (a dispatch while one waits is a no-op), and one may wait while another runs.
      await boss.createQueue(RUNS, { name: RUNS, policy: 'short' });
    });
    stopListening = await db.listen(channel, (name) => {
      for (const loop of loops) if (loop.name === name) loop.alarm.wake();
    });
  } catch (error) {
    closing = true;
    // pg-boss's maintenance timer would keep the process alive.
    await boss.stop({ graceful: false, close: false, wait: true }).catch(() => {});
    throw new RunchartError('upstream', 'background', `background: the job queue in schema ${db.schema}_queue at ${db.where} could not be set up: ${(error as Error).message}`, { cause: error });
  }

  const stopping = new AbortController();

  /** Fetches and runs jobs of `name`, up to `concurrency` at once, until `signal` aborts. */
  function workLoop<Data>(name: string, concurrency: number, signal: AbortSignal, run: (job: PgBoss.JobWithMetadata<Data>) => Promise<void>) {
    const wakeUp = alarm();
    const running = new Set<Promise<void>>();
    async function loop() {
      while (!signal.aborted) {
        const free = concurrency - running.size;
        const jobs = free > 0 ? await boss.fetch<Data>(name, { batchSize: free, includeMetadata: true }).catch(() => []) : [];
        for (const job of jobs) {
          const task = run(job).finally(() => {
            running.delete(task);
            wakeUp.wake();
          });
          running.add(task);
        }
        // Fewer jobs than free slots: the queue is empty for now; no free slot: wait for one.
        if (jobs.length < free || free === 0) await wakeUp.sleep(pollMs, signal);
      }
      await Promise.allSettled(running);
    }
    const entry = { name, alarm: wakeUp, done: loop() };
    loops.add(entry);
    void entry.done.then(
      () => loops.delete(entry),
      (error: unknown) => (loops.delete(entry), warn(`background: the worker of ${name} stopped`, error)),
    );
    return entry;
  }

  /** Runs one job: complete on success, fail (retried by pg-boss with backoff) on error, which it hands back. */
  async function settle(name: string, id: string, signal: AbortSignal, work: () => Promise<void>): Promise<{ error: unknown } | undefined> {
    try {
      await work();
      await boss.complete(name, id);
      return undefined;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      // A job stopped by close is failed too: pg-boss retries it in a process that still runs.
      await boss.fail(name, id, { message: signal.aborted ? `the worker closed: ${message}` : message }).catch((failing: unknown) => warn(`background: job ${id} could not be marked failed; it is retried when it expires`, failing));
      return { error };
    }
  }

  /** Tasks this process queued that are not finished yet, for `drain`. */
  const queued = new Set<string>();
  const finished = new Set<() => void>();
  const finish = (jobId: string, over: boolean) => {
    if (over) queued.delete(jobId);
    for (const resolve of finished) resolve();
  };

  if (options.work !== false) {
    workLoop<BackgroundTask>(TASKS, options.concurrency ?? 4, stopping.signal, async (job) => {
      let task: BackgroundTask | undefined;
      const failure = await settle(TASKS, job.id, stopping.signal, async () => {
        task = BackgroundTask.parse(job.data);
        const handler = options.handlers[task.kind];
        if (!handler) throw new RunchartError('not-provided', 'background', `background: no handler for tasks of kind "${task.kind}"`);
        await handler(task, { signal: stopping.signal });
      });
      const gaveUp = failure !== undefined && job.retryCount >= job.retryLimit;
      if (gaveUp && task && !stopping.signal.aborted) options.onGiveUp?.(task, failure.error);
      finish(job.id, !failure || gaveUp);
    });
  }

  // A wake-up is not waited for: the job is durably queued already, and a worker that misses the
  // message finds the job when it next looks. Close waits for the ones still on their way.
  const wakeUps = new Set<Promise<void>>();
  function notify(name: string): void {
    const sent = db.notify(channel, name).catch((error: unknown) => warn('background: waking workers failed; they find the job when they next look', error));
    wakeUps.add(sent);
    void sent.finally(() => wakeUps.delete(sent));
  }

  async function settledJob(jobId: string): Promise<boolean> {
    const job = await boss.getJobById(TASKS, jobId, { includeArchive: true });
    return !job || job.state === 'completed' || job.state === 'failed' || job.state === 'cancelled';
  }

  return {
    async enqueue(tasks) {
      if (tasks.length === 0) return;
      for (const task of tasks) {
        const id = jobIdOf(task.id);
        try {
          await boss.send(TASKS, task as unknown as object, { id, retryLimit: retries, retryDelay: backoffSeconds, retryBackoff: true, expireInSeconds: expireSeconds });
        } catch (error) {
          throw new RunchartError('upstream', 'background', `background: task ${task.id} could not be queued in ${db.where}: ${(error as Error).message}`, { cause: error, retryable: true });
        }
        queued.add(id);
      }
      notify(TASKS);
    },
    async drain() {
      // Tasks run by this process are seen to finish; the others are asked after, as long as any is left.
      while (queued.size > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => (finished.delete(done), resolve()), 200);
          const done = () => (clearTimeout(timer), finished.delete(done), resolve());
          finished.add(done);
        });
        for (const id of [...queued]) if (await settledJob(id)) queued.delete(id);
      }
    },
    async dispatchRun(run, dispatch = {}) {
      const id = await boss.send(RUNS, { runId: run.runId, tenantId: run.tenantId }, {
        singletonKey: run.runId,
        retryLimit: dispatch.retries ?? retries,
        retryDelay: backoffSeconds,
        retryBackoff: true,
        expireInSeconds: dispatch.expireSeconds ?? expireSeconds,
      });
      if (id) notify(RUNS);
      return id !== null;
    },
    workRuns(handler, work = {}) {
      const stop = new AbortController();
      const signal = AbortSignal.any([stop.signal, stopping.signal]);
      const loop = workLoop<RunDispatch>(RUNS, work.concurrency ?? 1, signal, async (job) => {
        await settle(RUNS, job.id, signal, () => handler({ runId: job.data.runId, tenantId: job.data.tenantId }, { signal, attempt: job.retryCount + 1 }));
      });
      return async () => {
        stop.abort(new RunchartError('cancelled', 'background', 'background: the run worker stopped'));
        await loop.done;
      };
    },
    maintain: () => boss.maintain().then(() => undefined),
    close: () =>
      (closed ??= (async () => {
        closing = true;
        stopping.abort(new RunchartError('cancelled', 'background', 'background: the queue was closed'));
        await Promise.allSettled([...loops].map((loop) => loop.done).concat([...wakeUps]));
        await stopListening();
        await boss.stop({ graceful: false, close: false, wait: true });
      })()),
  };
}
