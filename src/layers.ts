import { resolve } from 'node:path';
import type { BackgroundHandler, BackgroundQueue } from './background/contract.js';
import { createMemoryQueue, type QueuePersistence } from './background/queue.js';
import type { RunchartConfig } from './config.js';
import { RunchartError } from './errors.js';
import type { ExecutionJournal, JournalClaimRequest, JournalLease } from './execution/contract.js';
import type { PostgresStore } from './store/postgres/open.js';
import type { PostgresRunStore } from './store/postgres/runs.js';
import { createMemoryJournal } from './execution/gateway.js';
import type { MemoryLayer } from './memory/contract.js';
import { createInMemoryMemory } from './memory/in-memory.js';
import { createLowdbMemory } from './memory/lowdb.js';
import type { RunStore } from './store/contract.js';
import { openStoreDirectory, type StoreDirectory } from './store/directory.js';
import { createInMemoryRunStore } from './store/in-memory.js';
import { createFileJournal, createFileQueuePersistence, createFileRunStore } from './store/files.js';
import type { RunEventLog } from './runs/events.js';
import { createFileIdempotencyKeys, createInMemoryIdempotencyKeys, type IdempotencyKeys } from './runs/idempotency.js';

/** The stateful layers of a runtime, and what it takes to open and close them. */
export interface StatefulLayers {
  memory: MemoryLayer;
  runStore: RunStore;
  journal: ExecutionJournal;
  queue: BackgroundQueue & { close?(): void; resume?(): Promise<number> };
  /** Resolves once the store directory is open and locked (at once for in-memory stores). */
  ready(): Promise<void>;
  /** True when nothing needs opening, so a run can start synchronously. */
  isReady(): boolean;
  /** Resolves once the store's writes and compactions asked for so far are done. */
  settled(): Promise<void>;
  /** Closes what was opened; a PostgreSQL store's pool closes asynchronously (the promise never rejects). */
  close(): void | Promise<void>;
  /** Idempotency keys of started runs (`Idempotency-Key` on `POST /v1/runs`). */
  idempotencyKeys: IdempotencyKeys;
  /** With store kind postgres: the run event log every process shares (the file and memory stores keep one per process). */
  events?: RunEventLog;
  /** With store kind postgres: the opened store, for what a worker or dispatcher needs beyond the layers (leases, run jobs, LISTEN/NOTIFY). */
  postgres?: () => Promise<PostgresStore>;
}

export interface StatefulOptions {
  memory?: MemoryLayer;
  runStore?: RunStore;
  journal?: ExecutionJournal;
  background?: BackgroundQueue;
  hooks?: Record<string, BackgroundHandler>;
  /** An already open store directory, for callers that wrap some lowdb layers themselves. */
  storeDirectory?: StoreDirectory;
  now: () => number;
  warn: (message: string, error?: unknown) => void;
  /** Applied to what the lowdb journal, queue and memory keep: secrets never land on disk. */
  redact?: <T>(value: T) => T;
  /** With store kind postgres: this process's worker id, the owner of the run leases it takes. */
  owner?: string;
}

/** Calls `open` once, on first use, and hands out its result. */
function once<T>(open: () => Promise<T>): () => Promise<T> {
  let opened: Promise<T> | undefined;
  return () => (opened ??= open());
}

/**
 * Picks the stateful layers: the ones given, else lowdb files under `store.dir` (opened on first
 * use, so `createRuntime` stays synchronous and touches no disk until a run starts), else memory.
 */
export function composeStatefulLayers(config: RunchartConfig, options: StatefulOptions): StatefulLayers {
  if (config.store.kind === 'postgres') return composePostgresLayers(config, config.store, options);
  const durable = config.store.kind === 'lowdb';
  let opened: StoreDirectory | undefined;
  const directory = once(
    async () => (opened = options.storeDirectory ?? (await openStoreDirectory(resolve(config.store.dir), { onWarning: (message) => options.warn(message) }))),
  );

  const scrub = options.redact ?? (<T>(value: T) => value);
  const memory: MemoryLayer =
    options.memory ??
    (durable
      ? lazyMemory(once(async () => createLowdbMemory(await directory(), { historyTurns: config.memory.history_turns, keepLoadedTenants: config.memory.keep_loaded_tenants })), scrub)
      : createInMemoryMemory({ historyTurns: config.memory.history_turns }));
  const runStore: RunStore = options.runStore ?? (durable ? lazyRunStore(once(async () => createFileRunStore(await directory()))) : createInMemoryRunStore({ keepFinished: config.store.keep_finished_runs, keepSteps: false }));
  const journal: ExecutionJournal = options.journal ?? (durable ? lazyJournal(once(async () => createFileJournal(await directory())), scrub) : createMemoryJournal());
  const persistence = durable ? lazyPersistence(once(async () => createFileQueuePersistence(await directory())), scrub) : undefined;

  const queue =
    options.background ??
    createMemoryQueue({
      handlers: backgroundHandlers(memory, options),
      onGiveUp: (task, error) => options.warn(`background: task ${task.id} (${task.kind}) gave up`, error),
      ...(persistence ? { persistence } : {}),
    });

  const needsDirectory = durable && !(options.memory && options.runStore && options.journal && options.background);
  const keys = once(async () => createFileIdempotencyKeys(await directory()));
  return {
    memory,
    runStore,
    journal,
    queue,
    idempotencyKeys: durable ? { claim: async (...args) => (await keys()).claim(...args) } : createInMemoryIdempotencyKeys(),
    ready: async () => {
      if (needsDirectory) await directory();
    },
    isReady: () => !needsDirectory || opened !== undefined,
    settled: async () => void (await opened?.settled()),
    // A directory the caller handed over is closed too, even when no layer came to use it.
    close: () => (opened ?? options.storeDirectory)?.close(),
  };
}

/** What the background queue runs: the memory write-back, and the user's hooks as `hook:<name>`. */
function backgroundHandlers(memory: MemoryLayer, options: StatefulOptions): Record<string, BackgroundHandler> {
  return {
    'memory.write': async (task, { signal }) => {
      const payload = task.payload as { sessionId: string | null; input: string; output: string };
      await memory.remember(
        {
          tenantId: task.tenantId,
          principalId: task.principalId,
          ...(payload.sessionId ? { sessionId: payload.sessionId } : {}),
          runId: task.runId,
          input: payload.input,
          output: payload.output,
          createdAt: new Date(options.now()).toISOString(),
        },
        { idempotencyKey: task.id, signal },
      );
    },
    ...Object.fromEntries(Object.entries(options.hooks ?? {}).map(([name, hook]) => [`hook:${name}`, hook])),
  };
}

/**
 * The stateful layers on PostgreSQL: opened on first use (connect, migrate, start the queue's
 * worker), so `createRuntime` stays synchronous; the pg driver is loaded only then.
 */
function composePostgresLayers(config: RunchartConfig, store: { url: string; schema: string; max_connections: number }, options: StatefulOptions): StatefulLayers {
  let opened: PostgresStore | undefined;
  let closed = false;
  let opening: Promise<PostgresStore> | undefined;
  // Unlike a directory, a server may be back in a moment: a failed open is tried again on next use.
  const open = (): Promise<PostgresStore> => {
    if (!opening) {
      opening = connect();
      opening.catch(() => (opening = undefined));
    }
    return opening;
  };
  const connect = async () => {
    const { openPostgresStore } = await import('./store/postgres/open.js');
    const shared = await openPostgresStore({
      url: store.url,
      schema: store.schema,
      handlers: backgroundHandlers(memory, options),
      historyTurns: config.memory.history_turns,
      maxConnections: store.max_connections,
      ...(options.owner ? { owner: options.owner } : {}),
      queue: { onGiveUp: (task, error) => options.warn(`background: task ${task.id} (${task.kind}) gave up`, error) },
      onWarning: options.warn,
    });
    if (closed) {
      await shared.close();
      throw new RunchartError('cancelled', 'store', 'store: the runtime closed while its PostgreSQL store was opening');
    }
    return (opened = shared);
  };
  const scrub = options.redact ?? (<T>(value: T) => value);
  const memory: MemoryLayer = options.memory ?? lazyMemory(async () => (await open()).memory, scrub);
  const runStore: RunStore = options.runStore ?? lazyPostgresRunStore(async () => (await open()).runStore);
  const journal: ExecutionJournal = options.journal ?? lazyClaimingJournal(async () => (await open()).journal, scrub);
  const queue: StatefulLayers['queue'] = options.background ?? {
    enqueue: async (tasks, call) => (await open()).queue.enqueue(tasks.map(scrub), call),
    // Nothing was queued by a process that never opened the store.
    drain: async () => opened?.queue.drain(),
    close: () => void opened?.queue.close().catch((error: unknown) => options.warn('background: closing the PostgreSQL queue failed', error)),
    // The tasks wait in the database: opening starts this process's worker on them.
    resume: async () => (await open(), 0),
  };
  const needsOpen = !(options.memory && options.runStore && options.journal && options.background);
  return {
    memory,
    runStore,
    journal,
    queue,
    idempotencyKeys: { claim: async (...args) => (await open()).idempotencyKeys.claim(...args) },
    events: lazyEventLog(open),
    ready: async () => {
      if (needsOpen) await open();
    },
    isReady: () => !needsOpen || opened !== undefined,
    settled: async () => {},
    close: async () => {
      closed = true;
      await opened?.close().catch((error: unknown) => options.warn('store: closing the PostgreSQL store failed', error));
    },
    postgres: open,
  };
}

/** The shared event log, opened on first use; appends keep their order while it opens. */
function lazyEventLog(open: () => Promise<PostgresStore>): RunEventLog {
  let opened: RunEventLog | undefined;
  let queued: Promise<unknown> = Promise.resolve();
  return {
    append(scope, kind, data) {
      if (opened) return opened.append(scope, kind, data);
      queued = queued.then(async () => (opened = (await open()).events).append(scope, kind, data)).catch(() => {});
    },
    read: async (scope, after) => (await open()).events.read(scope, after),
    follow(scope, after, listener) {
      let stop: (() => void) | undefined;
      let stopped = false;
      void open().then((store) => {
        if (!stopped) stop = store.events.follow(scope, after, listener);
      }, () => {});
      return () => {
        stopped = true;
        stop?.();
      };
    },
    flush: async () => {
      await queued;
      await opened?.flush();
    },
    close: async () => {},
  };
}

function lazyMemory(open: () => Promise<MemoryLayer>, scrub: <T>(value: T) => T): MemoryLayer {
  return {
    recall: async (query, options) => (await open()).recall(query, options),
    remember: async (record, options) => (await open()).remember(scrub(record), options),
  };
}

function lazyRunStore(open: () => Promise<RunStore>): RunStore {
  const store = open;
  return {
    save: async (run) => (await store()).save(run),
    load: async (runId) => (await store()).load(runId),
    listActive: async () => (await store()).listActive(),
    list: async (filter) => (await store()).list(filter),
  };
}

function lazyJournal(open: () => Promise<ExecutionJournal>, scrub: <T>(value: T) => T): ExecutionJournal {
  return {
    get: async (key) => (await open()).get(key),
    put: async (entry) => (await open()).put(scrub(entry)),
    release: async (runId) => (await open()).release?.(runId),
  };
}

function lazyPostgresRunStore(open: () => Promise<PostgresRunStore>): PostgresRunStore {
  return {
    save: async (run) => (await open()).save(run),
    load: async (runId, scope) => (await open()).load(runId, scope),
    listActive: async () => (await open()).listActive(),
    list: async (filter) => (await open()).list(filter),
    leases: {
      acquire: async (request) => (await open()).leases.acquire(request),
      renew: async (request) => (await open()).leases.renew(request),
      release: async (request) => (await open()).leases.release(request),
      takeOverExpired: async (request) => (await open()).leases.takeOverExpired(request),
    },
  };
}

function lazyClaimingJournal(open: () => Promise<Required<ExecutionJournal>>, scrub: <T>(value: T) => T): ExecutionJournal {
  return Object.assign(lazyJournal(open, scrub), {
    claim: async (request: JournalClaimRequest) => (await open()).claim(request),
    renew: async (lease: JournalLease) => (await open()).renew(lease),
  });
}

function lazyPersistence(open: () => Promise<QueuePersistence>, scrub: <T>(value: T) => T): QueuePersistence {
  return {
    pending: async () => (await open()).pending(),
    known: async (id) => (await open()).known(id),
    save: async (task, state) => (await open()).save(scrub(task), state),
  };
}
