import type { RunResult } from '../../machines/run/result.js';
import { RunchartError } from '../errors.js';
import { isFinalStatus, type RunStore } from '../store/contract.js';
import { endsRun, type LoggedRunEvent, type RunEventLog, type RunScope } from './events.js';
import { reviewError, type RunHost } from './host.js';
import type { IdempotencyKeys } from './idempotency.js';
import { checkReview, notAwaiting, type ReviewOptions, type RunHandle, type RunRegistry } from './registry.js';

/** A run `submit` started, or the one an earlier submit with the same idempotency key started. */
export interface SubmittedRun {
  runId: string;
  /** True when the idempotency key was seen before: this is that first run, not a new one. */
  existing: boolean;
  /** The run's first settled result (parked for approval or finished), wherever it runs. */
  result(): Promise<RunResult>;
}

/** What the service calls need: the runs held here, the host of a shared store (if any), the event log. */
export interface RunServiceOptions {
  runs: RunRegistry;
  host: RunHost | undefined;
  events: RunEventLog | undefined;
  runStore: RunStore;
  idempotencyKeys: IdempotencyKeys;
  idFor: (kind: 'run') => string;
}

/**
 * The calls a service makes on runs, whichever process holds them: start (leased on a shared
 * store), submit once per idempotency key (dispatched to a worker on a shared store), approve and
 * reject (through the run's inbox when another process holds it), cancel, and follow its events.
 * On the file and in-memory stores every run is held here and each call goes straight to it.
 * @example
 * const service = createRunService({ runs, host: undefined, events, runStore, idempotencyKeys, idFor });
 * const { runId } = await service.submit(request, { idempotencyKey: 'order-17' });
 */
export function createRunService(options: RunServiceOptions) {
  const { runs, host, events, runStore, idempotencyKeys, idFor } = options;

  /** The run's stored form, for the caller's tenant only. */
  async function stored(runId: string, tenantId: string | undefined) {
    const run = await runStore.load(runId);
    return run && (tenantId === undefined || run.tenantId === tenantId) ? run : undefined;
  }

  const review = (event: Record<string, unknown>, tenantId: string | undefined) =>
    ({ principalId: event.principalId, ...(tenantId ? { tenantId } : {}), ...(event.argsHash ? { argsHash: event.argsHash } : {}), ...(event.reason ? { reason: event.reason } : {}) }) as ReviewOptions & { reason?: string };

  /** A review of a run held by another process: sent through its inbox; the worker's `review` event answers it. */
  async function reviewElsewhere(runId: string, tenantId: string | undefined, event: Record<string, unknown>): Promise<RunResult> {
    const run = await stored(runId, tenantId);
    if (run?.status !== 'awaiting_approval') throw await notAwaiting(runStore, runId, tenantId);
    const scope = { tenantId: run.tenantId, runId };
    // Nobody holds it: it is taken here and reviewed here.
    if (await host!.claim(scope)) return event.type === 'tool.approve' ? runs.approve(runId, event.callId as string, review(event, tenantId)) : runs.reject(runId, event.callId as string, review(event, tenantId));
    return new Promise<RunResult>((resolve, reject) => {
      let requestId: number | undefined;
      const early = new Map<number, { result?: RunResult; error?: { kind: string; layer: string; message: string } }>();
      const answer = (data: { result?: RunResult; error?: { kind: string; layer: string; message: string } }) => {
        stop();
        if (data.error) reject(reviewError(data.error));
        else resolve(data.result!);
      };
      const stop = events!.follow(scope, 0, (logged) => {
        if (logged.kind !== 'review') return;
        const data = logged.data as { requestId: number; result?: RunResult; error?: { kind: string; layer: string; message: string } };
        if (requestId === undefined) early.set(data.requestId, data);
        else if (data.requestId === requestId) answer(data);
      });
      host!.deliver(scope, event).then(
        (id) => {
          requestId = id;
          const seen = early.get(id);
          if (seen) answer(seen);
        },
        (error: unknown) => (stop(), reject(error)),
      );
    });
  }

  /** The run's first settled result: from its live handle, the store, or the event log (a run held elsewhere). */
  async function firstResult(scope: RunScope): Promise<RunResult> {
    const handle = runs.handleOf(scope.runId);
    if (handle) return handle.result;
    const current = await runs.get(scope.runId, { tenantId: scope.tenantId });
    if (current && current.status !== 'running') return current;
    if (!events) throw new RunchartError('internal', 'runtime', `runtime: run ${scope.runId} is not held by this process and no event log tells when it settles`);
    return new Promise<RunResult>((resolve) => {
      const stop = events.follow(scope, 0, (logged) => {
        if (logged.kind !== 'settled') return;
        stop();
        resolve(logged.data as RunResult);
      });
    });
  }

  function start(request: unknown, runId?: string): RunHandle {
    const handle = runs.start(request, runId);
    // Held here under a lease, so a worker takes it over should this process die.
    if (host) host.adopt({ tenantId: String((request as { tenantId?: unknown } | null)?.tenantId ?? ''), runId: handle.runId });
    return handle;
  }

  return {
    start: (request: unknown) => start(request),
    async approve(runId: string, callId: string, review: ReviewOptions): Promise<RunResult> {
      checkReview('approve', review);
      return host && !runs.handleOf(runId)
        ? reviewElsewhere(runId, review.tenantId, { type: 'tool.approve', callId, principalId: review.principalId, ...(review.argsHash ? { argsHash: review.argsHash } : {}) })
        : runs.approve(runId, callId, review);
    },
    async reject(runId: string, callId: string, review: ReviewOptions & { reason?: string }): Promise<RunResult> {
      checkReview('reject', review);
      return host && !runs.handleOf(runId)
        ? reviewElsewhere(runId, review.tenantId, { type: 'tool.reject', callId, principalId: review.principalId, ...(review.reason ? { reason: review.reason } : {}) })
        : runs.reject(runId, callId, review);
    },
    async submit(request: unknown, { idempotencyKey }: { idempotencyKey?: string } = {}): Promise<SubmittedRun> {
      const { tenantId, principalId } = (request ?? {}) as { tenantId?: unknown; principalId?: unknown };
      if (typeof tenantId !== 'string' || typeof principalId !== 'string') {
        throw new RunchartError('invalid-input', 'runtime', 'runtime: submit needs a request with "tenantId" and "principalId" strings');
      }
      let runId = idFor('run');
      if (idempotencyKey !== undefined) {
        const existing = await idempotencyKeys.claim(tenantId, idempotencyKey, runId);
        if (existing !== undefined) return { runId: existing, existing: true, result: () => firstResult({ tenantId, runId: existing }) };
      }
      if (host) await host.submit(runId, Object.assign({}, request, { tenantId, principalId }));
      else runId = start(request, runId).runId;
      return { runId, existing: false, result: () => firstResult({ tenantId, runId }) };
    },
    async cancel(runId: string, { tenantId, reason }: { tenantId?: string; reason?: string } = {}): Promise<void> {
      const handle = runs.handleOf(runId);
      const context = handle?.actor.getSnapshot().context;
      if (handle && (tenantId === undefined || context?.accepted.tenantId === tenantId || (context?.request as { tenantId?: unknown })?.tenantId === tenantId)) {
        return handle.cancel(reason);
      }
      const run = await stored(runId, tenantId);
      if (!run) throw new RunchartError('invalid-input', 'runtime', `runtime: no run "${runId}" to cancel`);
      if (isFinalStatus(run.status)) throw new RunchartError('invalid-input', 'runtime', `runtime: run "${runId}" is ${run.status}; there is nothing to cancel`);
      const scope = { tenantId: run.tenantId, runId };
      if (!host) runs.restore(run).cancel(reason);
      else if (await host.claim(scope)) runs.handleOf(runId)?.cancel(reason);
      else await host.deliver(scope, { type: 'run.cancel', ...(reason ? { reason } : {}) });
    },
    follow(runId: string, { tenantId, after = 0 }: { tenantId: string; after?: number }, listener: (event: LoggedRunEvent) => void): () => void {
      if (events) {
        // The log may replay synchronously, before `follow` returns a way to stop.
        let ended = false;
        let stop: (() => void) | undefined;
        stop = events.follow({ tenantId, runId }, after, (logged) => {
          if (ended) return;
          listener(logged);
          if (endsRun(logged)) (ended = true), stop?.();
        });
        if (ended) stop();
        return () => ((ended = true), stop?.());
      }
      // No log: the live run's events from now on, numbered from `after`.
      const handle = runs.handleOf(runId);
      if (!handle) return () => {};
      let id = after;
      return handle.subscribe((event) => {
        const logged = event.type === 'mark' ? { kind: event.mark.kind, data: event.mark } : event.type === 'delta' ? { kind: 'delta', data: { text: event.text } } : { kind: 'settled', data: event.result };
        listener({ id: ++id, ...logged });
      });
    },
  };
}
