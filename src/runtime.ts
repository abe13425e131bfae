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
import { parseConfig, settingsFrom, unknownOption, type RunchartConfig, type RunchartConfigInput } from './config.js';
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
import { createInMemoryEventLog, type LoggedRunEvent, type RunEventLog } from './runs/events.js';
import { createRunHost } from './runs/host.js';
import { createRunService, type SubmittedRun } from './runs/service.js';
import { createRunRegistry, type ReviewOptions, type RunActor, type RunHandle } from './runs/registry.js';
import { createRunStreams, type RunStreamEvent } from './runs/stream.js';
import type { StoreDirectory } from './store/directory.js';
import { type RunListFilter, type RunStore, type RunSummary } from './store/contract.js';
import { RunchartError } from './errors.js';
import type { TelemetryLayer, TelemetryMark } from './telemetry/contract.js';
import { createTelemetry } from './telemetry/create.js';
import type { TelemetryTracer } from './telemetry/otel.js';
import type { EventLogger } from './telemetry/pino.js';

export type { LoggedRunEvent, ReviewOptions, RunActor, RunHandle, RunListFilter, RunStreamEvent, SubmittedRun };

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
  /** With store kind postgres: runs resumed or cancelled through this runtime go to the workers rather than run here (`runchart serve --no-worker`). */
  acceptOnly?: boolean;
}

/** Every option `createRuntime` takes: a key outside it is a slip, reported rather than ignored. */
const runtimeOptionNames: Record<keyof RuntimeOptions, true> = {
  config: true,
  model: true,
  capabilities: true,
  policy: true,
  memory: true,
  runStore: true,
  gateway: true,
  journal: true,
  background: true,
  hooks: true,
  storeDirectory: true,
  telemetry: true,
  inspect: true,
  clock: true,
  idFor: true,
  resources: true,
  onWarning: true,
  eventLog: true,
  workerId: true,
  acceptOnly: true,
};

function checkOptionNames(options: object): void {
  for (const name of Object.keys(options)) {
    if (!Object.hasOwn(runtimeOptionNames, name)) throw new RunchartError('invalid-input', 'runtime', `createRuntime: ${unknownOption(name, Object.keys(runtimeOptionNames))}`);
  }
}

/** The runtime: starts runs, approves parked calls, resumes runs after a restart. */
export interface Runtime {
  readonly config: RunchartConfig;
  /** True when every run's events are logged with ids (`eventLog`, or a shared store): `follow` then replays a run from its start. */
  readonly logsEvents: boolean;
  /** Runs one request to its next settled result (completed, denied, failed, cancelled or awaiting approval). */
  run(request: unknown): Promise<RunResult>;
  /** Starts one request and returns its handle at once: the run's actor, its result, `cancel()` and `subscribe()`. */
  start(request: unknown): RunHandle;
  /**
   * Approves a parked call in the name of `options.principalId` (required: the approval stage is
   * asked about that reviewer and records them) and resolves with the run's next settled result;
   * rejects with a RunchartError when the reviewer is refused, the call is not the parked one or the
   * run has ended.
   */
  approve(runId: string, callId: string, options: ReviewOptions): Promise<RunResult>;
  /** Rejects a parked call in the name of `options.principalId` (required); the model is told why and the run goes on. */
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
  /**
   * Stops the runs held here (each stays resumable in the store), lets background work finish
   * within `http.shutdown_grace_ms` and closes the stores and `resources`. Asked again, it waits for
   * the first close; afterwards the runtime refuses to start or review runs.
   */
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
  checkOptionNames(options);
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
      // A call's claim lapses with its run's lease, so the worker that takes over a dead worker's
      // run can take over its calls too, well inside the call's deadline.
      owner: workerId,
      leaseMs: config.store.lease_ms,
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
      ...(options.acceptOnly ? { acceptOnly: true } : {}),
      redact: (value) => redact(value),
      now,
      warn,
    });
  }
  const stopWork = new Set<() => Promise<void>>();
  // What a service needs beyond a run: submit once per key, cancel, approve and follow from any process.
  const service = createRunService({ runs, host, events, runStore: layers.runStore, idempotencyKeys: layers.idempotencyKeys, idFor });
  let closing: Promise<void> | undefined;
  const closed = () => new RunchartError('invalid-input', 'runtime', 'runtime: this runtime is closed; create a new one with createRuntime to start or review runs');
  const whileOpen = <T>(call: () => Promise<T>): Promise<T> => (closing ? Promise.reject(closed()) : call());

  return {
    config,
    logsEvents: events !== undefined,
    start(request) {
      if (closing) throw closed();
      return service.start(request);
    },
    run: (request) => whileOpen(() => service.start(request).result),
    approve: (runId, callId, review) => whileOpen(() => service.approve(runId, callId, review)),
    reject: (runId, callId, review) => whileOpen(() => service.reject(runId, callId, review)),
    get: runs.get,
    list: runs.list,
    submit: (request, submitOptions) => whileOpen(() => service.submit(request, submitOptions)),
    cancel: service.cancel,
    follow: service.follow,
    work({ concurrency }) {
      if (closing) throw closed();
      if (!host) throw new RunchartError('invalid-input', 'runtime', 'runtime: only a runtime on store kind postgres works dispatched runs; set store.kind: postgres');
      const stop = host.work({ concurrency });
      stopWork.add(stop);
      return async () => {
        stopWork.delete(stop);
        await stop();
      };
    },
    async recover() {
      if (closing) throw closed();
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
    close() {
      // A second close waits for the first.
      closing ??= closeAll();
      return closing;
    },
  };

  async function closeAll() {
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
  }
}
