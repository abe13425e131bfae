import { createActor, type ActorRefFrom, type InspectionEvent, type Observer } from 'xstate';
import { runSupervisor } from '../../actors/supervisor.actor.js';
import type { RunMachine } from '../../machines/run/machine.js';
import { statusOf, toRunResult, type RunResult } from '../../machines/run/result.js';
import type { RunContext, RunEvent, RunInput, RunSettings } from '../../machines/run/types.js';
import { isRunchartError, RunchartError } from '../errors.js';
import type { ExecutionJournal } from '../execution/contract.js';
import type { Redaction } from '../redaction.js';
import { SCHEMA_VERSION, summaryOf, type PersistedRun, type RunListFilter, type RunStore, type RunSummary } from '../store/contract.js';
import { readableRun } from '../store/migrate.js';
import { persistedSnapshotOf } from '../store/snapshot.js';
import { loggedFormOf, type RunEventLog } from './events.js';
import type { RunStreamEvent, RunStreams } from './stream.js';

export type RunActor = ActorRefFrom<RunMachine>;

/** A string field of a request not yet accepted, or '' when it has none. */
function requested(request: unknown, field: 'tenantId' | 'principalId'): string {
  const value = (request as Record<string, unknown> | null | undefined)?.[field];
  return typeof value === 'string' ? value : '';
}

/** A started run: its id, its actor, its first settled result, and a way to cancel it. */
export interface RunHandle {
  runId: string;
  actor: RunActor;
  /** Resolves when the run finishes or parks for approval. */
  result: Promise<RunResult>;
  cancel(reason?: string): void;
  /** Listens to the run as it happens: every mark (states, decisions, tool calls), streamed model text, each settled result. */
  subscribe(listener: (event: RunStreamEvent) => void): () => void;
}

/** Who approves or rejects a parked call. */
export interface ReviewOptions {
  principalId: string;
  /** When given, the run must belong to this tenant (otherwise it is not found). */
  tenantId?: string;
  /** When given, the approval holds only for these exact arguments. */
  argsHash?: string;
}

/** What the registry needs: the provided run chart, the stores, and how to tell, redact and time things. */
export interface RunRegistryOptions {
  machine: RunMachine;
  settings: RunSettings;
  runStore: RunStore;
  journal: ExecutionJournal;
  streams: RunStreams;
  idFor: (kind: 'run') => string;
  now: () => number;
  /** Secrets never land in a store: applied to every save, against the run's previous one. */
  redact: <T>(value: T, previous?: Redaction<T>) => T;
  warn: (message: string, error?: unknown) => void;
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Where every run's events are logged, with ids, for followers that come later or live in another process. */
  events?: RunEventLog;
  /** Told each time a run settles (parks or finishes), once the step is saved. */
  onSettled?: (runId: string, result: RunResult) => void;
}

interface LiveRun {
  handle: RunHandle;
  waiters: { resolve: (result: RunResult) => void; reject: (error: unknown) => void }[];
  saving: Promise<void>;
  /** The first failed save: the run's next result is an error, since the store is behind. */
  saveError: RunchartError | undefined;
  /** A step happened that is not saved yet. */
  dirty: boolean;
  flushing: boolean;
  /** The last snapshot saved and its redaction: the next save redacts only what changed since. */
  saved: Redaction<unknown> | undefined;
  /** Reviews of this run, one at a time: a refused reviewer never keeps the next one out. */
  reviews: Promise<unknown>;
}

type ReviewEvent = Extract<RunEvent, { type: 'tool.approve' | 'tool.reject' }>;

/**
 * A review names its reviewer: the approval stage is asked about them and the decision is recorded
 * in their name, so a review without one (a misspelt option, an inbox event from an older process) is
 * refused before it reaches the run.
 */
export function checkReview(verb: 'approve' | 'reject', review: { principalId?: unknown } | undefined): void {
  const principalId: unknown = review?.principalId;
  if (typeof principalId !== 'string' || principalId.trim() === '') {
    throw new RunchartError(
      'invalid-input',
      'runtime',
      `runtime: ${verb} needs options.principalId, the reviewer (e.g. runtime.${verb}(runId, callId, { principalId: 'manager-1' }))`,
    );
  }
}

/** Why a review finds nothing to review: the run is not there (for this tenant), or it is, in a state with no call waiting. */
export async function notAwaiting(runStore: RunStore, runId: string, tenantId: string | undefined): Promise<RunchartError> {
  const stored = await runStore.load(runId).catch(() => undefined);
  const status = stored && (tenantId === undefined || stored.tenantId === tenantId) ? stored.status : undefined;
  return new RunchartError(
    'invalid-input',
    'runtime',
    status && status !== 'awaiting_approval' ? `runtime: run "${runId}" is ${status}; no call of it is awaiting approval` : `runtime: no run "${runId}" is waiting for approval`,
  );
}

/**
 * The runs a runtime holds: each is spawned by one supervisor actor, saved after every step
 * (latest wins), settled for its callers when it finishes or parks, retired when it ends, and
 * restored from the store when an approval (or `recover`) needs it.
 * @example
 * const runs = createRunRegistry({ machine, settings, runStore, journal, streams, idFor, now, redact, warn });
 * const handle = runs.start({ input: 'hi', tenantId: 'acme', principalId: 'u' });
 */
export function createRunRegistry(options: RunRegistryOptions) {
  const { runStore, journal, streams, warn, now } = options;
  const live = new Map<string, LiveRun>();
  /** Finished runs whose last saves are still being written. */
  const finishing = new Map<string, LiveRun>();
  const restorings = new Map<string, Promise<LiveRun | undefined>>();
  const supervisor = createActor(runSupervisor(options.machine, { adopt: (actor, runId) => track(actor, runId) }), options.inspect ? { inspect: options.inspect } : {});
  supervisor.start();

  function persist(entry: LiveRun, snapshot: ReturnType<RunActor['getSnapshot']>): PersistedRun {
    const original = persistedSnapshotOf(snapshot);
    const redacted = options.redact(original, entry.saved);
    entry.saved = { original, redacted };
    const { context } = snapshot;
    return {
      schemaVersion: SCHEMA_VERSION,
      runId: context.runId,
      // Before ingress has accepted it, a run is stored under the identity its request names.
      tenantId: context.accepted.tenantId || requested(context.request, 'tenantId'),
      principalId: context.accepted.principalId || requested(context.request, 'principalId'),
      status: statusOf(snapshot.value),
      updatedAt: now(),
      snapshot: redacted,
    };
  }

  /** Saves the run's newest snapshot; steps taken while a save is in flight are saved once, as the newest (never an older state). */
  function scheduleSave(entry: LiveRun) {
    if (entry.flushing) return;
    entry.flushing = true;
    entry.saving = entry.saving.then(async () => {
      while (entry.dirty) {
        entry.dirty = false;
        try {
          await runStore.save(persist(entry, entry.handle.actor.getSnapshot()));
          // The newest state is stored: an earlier failed save no longer leaves the store behind.
          entry.saveError = undefined;
        } catch (error) {
          // Told once per stretch of failures; a store the caller cannot have (held by another process) keeps the cause's kind.
          if (!entry.saveError) {
            const kind = isRunchartError(error) && error.kind === 'invalid-input' ? 'invalid-input' : 'internal';
            entry.saveError = new RunchartError(kind, 'store', `store: run ${entry.handle.runId} could not be saved: ${(error as Error).message}`, { cause: error });
            warn(`store: saving run ${entry.handle.runId} failed`, error);
          }
        }
      }
      entry.flushing = false;
    });
  }

  /** Watches one run from before it starts: saves after every step, settles waiters when it finishes or parks. */
  function track(actor: RunActor, runId: string) {
    const waiters: LiveRun['waiters'] = [];
    const first = new Promise<RunResult>((resolve, reject) => void waiters.push({ resolve, reject }));
    // A restored run may have no caller waiting on its first result; its rejection must not crash the process.
    first.catch(() => {});
    const entry: LiveRun = {
      handle: {
        runId,
        actor,
        result: first,
        cancel: (reason) => actor.send({ type: 'run.cancel', ...(reason ? { reason } : {}) }),
        subscribe: (listener) => streams.subscribe(runId, listener),
      },
      waiters,
      saving: Promise.resolve(),
      saveError: undefined,
      dirty: false,
      flushing: false,
      saved: undefined,
      reviews: Promise.resolve(),
    };
    live.set(runId, entry);
    if (options.events) logEvents(options.events, entry);
    let lastStatus = '';
    const settle = (result: RunResult) => {
      const settling = entry.waiters.splice(0);
      // Results are released once the step that produced them is saved: nothing is lost on failure.
      void entry.saving.then(() => {
        const failure = entry.saveError;
        for (const waiter of settling) failure ? waiter.reject(failure) : waiter.resolve(result);
        if (!failure) streams.emit(runId, { type: 'settled', result });
        if (result.status !== 'awaiting_approval' && result.status !== 'running') streams.end(runId);
        if (!failure) options.onSettled?.(runId, result);
      });
    };
    actor.subscribe({
      next: (snapshot) => {
        const status = statusOf(snapshot.value);
        const arrived = status !== lastStatus || status === 'awaiting_approval';
        lastStatus = status;
        entry.dirty = true;
        // A store that nothing outlives gets only the points a caller can observe (parked, finished).
        if (runStore.keepsSteps !== false || status !== 'running') scheduleSave(entry);
        if (status !== 'running' && arrived) {
          // Settled first: the result waits for this step's save, not for the journal cleanup that retiring adds.
          settle(toRunResult(snapshot.value, snapshot.context));
          if (snapshot.status === 'done') retire(runId, entry);
        }
      },
      error: (error) => {
        retire(runId, entry);
        const context = actor.getSnapshot().context;
        settle(
          Object.assign(toRunResult('failed', context), {
            status: 'failed' as const,
            error: { kind: 'internal' as const, layer: 'runtime' as const, message: `runtime: the run stopped unexpectedly: ${(error as Error).message}`, retryable: false },
          }),
        );
      },
    });
  }

  /** Every event of the run goes to the log under the run's tenant (the request's until ingress has accepted it). */
  function logEvents(log: RunEventLog, entry: LiveRun) {
    const { actor, runId } = entry.handle;
    const tenantOf = () => {
      const { accepted, request } = actor.getSnapshot().context;
      return accepted.tenantId || String((request as { tenantId?: unknown } | undefined)?.tenantId ?? '');
    };
    entry.handle.subscribe((event) => {
      const { kind, data } = loggedFormOf(event);
      log.append({ tenantId: tenantOf(), runId }, kind, data);
    });
  }

  /** A finished run leaves `live`; its last saves are still awaited by `get` and `drain`. */
  function retire(runId: string, entry: LiveRun) {
    live.delete(runId);
    finishing.set(runId, entry);
    // The run is final: once it is saved nothing will replay its calls, so the journal forgets them.
    entry.saving = entry.saving.then(() => journal.release?.(runId)).catch((error: unknown) => warn(`store: the journal could not forget run ${runId}`, error));
    void entry.saving.then(() => {
      if (finishing.get(runId) === entry) finishing.delete(runId);
    });
  }

  function start(request: unknown, runId = options.idFor('run')): RunHandle {
    const input: RunInput = { runId, request, settings: options.settings };
    supervisor.send({ type: 'run.spawn', runId, input });
    return live.get(runId)!.handle;
  }

  /** Spawns a stored run again; XState starts the layer call its state was waiting for anew (effects carry idempotency keys). */
  function restore(stored: PersistedRun): RunHandle {
    const run = readableRun(stored);
    supervisor.send({ type: 'run.restore', runId: run.runId, snapshot: run.snapshot as never });
    return live.get(run.runId)!.handle;
  }

  /** The live run, restored from the store if this process does not hold it. */
  async function parked(runId: string, tenantId: string | undefined): Promise<LiveRun> {
    let entry = live.get(runId);
    if (!entry) {
      // Two approvals at once must not restore the run twice: they share one restore.
      let restoring = restorings.get(runId);
      if (!restoring) {
        restoring = (async () => {
          const stored = await runStore.load(runId);
          if (live.has(runId)) return live.get(runId);
          if (stored?.status !== 'awaiting_approval' || (tenantId !== undefined && stored.tenantId !== tenantId)) return undefined;
          return live.get(restore(stored).runId);
        })().finally(() => restorings.delete(runId));
        restorings.set(runId, restoring);
      }
      entry = await restoring;
    }
    const context = entry?.handle.actor.getSnapshot().context;
    if (!entry || !context || (tenantId !== undefined && context.accepted.tenantId !== tenantId)) throw await notAwaiting(runStore, runId, tenantId);
    return entry;
  }

  /** One review of a parked call; reviews of one run take turns, so each finds the call as the last one left it. */
  async function review(runId: string, callId: string, event: ReviewEvent, tenantId?: string): Promise<RunResult> {
    // Also here, not only at the runtime's door: reviews arrive from other processes through the inbox.
    checkReview(event.type === 'tool.approve' ? 'approve' : 'reject', event);
    const entry = await parked(runId, tenantId);
    const turn = entry.reviews.then(() => reviewNow(entry, runId, callId, event));
    entry.reviews = turn.catch(() => {});
    return turn;
  }

  async function reviewNow(entry: LiveRun, runId: string, callId: string, event: ReviewEvent): Promise<RunResult> {
    const snapshot = entry.handle.actor.getSnapshot();
    const status = statusOf(snapshot.value);
    const call = snapshot.context.calls[snapshot.context.cursor];
    if (status !== 'awaiting_approval' || call?.callId !== callId) {
      throw new RunchartError(
        'invalid-input',
        'runtime',
        `runtime: run "${runId}" has no call "${callId}" awaiting approval (${status === 'awaiting_approval' ? `the parked call is "${call?.callId}"` : `the run is ${status}`})`,
      );
    }
    if (event.type === 'tool.approve' && event.argsHash !== undefined && event.argsHash !== call.argsHash) {
      throw new RunchartError('invalid-input', 'runtime', `runtime: call "${callId}" has other arguments than the ones approved (argsHash differs)`);
    }
    const next = new Promise<RunResult>((resolve, reject) => entry.waiters.push({ resolve, reject }));
    entry.handle.actor.send(event);
    const result = await next;
    const refusal = entry.handle.actor.getSnapshot().context.review?.refusal;
    if (result.status === 'awaiting_approval' && refusal && result.toolCalls.at(-1)?.callId === callId) {
      throw new RunchartError(
        'invalid-input',
        'policy',
        `policy: ${event.principalId} may not review call "${callId}" of run "${runId}" (rule ${refusal.ruleId}: ${refusal.reason})`,
      );
    }
    return result;
  }

  const allSaves = () => Promise.all([...live.values(), ...finishing.values()].map((entry) => entry.saving));

  /** Stops a live run here without ending it (it stays as last saved) and forgets it; its waiting callers are told. */
  async function release(runId: string): Promise<void> {
    const entry = live.get(runId);
    if (!entry) return;
    live.delete(runId);
    supervisor.send({ type: 'run.release', runId });
    streams.end(runId);
    await entry.saving;
    const released = new RunchartError('cancelled', 'runtime', `runtime: run ${runId} was handed on to another process before it settled`);
    for (const waiter of entry.waiters.splice(0)) waiter.reject(released);
  }

  return {
    start,
    restore,
    release,
    /** The run's handle when this process holds it. */
    handleOf: (runId: string): RunHandle | undefined => live.get(runId)?.handle,
    /** True while the run is live here or finished here with its last saves still being written. */
    holds: (runId: string): boolean => live.has(runId) || finishing.has(runId),
    /** Resolves once the run's saves asked for so far are done. */
    saved: async (runId: string) => void (await (live.get(runId) ?? finishing.get(runId))?.saving),
    approve: (runId: string, callId: string, { principalId, tenantId, argsHash }: ReviewOptions) =>
      review(runId, callId, { type: 'tool.approve', callId, principalId, ...(argsHash ? { argsHash } : {}) }, tenantId),
    reject: (runId: string, callId: string, { principalId, tenantId, reason }: ReviewOptions & { reason?: string }) =>
      review(runId, callId, { type: 'tool.reject', callId, principalId, ...(reason ? { reason } : {}) }, tenantId),
    /** The run's latest result, live or from the run store. */
    async get(runId: string, { tenantId }: { tenantId?: string } = {}): Promise<RunResult | undefined> {
      await finishing.get(runId)?.saving;
      const entry = live.get(runId);
      if (entry) {
        const snapshot = entry.handle.actor.getSnapshot();
        if (tenantId === undefined || snapshot.context.accepted.tenantId === tenantId) return toRunResult(snapshot.value, snapshot.context);
        return undefined;
      }
      const stored = await runStore.load(runId);
      if (!stored || (tenantId !== undefined && stored.tenantId !== tenantId)) return undefined;
      const snapshot = readableRun(stored).snapshot as { value: unknown; context: RunContext };
      return toRunResult(snapshot.value, snapshot.context);
    },
    /** The tenant's runs, newest first (ties by run id, descending): those in `status`, after the cursor `after`, at most `limit`. */
    async list(filter: RunListFilter): Promise<RunSummary[]> {
      // Every listing is of one tenant: a filter without one is a slip, not a request for nothing (or for all).
      if (typeof filter?.tenantId !== 'string' || filter.tenantId === '') {
        throw new RunchartError('invalid-input', 'runtime', "runtime: list needs the tenant whose runs to list, as { tenantId: 'acme' }");
      }
      await allSaves();
      // A store that filters (PostgreSQL) is asked to; a store of the caller's own written to the earlier contract may still hand back whole runs.
      const listed = (await runStore.list(filter)).map(summaryOf);
      const { status, after, limit } = filter;
      const newestFirst = (a: RunSummary, b: RunSummary) => b.updatedAt - a.updatedAt || (a.runId < b.runId ? 1 : a.runId > b.runId ? -1 : 0);
      const page = listed
        .filter((run) => run.tenantId === filter.tenantId && (!status || status.includes(run.status)))
        .filter((run) => !after || run.updatedAt < after.updatedAt || (run.updatedAt === after.updatedAt && run.runId < after.runId))
        .sort(newestFirst);
      return limit === undefined ? page : page.slice(0, limit);
    },
    /** Resumes every non-final run from the store; one unreadable run does not keep the others from resuming. */
    async recover(): Promise<RunHandle[]> {
      const handles: RunHandle[] = [];
      for (const run of await runStore.listActive()) {
        if (live.has(run.runId)) continue;
        try {
          handles.push(restore(run));
        } catch (error) {
          warn(`store: run ${run.runId} was not resumed`, error);
        }
      }
      return handles;
    },
    /** Resolves when every save asked for so far is done. */
    saves: allSaves,
    /** Stops every run (each stays in the store as last saved) and tells its waiting callers. */
    async stopAll() {
      for (const entry of [...live.values(), ...finishing.values()]) {
        await entry.saving;
        const stopped = new RunchartError('cancelled', 'runtime', `runtime: the runtime closed before run ${entry.handle.runId} settled; it stays in the store and resumes with recover()`);
        for (const waiter of entry.waiters.splice(0)) waiter.reject(stopped);
      }
      supervisor.stop();
      finishing.clear();
      live.clear();
    },
  };
}

export type RunRegistry = ReturnType<typeof createRunRegistry>;
