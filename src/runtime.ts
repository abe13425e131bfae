import { randomUUID } from 'node:crypto';
import { createActor, type InspectionEvent, type Observer } from 'xstate';
import { approvalDeadlineService } from '../actors/approval.actor.js';
import { backgroundService } from '../actors/background.actor.js';
import { executionService } from '../actors/execution.actor.js';
import { ingressService } from '../actors/ingress.actor.js';
import { layersActor, type LayerService, type LayerServices } from '../actors/layers.actor.js';
import { recallService } from '../actors/memory.actor.js';
import { modelService } from '../actors/model.actor.js';
import { policyService } from '../actors/policy.actor.js';
import { createMarkRouter, telemetryActor } from '../actors/telemetry.actor.js';
import { runMachine } from '../machines/run/machine.js';
import { statusOf, toRunResult, type RunResult } from '../machines/run/result.js';
import type { RunContext, RunInput } from '../machines/run/types.js';
import type { BackgroundHandler, BackgroundQueue } from './background/contract.js';
import type { Capability } from './catalog/contract.js';
import { createCatalog } from './catalog/registry.js';
import { parseConfig, settingsFrom, type RunchartConfig, type RunchartConfigInput } from './config.js';
import { RunchartError } from './errors.js';
import type { ExecutionGateway, ExecutionJournal } from './execution/contract.js';
import { createGateway } from './execution/gateway.js';
import type { MemoryLayer } from './memory/contract.js';
import type { ModelAdapter } from './models/contract.js';
import { demoModel } from './models/demo.js';
import type { PolicyLayer } from './policy/contract.js';
import { createRulesPolicy } from './policy/rules.js';
import { unreachableCapabilities } from './policy/reachability.js';
import { newTraceId } from './ingress/request.js';
import { composeStatefulLayers } from './layers.js';
import type { StoreDirectory } from './store/directory.js';
import { persistedSnapshotOf } from './store/snapshot.js';
import { createRedactor, createRunRedactor, type Redaction } from './redaction.js';
import { SCHEMA_VERSION, summaryOf, type PersistedRun, type RunStore, type RunSummary } from './store/contract.js';
import { readableRun } from './store/migrate.js';
import type { TelemetryLayer, TelemetryMark } from './telemetry/contract.js';
import { createTelemetry } from './telemetry/create.js';
import type { TelemetryTracer } from './telemetry/otel.js';
import type { EventLogger } from './telemetry/pino.js';

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
  /** An XState inspection observer (the Stately inspector, or a recorder). */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  clock?: { now(): number };
  idFor?: (kind: 'run' | 'trace') => string;
  /** Things the runtime closes with itself, such as the connections of `mcpCapabilities`. */
  resources?: readonly { close(): Promise<void> | void }[];
  /** Told about failures that never fail a run: telemetry, background give-ups, store writes. */
  onWarning?: (message: string, error?: unknown) => void;
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

/** What a run's subscribers receive. */
export type RunStreamEvent =
  | { type: 'mark'; mark: TelemetryMark }
  | { type: 'delta'; text: string }
  | { type: 'settled'; result: RunResult };

/** Who approves or rejects a parked call. */
export interface ReviewOptions {
  principalId: string;
  /** When given, the run must belong to this tenant (otherwise it is not found). */
  tenantId?: string;
  /** When given, the approval holds only for these exact arguments. */
  argsHash?: string;
}

export type RunActor = ReturnType<typeof createActor<typeof runMachine>>;

/** The runtime: starts runs, approves parked calls, resumes runs after a restart. */
export interface Runtime {
  readonly config: RunchartConfig;
  run(request: unknown): Promise<RunResult>;
  start(request: unknown): RunHandle;
  approve(runId: string, callId: string, options: ReviewOptions): Promise<RunResult>;
  reject(runId: string, callId: string, options: ReviewOptions & { reason?: string }): Promise<RunResult>;
  /** The run's latest result, live or from the run store. */
  get(runId: string, options?: { tenantId?: string }): Promise<RunResult | undefined>;
  /** The runs of one tenant in the run store, newest first. */
  list(filter: { tenantId: string }): Promise<RunSummary[]>;
  /** Resumes every non-final run from the run store; returns their handles. */
  recover(): Promise<RunHandle[]>;
  /** Resolves when background tasks and store writes are done. */
  drain(): Promise<void>;
  close(): Promise<void>;
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
  /** True while a restored run takes `run.resume`, a step that changes nothing worth saving or settling. */
  resuming: boolean;
  /** The last snapshot saved and its redaction: the next save redacts only what changed since. */
  saved: Redaction<unknown> | undefined;
}

/**
 * Composes the layers and returns a runtime. The only place that knows which implementation
 * backs each layer.
 * @example
 * const runtime = createRuntime({ model: scriptedModel([{ text: 'hi' }]), config: { runtime: { max_tool_hops: 2 } } });
 * const result = await runtime.run({ input: 'hello', tenantId: 'acme', principalId: 'user-7' });
 */
export function createRuntime(options: RuntimeOptions = {}): Runtime {
  const config = parseConfig(options.config ?? {});
  const settings = settingsFrom(config);
  const now = () => (options.clock ?? Date).now();
  const idFor = options.idFor ?? ((kind: 'run' | 'trace') => (kind === 'run' ? randomUUID() : newTraceId()));
  // Never silent by default: a corrupt file moved aside or a failed save is a process warning.
  const warn =
    options.onWarning ??
    ((message: string, error?: unknown) => process.emitWarning(error instanceof Error ? `${message}: ${error.message}` : message, { code: 'RUNCHART' }));
  const catalog = createCatalog(options.capabilities ?? []);
  const policy = options.policy ?? createRulesPolicy(config.policy.rules);
  // Only the built-in rules can be read ahead; a policy of the caller's own is theirs to know.
  if (!options.policy) for (const { message } of unreachableCapabilities(config.policy.rules, catalog.list().map((capability) => capability.name))) warn(message);
  const hooks = options.hooks ?? {};
  const layers = composeStatefulLayers(config, {
    redact: createRedactor(config.telemetry.redact_patterns),
    hooks,
    now,
    ...(options.memory ? { memory: options.memory } : {}),
    ...(options.runStore ? { runStore: options.runStore } : {}),
    ...(options.journal ? { journal: options.journal } : {}),
    ...(options.background ? { background: options.background } : {}),
    ...(options.storeDirectory ? { storeDirectory: options.storeDirectory } : {}),
    warn,
  });
  const { memory, runStore, journal, queue } = layers;
  const gateway =
    options.gateway ??
    createGateway({
      catalog,
      journal,
      maxArgumentChars: config.limits.max_tool_argument_chars,
      maxResultChars: config.limits.max_tool_result_chars,
      concurrency: config.execution.concurrency,
      now,
    });
  const redact = createRunRedactor(catalog, config.telemetry.redact_patterns);
  const hasSensitiveFields = catalog.list().some((capability) => capability.sensitive.length > 0);
  /** The default telemetry redacts secret patterns itself; a layer of the caller's own gets marks already redacted. */
  const selfRedacting = !options.telemetry || !('startRun' in options.telemetry);

  const marks = createMarkRouter();
  const machine = runMachine.provide({
    actors: {
      callLayers: layersActor(
        tracked({
          acceptRequest: ingressService({
            maxInputChars: config.limits.max_input_chars,
            requireTraceId: config.runtime.require_trace_id,
            catalog,
            policy,
            newTraceId: () => idFor('trace'),
            // The built-in rules decide the tool stage from tenant, principal and capability alone.
            ...(options.policy ? {} : { pinCache: new Map(), trustedPolicy: true }),
          }),
          // The built-in rules and gateway answer in their contract's shape by construction; what you provide is checked.
          evaluatePolicy: policyService(policy, { trusted: !options.policy }),
          recallMemory: recallService(memory),
          callModel: modelService(options.model ?? demoModel(), {
            deltasFor: (runId) => (listeners.get(runId)?.size ? (delta) => emit(runId, { type: 'delta', text: delta.text }) : undefined),
          }),
          executeTool: executionService(gateway, { now, deadlineMs: config.runtime.tool_deadline_ms, trusted: !options.gateway }),
          enqueueBackground: backgroundService(queue, Object.keys(hooks)),
          awaitApproval: approvalDeadlineService(journal, { now, timeoutMs: config.runtime.approval_timeout_ms }),
        }),
      ),
      recordTelemetry: telemetryActor(streamed(telemetryLayer()), { now, router: marks, onFailure: (error) => warn('telemetry failed; the run goes on', error) }),
    },
    actions: {
      mark: ({ context }, params: { mark: TelemetryMark }) => marks.deliver(context.runId, params.mark),
    },
  });

  /** Layer calls not settled yet: `close` lets them finish their writes before the stores close. */
  const calling = new Set<Promise<unknown>>();
  function tracked(services: LayerServices): LayerServices {
    const wrap =
      (service: LayerService<unknown, unknown>): LayerService<unknown, unknown> =>
      (input, options) => {
        const call = service(input, options);
        calling.add(call);
        const forget = () => void calling.delete(call);
        call.then(forget, forget);
        return call;
      };
    return Object.fromEntries(Object.entries(services).map(([name, service]) => [name, wrap(service as LayerService<unknown, unknown>)])) as unknown as LayerServices;
  }

  function telemetryLayer(): TelemetryLayer {
    const given = options.telemetry;
    if (given && 'startRun' in given) return given;
    return createTelemetry({
      config,
      ...(given?.tracer ? { tracer: given.tracer } : {}),
      ...(given?.logger ? { logger: given.logger } : {}),
      onError: (error) => warn('telemetry failed; the run goes on', error),
    });
  }

  const listeners = new Map<string, Set<(event: RunStreamEvent) => void>>();
  function emit(runId: string, event: RunStreamEvent) {
    for (const listener of listeners.get(runId) ?? []) {
      try {
        listener(event);
      } catch (error) {
        warn(`a listener of run ${runId} threw`, error);
      }
    }
  }
  /** Telemetry that also feeds the run's subscribers; they hear every mark even if the telemetry layer fails. */
  function streamed(layer: TelemetryLayer): TelemetryLayer {
    return {
      startRun(identity, at) {
        let inner: ReturnType<TelemetryLayer['startRun']> | undefined;
        try {
          inner = layer.startRun(identity, at);
        } catch (error) {
          warn('telemetry failed; the run goes on', error);
        }
        return {
          record(raw, markedAt) {
            // Sensitive argument fields and secret patterns never leave the run, content or not.
            // (The telemetry layers redact secret patterns themselves; what only the catalog knows, and
            // what a subscriber is sent, is redacted here.)
            const content = raw.kind === 'tool.start' || raw.kind === 'tool.call' || raw.kind === 'run.accepted' || raw.kind === 'model.step';
            const mark = content && (hasSensitiveFields || !selfRedacting || listeners.has(identity.runId)) ? redact(raw) : raw;
            if (listeners.has(identity.runId)) emit(identity.runId, { type: 'mark', mark });
            inner?.record(mark, markedAt);
          },
          end: (status, endedAt) => inner?.end(status, endedAt),
        };
      },
    };
  }

  const live = new Map<string, LiveRun>();
  const finishing = new Map<string, LiveRun>();
  const restorings = new Map<string, Promise<LiveRun | undefined>>();

  function persist(entry: LiveRun, snapshot: ReturnType<RunActor['getSnapshot']>): PersistedRun {
    const { context, value } = snapshot;
    return {
      schemaVersion: SCHEMA_VERSION,
      runId: context.runId,
      tenantId: context.accepted.tenantId,
      principalId: context.accepted.principalId,
      status: statusOf(value),
      updatedAt: now(),
      // Secrets never land in a store: sensitive arguments and secret patterns are redacted. The
      // built-in in-memory store keeps nothing beyond the process, so it is spared the walk, and a
      // finished run, only ever read there (`get`, listings), is kept as its value and context
      // (XState never mutates a context, so no copy either).
      snapshot: !layers.volatileRunStore
        ? redactSaved(entry, persistedSnapshotOf(snapshot))
        : snapshot.status === 'done'
          ? { status: snapshot.status, value, context }
          : persistedSnapshotOf(snapshot),
    };
  }

  /** A snapshot as the store gets it, redacted against the run's last save. */
  function redactSaved(entry: LiveRun, original: unknown): unknown {
    const redacted = redact(original, entry.saved);
    entry.saved = { original, redacted };
    return redacted;
  }

  /**
   * Saves the run's newest snapshot after every step. Latest wins: steps taken while a save is in
   * flight are saved once, as the newest snapshot (with a slow store, fewer writes; never an older state).
   */
  function scheduleSave(entry: LiveRun) {
    if (entry.flushing) return;
    entry.flushing = true;
    entry.saving = entry.saving.then(async () => {
      while (entry.dirty) {
        entry.dirty = false;
        const snapshot = entry.handle.actor.getSnapshot();
        try {
          await runStore.save(persist(entry, snapshot));
          // The newest state is on disk: an earlier failed save no longer leaves the store behind.
          entry.saveError = undefined;
        } catch (error) {
          entry.saveError ??= new RunchartError('internal', 'store', `store: run ${entry.handle.runId} could not be saved: ${(error as Error).message}`, { cause: error });
          warn(`store: saving run ${entry.handle.runId} failed`, error);
        }
      }
      entry.flushing = false;
    });
  }

  /** Watches one actor: saves after every step, settles waiters when the run finishes or parks. */
  function track(actor: RunActor, runId: string): RunHandle {
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
        subscribe: (listener) => {
          let set = listeners.get(runId);
          if (!set) listeners.set(runId, (set = new Set()));
          set.add(listener);
          return () => {
            set.delete(listener);
            if (set.size === 0 && listeners.get(runId) === set) listeners.delete(runId);
          };
        },
      },
      waiters,
      saving: Promise.resolve(),
      saveError: undefined,
      dirty: false,
      flushing: false,
      resuming: false,
      saved: undefined,
    };
    live.set(runId, entry);
    let lastStatus = '';
    const settle = (result: RunResult) => {
      const waiters = entry.waiters.splice(0);
      // Release results only once the step that produced them is saved: nothing is lost on failure.
      void entry.saving.then(() => {
        const failure = entry.saveError;
        for (const waiter of waiters) failure ? waiter.reject(failure) : waiter.resolve(result);
        if (!failure) emit(runId, { type: 'settled', result });
        if (result.status !== 'awaiting_approval' && result.status !== 'running') listeners.delete(runId);
      });
    };
    actor.subscribe({
      next: (snapshot) => {
        if (entry.resuming) return;
        const status = statusOf(snapshot.value);
        const arrived = status !== lastStatus || status === 'awaiting_approval';
        lastStatus = status;
        entry.dirty = true;
        // The built-in in-memory store outlives nothing, so only the points a caller can observe
        // there (parked, finished) are saved; every other store gets every step, for recovery.
        if (!layers.volatileRunStore || status !== 'running') scheduleSave(entry);
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
    return entry.handle;
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

  /**
   * Starts the actor once the stores are open; a store that cannot open fails the run's result. A
   * restored run is told to resume: its state's request was lost with the process that sent it.
   */
  function launch(handle: RunHandle, restored = false) {
    const go = () => {
      handle.actor.start();
      const run = live.get(handle.runId);
      if (!restored || !run) return;
      run.resuming = true;
      try {
        handle.actor.send({ type: 'run.resume' });
      } finally {
        run.resuming = false;
      }
    };
    if (layers.isReady()) return go();
    layers.ready().then(go, (error: unknown) => {
      const waiting = live.get(handle.runId);
      live.delete(handle.runId);
      for (const waiter of waiting?.waiters.splice(0) ?? []) waiter.reject(error);
    });
  }

  function start(request: unknown): RunHandle {
    const runId = idFor('run');
    const input: RunInput = { runId, request, settings };
    const actor = createActor(machine, { input, ...(options.inspect ? { inspect: options.inspect } : {}) });
    const handle = track(actor, runId);
    launch(handle);
    return handle;
  }

  function restore(stored: PersistedRun): RunHandle {
    const run = readableRun(stored);
    // The input is ignored on restore: the context comes from the snapshot.
    const actor = createActor(machine, {
      snapshot: run.snapshot as never,
      input: undefined as never,
      ...(options.inspect ? { inspect: options.inspect } : {}),
    }) as RunActor;
    const handle = track(actor, run.runId);
    launch(handle, true);
    return handle;
  }

  /** The live run, restored from the store if this process does not hold it. */
  async function liveRun(runId: string, tenantId: string | undefined): Promise<LiveRun> {
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
    if (!entry || !context || (tenantId !== undefined && context.accepted.tenantId !== tenantId)) {
      throw new RunchartError('invalid-input', 'runtime', `runtime: no run "${runId}" is waiting for approval`);
    }
    return entry;
  }

  async function review(runId: string, callId: string, event: RunEventOf<'tool.approve'> | RunEventOf<'tool.reject'>, tenantId?: string) {
    const entry = await liveRun(runId, tenantId);
    const snapshot = entry.handle.actor.getSnapshot();
    const status = statusOf(snapshot.value);
    const parked = snapshot.context.calls[snapshot.context.cursor];
    if (status !== 'awaiting_approval' || parked?.callId !== callId) {
      throw new RunchartError(
        'invalid-input',
        'runtime',
        `runtime: run "${runId}" has no call "${callId}" awaiting approval (${status === 'awaiting_approval' ? `the parked call is "${parked?.callId}"` : `the run is ${status}`})`,
      );
    }
    if (event.type === 'tool.approve' && event.argsHash !== undefined && event.argsHash !== parked.argsHash) {
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

  return {
    config,
    start,
    run: (request) => start(request).result,
    approve: (runId, callId, { principalId, tenantId, argsHash }) =>
      review(runId, callId, { type: 'tool.approve', callId, principalId, ...(argsHash ? { argsHash } : {}) }, tenantId),
    reject: (runId, callId, { principalId, tenantId, reason }) =>
      review(runId, callId, { type: 'tool.reject', callId, principalId, ...(reason ? { reason } : {}) }, tenantId),
    async get(runId, { tenantId } = {}) {
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
    async list({ tenantId }) {
      await Promise.all([...live.values(), ...finishing.values()].map((entry) => entry.saving));
      return (await runStore.list({ tenantId }))
        // A store of the caller's own written to the earlier contract may still hand back whole runs.
        .map(summaryOf)
        .sort((a, b) => b.updatedAt - a.updatedAt);
    },
    async recover() {
      await layers.ready();
      await queue.resume?.();
      const handles: RunHandle[] = [];
      for (const run of await runStore.listActive()) {
        if (live.has(run.runId)) continue;
        try {
          handles.push(restore(run));
        } catch (error) {
          // One unreadable run does not keep the others from resuming.
          warn(`store: run ${run.runId} was not resumed`, error);
        }
      }
      return handles;
    },
    async drain() {
      const saves = () => Promise.all([...live.values(), ...finishing.values()].map((entry) => entry.saving));
      await saves();
      await queue.drain();
      await saves();
    },
    async close() {
      // Background work gets the grace period; then its signals are aborted (the tasks stay queued on disk).
      await Promise.race([queue.drain(), new Promise((resolve) => setTimeout(resolve, config.http.shutdown_grace_ms).unref())]);
      for (const entry of [...live.values(), ...finishing.values()]) {
        await entry.saving;
        entry.handle.actor.stop();
        const stopped = new RunchartError('cancelled', 'runtime', `runtime: the runtime closed before run ${entry.handle.runId} settled; it stays in the store and resumes with recover()`);
        for (const waiter of entry.waiters.splice(0)) waiter.reject(stopped);
      }
      finishing.clear();
      live.clear();
      // The stopped runs' calls are aborted; what they were writing (an approval deadline, a journal entry) lands first.
      await Promise.race([Promise.allSettled([...calling]), new Promise((resolve) => setTimeout(resolve, config.http.shutdown_grace_ms).unref())]);
      queue.close?.();
      // A compaction still running would rewrite a file the next owner of the store may already be writing.
      await layers.settled();
      layers.close();
      for (const resource of options.resources ?? []) await resource.close();
    },
  };
}

type RunEventOf<Type extends string> = Extract<import('../machines/run/types.js').RunEvent, { type: Type }>;
