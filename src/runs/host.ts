import { createActor } from 'xstate';
import type { RunMachine } from '../../machines/run/machine.js';
import type { RunResult } from '../../machines/run/result.js';
import type { RunInput, RunSettings } from '../../machines/run/types.js';
import { isRunchartError, RunchartError } from '../errors.js';
import { SCHEMA_VERSION, type PersistedRun } from '../store/contract.js';
import type { PostgresStore } from '../store/postgres/open.js';
import type { RunScope } from './events.js';
import type { RunHandle, RunRegistry } from './registry.js';

/** What a run host needs: the registry that holds runs here, the shared store, and who this process is. */
export interface RunHostOptions {
  runs: RunRegistry;
  store: () => Promise<PostgresStore>;
  /** The provided run chart: a submitted run is saved as its first snapshot, for a worker to start. */
  machine: RunMachine;
  settings: RunSettings;
  /** This process's worker id: the lease owner of the runs it holds. */
  owner: string;
  /** How long a lease lasts unless renewed (a third of it between renewals); a dead worker's runs are taken over after it. */
  leaseMs: number;
  redact: <T>(value: T) => T;
  /** This process runs no runs it does not start itself: a run to resume (an approval, a cancel) goes to the workers through the queue. */
  acceptOnly?: boolean;
  now: () => number;
  warn: (message: string, error?: unknown) => void;
}

interface Hosted {
  scope: RunScope;
  /** The lease is ours (a run started here is leased once its first save is in). */
  leased: boolean;
  /** Parked for approval: it stays here, but takes no worker slot. */
  parked: boolean;
  /** Inbox mail is taken one batch at a time, in order. */
  mail: Promise<void>;
}

/**
 * Runs on a shared PostgreSQL store (DESIGN §10): each run is held by one process under a lease
 * it renews; dispatched runs are taken from the job queue, a dead worker's runs are taken over
 * once their leases lapse, and events for a run (approve, reject, cancel) reach the process
 * holding it through the run inbox, wherever they were sent.
 * @example
 * const host = createRunHost({ runs, store, machine, settings, owner: 'worker-1', leaseMs: 15_000, redact, now, warn });
 * const stop = host.work({ concurrency: 8 });
 */
export function createRunHost(options: RunHostOptions) {
  const { runs, owner, leaseMs, warn } = options;
  const hosted = new Map<string, Hosted>();
  const holderOf = (scope: RunScope) => ({ tenantId: scope.tenantId, runId: scope.runId, owner });
  const leaseOf = (scope: RunScope) => ({ tenantId: scope.tenantId, runId: scope.runId, owner, leaseMs });
  let renewing: NodeJS.Timeout | undefined;
  let listening: Promise<() => Promise<void>> | undefined;
  let closed = false;
  /** Runs started here whose leases are being asked for. */
  const adopting = new Set<Promise<void>>();

  function holding(scope: RunScope): Hosted {
    let entry = hosted.get(scope.runId);
    if (!entry) hosted.set(scope.runId, (entry = { scope, leased: false, parked: false, mail: Promise.resolve() }));
    renewing ??= setInterval(() => void renewAll(), Math.max(50, Math.floor(leaseMs / 3))).unref();
    listening ??= options.store().then((store) =>
      store.inbox.listen((runId) => {
        const mailed = hosted.get(runId);
        if (mailed) takeMail(mailed);
      }),
    );
    listening.catch((error: unknown) => warn('runtime: listening for run inbox events failed; events sent to runs held here wait for the next look', error));
    return entry;
  }

  async function renewAll() {
    for (const entry of [...hosted.values()]) if (entry.leased) await renew(entry);
    // A NOTIFY is a wake-up, never the only copy: mail whose NOTIFY was missed is found here.
    const store = await options.store();
    const mailed = await store.inbox.waiting([...hosted.keys()]).catch(() => []);
    for (const runId of mailed) {
      const entry = hosted.get(runId);
      if (entry) takeMail(entry);
    }
  }

  /** Extends the run's lease; false (and the run let go here) when another worker has taken it over. */
  async function renew(entry: Hosted): Promise<boolean> {
    const store = await options.store();
    const kept = await store.runStore.leases.renew(leaseOf(entry.scope)).catch((error: unknown) => {
      warn(`runtime: renewing the lease of run ${entry.scope.runId} failed; trying again`, error);
      return true;
    });
    if (kept || hosted.get(entry.scope.runId) !== entry) return kept;
    // Another worker took the run over (this one was too slow to renew): it is no longer ours to step.
    hosted.delete(entry.scope.runId);
    if (runs.handleOf(entry.scope.runId)) warn(`runtime: the lease of run ${entry.scope.runId} was lost to another worker; it goes on there`);
    await runs.release(entry.scope.runId);
    return false;
  }

  /** Takes the run's inbox mail and applies it in order; an approval's outcome is logged as a `review` event for whoever sent it. */
  function takeMail(entry: Hosted) {
    entry.mail = entry.mail.then(async () => {
      const store = await options.store();
      // Mail is for the holder: a process that lost the lease and has not noticed yet leaves it.
      if (entry.leased && !(await renew(entry))) return;
      const mail = await store.inbox.take(entry.scope);
      for (const { id, event } of mail) apply(store, entry.scope, id, event);
    }).catch((error: unknown) => warn(`runtime: the inbox of run ${entry.scope.runId} could not be read; its events wait for the next look`, error));
  }

  function apply(store: PostgresStore, scope: RunScope, requestId: number, event: Record<string, unknown>) {
    const handle = runs.handleOf(scope.runId);
    // Let go meanwhile (the lease was lost): the review must not bring the run back here.
    if (!handle) return void store.events.append(scope, 'review', { requestId, error: { kind: 'internal', layer: 'runtime', message: `runtime: run "${scope.runId}" changed workers while the event was delivered; send it again` } });
    if (event.type === 'run.cancel') {
      handle.cancel(typeof event.reason === 'string' ? event.reason : undefined);
      return;
    }
    const review = event as { type: 'tool.approve' | 'tool.reject'; callId: string; principalId: string; argsHash?: string; reason?: string };
    const answer = (data: unknown) => store.events.append(scope, 'review', data);
    const reviewed =
      review.type === 'tool.approve'
        ? runs.approve(scope.runId, review.callId, { principalId: review.principalId, tenantId: scope.tenantId, ...(review.argsHash ? { argsHash: review.argsHash } : {}) })
        : runs.reject(scope.runId, review.callId, { principalId: review.principalId, tenantId: scope.tenantId, ...(review.reason ? { reason: review.reason } : {}) });
    reviewed.then(
      (result) => answer({ requestId, result }),
      (error: unknown) => answer({ requestId, error: errorOf(error) }),
    );
  }

  /** Holds a run whose lease this process has: restored here unless it is live already. */
  async function host(run: PersistedRun): Promise<RunHandle | undefined> {
    const scope = { tenantId: run.tenantId, runId: run.runId };
    const entry = holding(scope);
    entry.leased = true;
    let handle = runs.handleOf(run.runId);
    // Finished here a moment ago, its last save still in flight: the lease read an older row.
    if (!handle && runs.holds(run.runId)) {
      hosted.delete(run.runId);
      return undefined;
    }
    if (!handle) {
      try {
        handle = runs.restore(run);
      } catch (error) {
        hosted.delete(run.runId);
        warn(`runtime: run ${run.runId} could not be restored; it is left for another worker`, error);
        await (await options.store()).runStore.leases.release(holderOf(scope));
        return undefined;
      }
    }
    takeMail(entry);
    return handle;
  }

  /** Answers mail sent to a run that is finished or gone: each approval is told why it found no run to review. */
  async function answerUnheld(store: PostgresStore, scope: RunScope, why: string) {
    for (const { id, event } of await store.inbox.take(scope)) {
      if (event.type === 'run.cancel') continue;
      store.events.append(scope, 'review', { requestId: id, error: { kind: 'invalid-input', layer: 'runtime', message: `runtime: run "${scope.runId}" has no call awaiting approval (${why})` } });
    }
  }

  /** The job of a dispatched run: lease it and hold it, unless another process holds it (that one takes its mail). */
  async function take(scope: RunScope): Promise<void> {
    const store = await options.store();
    const lease = await store.runStore.leases.acquire(leaseOf(scope));
    if (lease.status === 'acquired') {
      // The job lasts until the run first settles: the queue's concurrency counts running runs.
      await (await host(lease.run))?.result.catch(() => undefined);
      return;
    }
    if (lease.status === 'finished') return answerUnheld(store, scope, `the run is ${lease.run.status}`);
    if (lease.status === 'missing') return answerUnheld(store, scope, 'no such run');
  }

  return {
    /** A run started in this process: leased once its first save is in, and held here while it lives. */
    adopt(scope: RunScope) {
      const entry = holding(scope);
      const leasing = (async () => {
        await runs.saved(scope.runId);
        if (closed) return;
        const store = await options.store();
        const lease = await store.runStore.leases.acquire(leaseOf(scope));
        if (lease.status === 'acquired') entry.leased = true;
        else if (lease.status === 'held') {
          hosted.delete(scope.runId);
          await runs.release(scope.runId);
        }
      })().catch((error: unknown) => warn(`runtime: run ${scope.runId} could not be leased; a worker takes it over once it has been idle for the lease time`, error));
      adopting.add(leasing);
      void leasing.finally(() => adopting.delete(leasing));
    },

    /** Takes the run into this process when nobody else holds it (its lease is free or lapsed); true when it is live here now. */
    async claim(scope: RunScope): Promise<boolean> {
      if (runs.handleOf(scope.runId)) return true;
      // A process that only accepts runs hands every run on to the workers.
      if (options.acceptOnly) return false;
      const store = await options.store();
      const lease = await store.runStore.leases.acquire(leaseOf(scope));
      return lease.status === 'acquired' && (await host(lease.run)) !== undefined;
    },

    /** Takes every unfinished run nobody holds (lapsed leases, runs let go): `recover()` on a shared store. */
    async recover(): Promise<RunHandle[]> {
      const store = await options.store();
      const handles: RunHandle[] = [];
      for (;;) {
        const taken = await store.runStore.leases.takeOverExpired({ owner, leaseMs, limit: 100, orphanedMs: 0 });
        for (const { run } of taken) {
          const handle = await host(run);
          if (handle) handles.push(handle);
        }
        if (taken.length < 100) return handles;
      }
    },

    /** Saves a new run as its first snapshot and dispatches it to the workers. */
    async submit(runId: string, request: { tenantId: string; principalId: string }): Promise<void> {
      const input: RunInput = { runId, request, settings: options.settings };
      const snapshot = createActor(options.machine, { input }).getPersistedSnapshot();
      const store = await options.store();
      await store.runStore.save({
        schemaVersion: SCHEMA_VERSION,
        runId,
        tenantId: request.tenantId,
        principalId: request.principalId,
        status: 'running',
        updatedAt: options.now(),
        snapshot: options.redact(snapshot),
      });
      await store.queue.dispatchRun({ runId, tenantId: request.tenantId });
    },

    /** Sends an event to the run wherever it is held (or to the worker that takes it up); returns the inbox id, which its `review` answer names. */
    async deliver(scope: RunScope, event: Record<string, unknown>): Promise<number> {
      const store = await options.store();
      const id = await store.inbox.send(scope, event);
      // Held here: the NOTIFY reaches this process's listener too. Held elsewhere: the holder hears it and the job finds the lease taken.
      if (!hosted.has(scope.runId)) await store.queue.dispatchRun(scope);
      return id;
    },

    /** Told by the registry when a run settles: a finished run is let go; a parked one stays here, taking no slot. */
    settled(runId: string, result: RunResult) {
      const entry = hosted.get(runId);
      if (!entry) return;
      if (result.status === 'awaiting_approval') entry.parked = true;
      else if (result.status !== 'running') hosted.delete(runId);
      else entry.parked = false;
    },

    /**
     * Takes dispatched runs, `concurrency` running at once (parked runs take no slot), and every
     * `leaseMs / 2` sweeps for runs whose holder died; returns a way to stop taking more.
     */
    work({ concurrency }: { concurrency: number }): () => Promise<void> {
      let stopJobs: (() => Promise<void>) | undefined;
      const busy = () => [...hosted.values()].filter((entry) => !entry.parked).length;
      const started = options.store().then((store) => {
        if (!closed) stopJobs = store.queue.workRuns((run) => take(run), { concurrency });
      });
      started.catch((error: unknown) => warn('runtime: the worker could not start', error));
      let sweeping = false;
      const sweeper = setInterval(async () => {
        if (sweeping || closed) return;
        sweeping = true;
        try {
          const free = concurrency - busy();
          if (free <= 0) return;
          const store = await options.store();
          const taken = await store.runStore.leases.takeOverExpired({ owner, leaseMs, limit: free, orphanedMs: leaseMs });
          for (const { run, previousOwner } of taken) {
            if (previousOwner) warn(`runtime: took over run ${run.runId} from ${previousOwner}, whose lease lapsed`);
            void host(run);
          }
        } catch (error) {
          warn('runtime: sweeping for runs whose worker died failed; trying again', error);
        } finally {
          sweeping = false;
        }
      }, Math.max(100, Math.floor(leaseMs / 2)));
      sweeper.unref();
      return async () => {
        clearInterval(sweeper);
        await started.catch(() => {});
        await stopJobs?.();
      };
    },

    /** Lets every run held here go (after the registry stopped them): leases released and running runs dispatched again, so another worker takes them at once. */
    async close() {
      // A lease asked for before closing is held (and so let go below) once the ask is answered.
      await Promise.allSettled([...adopting]);
      closed = true;
      clearInterval(renewing);
      const store = await options.store().catch(() => undefined);
      const left = [...hosted.values()];
      hosted.clear();
      if (store) {
        for (const { scope, leased, parked } of left) {
          if (!leased) continue;
          await store.runStore.leases.release(holderOf(scope)).catch((error: unknown) => warn(`runtime: the lease of run ${scope.runId} could not be released; it lapses after ${leaseMs} ms`, error));
          if (!parked) await store.queue.dispatchRun(scope).catch(() => {});
        }
        await store.events.flush();
      }
      const stop = await listening?.catch(() => undefined);
      await stop?.();
    },
  };
}

export type RunHost = ReturnType<typeof createRunHost>;

/** An error as a `review` event carries it. */
function errorOf(error: unknown): { kind: string; layer: string; message: string } {
  if (isRunchartError(error)) return { kind: error.kind, layer: error.layer, message: error.message };
  return { kind: 'internal', layer: 'runtime', message: (error as Error)?.message ?? String(error) };
}

/** The error a `review` event carries, as the RunchartError the reviewer gets. */
export function reviewError(error: { kind: string; layer: string; message: string }): RunchartError {
  return new RunchartError(error.kind as never, error.layer as never, error.message);
}
