import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { assign, type InspectionEvent, type Observer } from 'xstate';
import { approvalActor } from '../actors/approval.actor.js';
import { backgroundActor } from '../actors/background.actor.js';
import { executionActor } from '../actors/execution.actor.js';
import { ingressActor } from '../actors/ingress.actor.js';
import { memoryActor } from '../actors/memory.actor.js';
import { modelActor } from '../actors/model.actor.js';
import { policyActor } from '../actors/policy.actor.js';
import { telemetryActor } from '../actors/telemetry.actor.js';
import { runMachine } from '../machines/run/machine.js';
import type { RunResult } from '../machines/run/result.js';
import type { BackgroundHandler, BackgroundQueue } from './background/contract.js';
import type { Capability } from './catalog/contract.js';
import { createCatalog } from './catalog/registry.js';
import { parseConfig, settingsFrom, type RunchartConfig, type RunchartConfigInput } from './config.js';
import type { ExecutionGateway, ExecutionJournal } from './execution/contract.js';
import { createGateway } from './execution/gateway.js';
import { newTraceId } from './ingress/request.js';
import { composeStatefulLayers } from './layers.js';
import type { MemoryLayer } from './memory/contract.js';
import type { ModelAdapter } from './models/contract.js';
import { demoModel } from './models/demo.js';
import type { PolicyLayer } from './policy/contract.js';
import { createRulesPolicy } from './policy/rules.js';
import { unreachableCapabilities } from './policy/reachability.js';
import { createRedactor, createRunRedactor } from './redaction.js';
import { createInMemoryEventLog, endsRun, type LoggedRunEvent, type RunEventLog, type RunScope } from './runs/events.js';
import { createRunHost, reviewError } from './runs/host.js';
import { createRunRegistry, type ReviewOptions, type RunActor, type RunHandle } from './runs/registry.js';
import { createRunStreams, type RunStreamEvent } from './runs/stream.js';
import type { StoreDirectory } from './store/directory.js';
import { isFinalStatus, type RunListFilter, type RunStore, type RunSummary } from './store/contract.js';
import { RunchartError } from './errors.js';
import type { TelemetryLayer, TelemetryMark } from './telemetry/contract.js';
import { createTelemetry } from './telemetry/create.js';
import type { TelemetryTracer } from './telemetry/otel.js';
import type { EventLogger } from './telemetry/pino.js';

export type { LoggedRunEvent, ReviewOptions, RunActor, RunHandle, RunListFilter, RunStreamEvent };

/** Everything `createRuntime` takes; every layer is optional and has a default. */
export interface RuntimeOptions {
  /** A parsed config or the same structure as a plain object; defaults follow DESIGN §5. */
  config?: RunchartConfig | RunchartConfigInput;
  /** Any `ModelAdapter`; without one, the offline demo model. */
  model?: ModelAdapter;
  capabilities?: readonly Capability[];
  policy?: PolicyLayer;
  memory?: MemoryLayer;
  runStore?: RunStore;
  gateway?: ExecutionGateway;
  journal?: ExecutionJournal;
  background?: BackgroundQueue;
  /** User hooks run after each completed turn, as background tasks behind policy stage `memory.write`. */
  hooks?: Record<string, BackgroundHandler>;
  /** An open lowdb store directory to use instead of opening `store.dir` (closed with the runtime). */
  storeDirectory?: StoreDirectory;
  /**
   * Your own telemetry layer, or the tracer and logger for the default one (OpenTelemetry spans,
   * pino events to the logger when `telemetry.emit_structured_events` is on). Default: the global OTel tracer and no events.
   */
  telemetry?: TelemetryLayer | { tracer?: TelemetryTracer; logger?: EventLogger };
  /** An XState inspection observer (the Stately inspector, or a recorder): it sees the runtime's actor, every run and every layer call. */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  clock?: { now(): number };
  idFor?: (kind: 'run' | 'trace') => string;
  /** Things the runtime closes with itself, such as the connections of `mcpCapabilities`. */
  resources?: readonly { close(): Promise<void> | void }[];
  /** Told about failures that never fail a run: telemetry, background give-ups, store writes. */
  onWarning?: (message: string, error?: unknown) => void;
  /**
   * Log every run's events with ids, so `follow` replays them and a stream resumes where it left
   * off (`runchart serve` turns it on). Always on with store kind postgres, where the log is shared.
   */
  eventLog?: boolean;
  /** With store kind postgres: this process's worker id, the owner of the run leases it takes (default host:pid:random). */
  workerId?: string;
}

/** A run `submit` started, or the one an earlier submit with the same idempotency key started. */
export interface SubmittedRun {
  runId: string;
  /** True when the idempotency key was seen before: this is that first run, not a new one. */
  existing: boolean;
  /** The run's first settled result (parked for approval or finished), wherever it runs. */
  result(): Promise<RunResult>;
}

/** The runtime: starts runs, approves parked calls, resumes runs after a restart. */
export interface Runtime {
  readonly config: RunchartConfig;
  /** True when every run's events are logged with ids (`eventLog`, or a shared store): `follow` then replays a run from its start. */
  readonly logsEvents: boolean;
  run(request: unknown): Promise<RunResult>;
  start(request: unknown): RunHandle;
  approve(runId: string, callId: string, options: ReviewOptions): Promise<RunResult>;
  reject(runId: string, callId: string, options: ReviewOptions & { reason?: string }): Promise<RunResult>;
  /** The run's latest result, live or from the run store. */
  get(runId: string, options?: { tenantId?: string }): Promise<RunResult | undefined>;
  /** The runs of one tenant in the run store, newest first (by status, a page after a cursor). */
  list(filter: RunListFilter): Promise<RunSummary[]>;
  /**
   * Starts a run for a service: once per idempotency key per tenant, and with store kind
   * postgres, dispatched to whichever worker takes it. Resolves once the run is stored (or found).
   */
  submit(request: unknown, options?: { idempotencyKey?: string }): Promise<SubmittedRun>;
  /** Asks a run to stop, wherever it runs; rejects when the run is not found or has finished. */
  cancel(runId: string, options?: { tenantId?: string; reason?: string }): Promise<void>;
  /**
   * Calls `listener` with the run's events after `after` (ids grow within a run; 0: from the
   * start), then each new one until the run ends; returns a way to stop. Without an event log only
   * a run live in this process is followed, from its next event.
   */
  follow(runId: string, options: { tenantId: string; after?: number }, listener: (event: LoggedRunEvent) => void): () => void;
  /** With store kind postgres: takes dispatched runs and runs whose worker died, `concurrency` at once; returns a way to stop. */
  work(options: { concurrency: number }): () => Promise<void>;
  /** Resumes every non-final run from the run store; returns their handles. */
  recover(): Promise<RunHandle[]>;
  /** Resolves when background tasks and store writes are done. */
  drain(): Promise<void>;
  close(): Promise<void>;
}

/** Marks that carry content (input, arguments, results, answers): redacted before any layer or listener sees them. */
const contentMarks = new Set<TelemetryMark['kind']>(['run.accepted', 'model.step', 'tool.start', 'tool.call']);

/**
 * Composes the layers and returns a runtime: picks an implementation per layer, provides each to
 * the run chart as the logic of the call that uses it, and starts runs. The only place that knows
 * which implementation backs each layer.
 * @example
 * const runtime = createRuntime({ model: scriptedModel([{ text: 'hi' }]), config: { runtime: { max_tool_hops: 2 } } });
 * const result = await runtime.run({ input: 'hello', tenantId: 'acme', principalId: 'user-7' });
 */
export function createRuntime(options: RuntimeOptions = {}): Runtime {
  const config = parseConfig(options.config ?? {});
  const now = () => (options.clock ?? Date).now();
  const idFor = options.idFor ?? ((kind: 'run' | 'trace') => (kind === 'run' ? randomUUID() : newTraceId()));
  const workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  // Never silent by default: a corrupt file moved aside or a failed save is a process warning.
  const warn =
    options.onWarning ??
    ((message: string, error?: unknown) => process.emitWarning(error instanceof Error ? `${message}: ${error.message}` : message, { code: 'RUNCHART' }));

  // The layers.
  const catalog = createCatalog(options.capabilities ?? []);
  const policy = options.policy ?? createRulesPolicy(config.policy.rules);
  // Only the built-in rules can be read ahead; a policy of the caller's own is theirs to know.
  if (!options.policy) for (const { message } of unreachableCapabilities(config.policy.rules, catalog.list().map((capability) => capability.name))) warn(message);
  if (config.execution.capability_modules.length > 0) warn('execution.capability_modules is read by the runchart CLI only; an embedded runtime takes createRuntime({ capabilities })');
  const hooks = options.hooks ?? {};
  const layers = composeStatefulLayers(config, {
    redact: createRedactor(config.telemetry.redact_patterns),
    hooks,
    now,
    warn,
    owner: workerId,
    ...(options.memory ? { memory: options.memory } : {}),
    ...(options.runStore ? { runStore: options.runStore } : {}),
    ...(options.journal ? { journal: options.journal } : {}),
    ...(options.background ? { background: options.background } : {}),
    ...(options.storeDirectory ? { storeDirectory: options.storeDirectory } : {}),
  });
  const gateway =
    options.gateway ??
    createGateway({
      catalog,
      journal: layers.journal,
      maxArgumentChars: config.limits.max_tool_argument_chars,
      maxResultChars: config.limits.max_tool_result_chars,
      concurrency: config.execution.concurrency,
      now,
    });
  const model = options.model ?? demoModel();
  const redact = createRunRedactor(catalog, config.telemetry.redact_patterns);
  const streams = createRunStreams(warn);
  const telemetry = streams.feeding(
    options.telemetry && 'startRun' in options.telemetry
      ? options.telemetry
      : createTelemetry({
          config,
          ...(options.telemetry?.tracer ? { tracer: options.telemetry.tracer } : {}),
          ...(options.telemetry?.logger ? { logger: options.telemetry.logger } : {}),
          onError: (error) => warn('telemetry failed; the run goes on', error),
        }),
    (mark) => (contentMarks.has(mark.kind) ? redact(mark) : mark),
    (error) => warn('telemetry failed; the run goes on', error),
  );

  // Layer calls not settled yet: `close` lets the ones it stopped finish their writes before the stores close.
  const calling = new Set<Promise<unknown>>();
  const track = (pending: Promise<unknown>) => {
    calling.add(pending);
    const forget = () => void calling.delete(pending);
    pending.then(forget, forget);
  };

  // Each layer becomes the logic of the calls the chart's states invoke.
  const machine = runMachine.provide({
    actors: {
      acceptRequest: ingressActor({
        maxInputChars: config.limits.max_input_chars,
        requireTraceId: config.runtime.require_trace_id,
        catalog,
        policy,
        newTraceId: () => idFor('trace'),
        // A request is accepted once the stores are open: a store that cannot open fails the run here.
        ready: layers.isReady() ? undefined : layers.ready,
        // The built-in rules decide the tool stage from tenant, principal and capability alone.
        ...(options.policy ? {} : { pinCache: new Map() }),
        track,
      }),
      evaluatePolicy: policyActor(policy, { track }),
      recallMemory: memoryActor(layers.memory, { track }),
      callModel: modelActor(model, {
        track,
        now,
        limits: { maxTextChars: config.limits.max_model_text_chars, maxArgumentChars: config.limits.max_tool_argument_chars },
        deltasFor: streams.deltasFor,
      }),
      awaitApproval: approvalActor(layers.journal, { track, now, timeoutMs: config.runtime.approval_timeout_ms }),
      executeTool: executionActor(gateway, { track, now, deadlineMs: config.runtime.tool_deadline_ms }),
      enqueueBackground: backgroundActor(layers.queue, Object.keys(hooks), { track, maxItemChars: config.memory.max_item_chars }),
      recordTelemetry: telemetryActor(telemetry, { now, onFailure: (error) => warn('telemetry failed; the run goes on', error) }),
    },
    actions: {
      // The chart has no clock: each model step's absolute deadline comes from the runtime's.
      startModelStep: assign({ modelDeadline: () => now() + config.runtime.model_deadline_ms }),
    },
  });

  // With a shared store, runs live under leases and events cross processes; otherwise this process holds them all.
  const events: RunEventLog | undefined = layers.events ?? (options.eventLog ? createInMemoryEventLog() : undefined);
  const settings = settingsFrom(config);
  let host: ReturnType<typeof createRunHost> | undefined;
  const runs = createRunRegistry({
    machine,
    settings,
    runStore: layers.runStore,
    journal: layers.journal,
    streams,
    idFor,
    now,
    redact,
    warn,
    ...(options.inspect ? { inspect: options.inspect } : {}),
    ...(events ? { events } : {}),
    onSettled: (runId, result) => host?.settled(runId, result),
  });
  if (layers.postgres && config.store.kind === 'postgres') {
    host = createRunHost({
      runs,
      store: layers.postgres,
      machine,
      settings,
      owner: workerId,
      leaseMs: config.store.lease_ms,
      redact: (value) => redact(value),
      now,
      warn,
    });
  }
  const stopWork = new Set<() => Promise<void>>();

  /** The run's stored form, for the caller's tenant only. */
  async function stored(runId: string, tenantId: string | undefined) {
    const run = await layers.runStore.load(runId);
    return run && (tenantId === undefined || run.tenantId === tenantId) ? run : undefined;
  }

  const review = (event: Record<string, unknown>, tenantId: string | undefined) =>
    ({ principalId: event.principalId, ...(tenantId ? { tenantId } : {}), ...(event.argsHash ? { argsHash: event.argsHash } : {}), ...(event.reason ? { reason: event.reason } : {}) }) as ReviewOptions & { reason?: string };

  /** A review of a run held by another process: sent through its inbox; the worker's `review` event answers it. */
  async function reviewElsewhere(runId: string, tenantId: string | undefined, event: Record<string, unknown>): Promise<RunResult> {
    const run = await stored(runId, tenantId);
    if (run?.status !== 'awaiting_approval') throw new RunchartError('invalid-input', 'runtime', `runtime: no run "${runId}" is waiting for approval`);
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
    config,
    logsEvents: events !== undefined,
    start: (request) => start(request),
    run: (request) => start(request).result,
    approve: (runId, callId, review) =>
      host && !runs.handleOf(runId)
        ? reviewElsewhere(runId, review.tenantId, { type: 'tool.approve', callId, principalId: review.principalId, ...(review.argsHash ? { argsHash: review.argsHash } : {}) })
        : runs.approve(runId, callId, review),
    reject: (runId, callId, review) =>
      host && !runs.handleOf(runId)
        ? reviewElsewhere(runId, review.tenantId, { type: 'tool.reject', callId, principalId: review.principalId, ...(review.reason ? { reason: review.reason } : {}) })
        : runs.reject(runId, callId, review),
    get: runs.get,
    list: runs.list,
    async submit(request, { idempotencyKey } = {}) {
      const { tenantId, principalId } = (request ?? {}) as { tenantId?: unknown; principalId?: unknown };
      if (typeof tenantId !== 'string' || typeof principalId !== 'string') {
        throw new RunchartError('invalid-input', 'runtime', 'runtime: submit needs a request with "tenantId" and "principalId" strings');
      }
      let runId = idFor('run');
      if (idempotencyKey !== undefined) {
        const existing = await layers.idempotencyKeys.claim(tenantId, idempotencyKey, runId);
        if (existing !== undefined) return { runId: existing, existing: true, result: () => firstResult({ tenantId, runId: existing }) };
      }
      if (host) await host.submit(runId, Object.assign({}, request, { tenantId, principalId }));
      else runId = start(request, runId).runId;
      return { runId, existing: false, result: () => firstResult({ tenantId, runId }) };
    },
    async cancel(runId, { tenantId, reason } = {}) {
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
    follow(runId, { tenantId, after = 0 }, listener) {
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
    work({ concurrency }) {
      if (!host) throw new RunchartError('invalid-input', 'runtime', 'runtime: only a runtime on store kind postgres works dispatched runs; set store.kind: postgres');
      const stop = host.work({ concurrency });
      stopWork.add(stop);
      return async () => {
        stopWork.delete(stop);
        await stop();
      };
    },
    async recover() {
      await layers.ready();
      await layers.queue.resume?.();
      // On a shared store: the runs nobody holds (their holders died or let them go).
      return host ? host.recover() : runs.recover();
    },
    async drain() {
      await runs.saves();
      await layers.queue.drain();
      await runs.saves();
    },
    async close() {
      const grace = () => new Promise((resolve) => setTimeout(resolve, config.http.shutdown_grace_ms).unref());
      // Background work gets the grace period; then its signals are aborted (the tasks stay queued on disk).
      await Promise.race([layers.queue.drain(), grace()]);
      for (const stop of [...stopWork]) await stop();
      await runs.stopAll();
      // Runs held here are handed back: released and dispatched, so another worker takes them at once.
      await host?.close();
      // The stopped runs' calls are aborted; what they were writing (an approval deadline, a journal entry) lands first.
      await Promise.race([Promise.allSettled([...calling]), grace()]);
      layers.queue.close?.();
      // A compaction still running would rewrite a file the next owner of the store may already be writing.
      await layers.settled();
      await layers.close();
      for (const resource of options.resources ?? []) await resource.close();
    },
  };
}
