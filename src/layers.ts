import { resolve } from 'node:path';
import type { BackgroundHandler, BackgroundQueue } from './background/contract.js';
import { createMemoryQueue, type QueuePersistence } from './background/queue.js';
import type { RunchartConfig } from './config.js';
import type { ExecutionJournal } from './execution/contract.js';
import { createMemoryJournal } from './execution/gateway.js';
import type { MemoryLayer } from './memory/contract.js';
import { createInMemoryMemory } from './memory/in-memory.js';
import { createLowdbMemory } from './memory/lowdb.js';
import type { RunStore } from './store/contract.js';
import { openStoreDirectory, type StoreDirectory } from './store/directory.js';
import { createInMemoryRunStore } from './store/in-memory.js';
import { createFileJournal, createFileQueuePersistence, createFileRunStore } from './store/files.js';

/** The stateful layers of a runtime, and what it takes to open and close them. */
export interface StatefulLayers {
  memory: MemoryLayer;
  runStore: RunStore;
  journal: ExecutionJournal;
  queue: BackgroundQueue & { close?(): void; resume?(): Promise<number> };
  /** Resolves once the store directory is open and locked (at once for in-memory stores). */
  ready(): Promise<void>;
  /** True when runs are kept by the built-in in-memory store, which nothing outlives. */
  volatileRunStore: boolean;
  /** True when nothing needs opening, so a run can start synchronously. */
  isReady(): boolean;
  /** Resolves once the store's writes and compactions asked for so far are done. */
  settled(): Promise<void>;
  close(): void;
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
  const runStore: RunStore = options.runStore ?? (durable ? lazyRunStore(once(async () => createFileRunStore(await directory()))) : createInMemoryRunStore({ keepFinished: config.store.keep_finished_runs }));
  const journal: ExecutionJournal = options.journal ?? (durable ? lazyJournal(once(async () => createFileJournal(await directory())), scrub) : createMemoryJournal());
  const persistence = durable ? lazyPersistence(once(async () => createFileQueuePersistence(await directory())), scrub) : undefined;

  const queue =
    options.background ??
    createMemoryQueue({
      handlers: {
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
      },
      onGiveUp: (task, error) => options.warn(`background: task ${task.id} (${task.kind}) gave up`, error),
      ...(persistence ? { persistence } : {}),
    });

  const needsDirectory = durable && !(options.memory && options.runStore && options.journal && options.background);
  return {
    memory,
    runStore,
    journal,
    queue,
    ready: async () => {
      if (needsDirectory) await directory();
    },
    isReady: () => !needsDirectory || opened !== undefined,
    volatileRunStore: !options.runStore && !durable,
    settled: async () => void (await opened?.settled()),
    close: () => opened?.close(),
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

function lazyPersistence(open: () => Promise<QueuePersistence>, scrub: <T>(value: T) => T): QueuePersistence {
  return {
    pending: async () => (await open()).pending(),
    known: async (id) => (await open()).known(id),
    save: async (task, state) => (await open()).save(scrub(task), state),
  };
}
