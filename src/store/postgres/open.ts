import type { BackgroundHandler } from '../../background/contract.js';
import type { ExecutionJournal } from '../../execution/contract.js';
import type { MemoryLayer } from '../../memory/contract.js';
import { createPostgresMemory } from '../../memory/postgres.js';
import { openDatabase, type Database } from './db.js';
import type { RunEventLog } from '../../runs/events.js';
import type { IdempotencyKeys } from '../../runs/idempotency.js';
import { createPostgresEventLog, createPostgresIdempotencyKeys, createPostgresInbox, type PostgresInbox } from './events.js';
import { createPostgresJournal } from './journal.js';
import { migrate } from './migrations.js';
import { openPostgresQueue, type PostgresQueue, type PostgresQueueOptions } from './queue.js';
import { createPostgresRunStore, type PostgresRunStore } from './runs.js';

/** Options of `openPostgresStore`. */
export interface PostgresStoreOptions {
  url: string;
  schema: string;
  /** Background task handlers by kind, run by this process's queue worker. */
  handlers: Record<string, BackgroundHandler>;
  /** This process's worker id: its saves pass its own run leases. */
  owner?: string;
  historyTurns?: number;
  queue?: Omit<PostgresQueueOptions, 'handlers' | 'onWarning'>;
  maxConnections?: number;
  onWarning?: (message: string, error?: unknown) => void;
}

/** Every stateful layer on one PostgreSQL schema, and what a worker or dispatcher needs besides. */
export interface PostgresStore {
  db: Database;
  runStore: PostgresRunStore;
  journal: Required<ExecutionJournal>;
  memory: MemoryLayer;
  queue: PostgresQueue;
  /** Run events any server can follow, written by the process holding the run. */
  events: RunEventLog;
  /** Events for a run sent by any server to the process holding it. */
  inbox: PostgresInbox;
  idempotencyKeys: IdempotencyKeys;
  close(): Promise<void>;
}

/**
 * Connects, brings the schema up to date (see `migrate`) and opens every layer on it.
 * @example
 * const store = await openPostgresStore({ url: process.env.DATABASE_URL!, schema: 'runchart', handlers: {} });
 * await store.close();
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<PostgresStore> {
  const db = await openDatabase({
    url: options.url,
    schema: options.schema,
    ...(options.maxConnections ? { maxConnections: options.maxConnections } : {}),
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
  });
  try {
    await migrate(db);
    const queue = await openPostgresQueue(db, { handlers: options.handlers, ...options.queue, ...(options.onWarning ? { onWarning: options.onWarning } : {}) });
    const events = createPostgresEventLog(db, options.onWarning ? { onWarning: options.onWarning } : {});
    return {
      db,
      runStore: createPostgresRunStore(db, options.owner ? { owner: options.owner } : {}),
      journal: createPostgresJournal(db),
      memory: createPostgresMemory(db, options.historyTurns === undefined ? {} : { historyTurns: options.historyTurns }),
      queue,
      events,
      inbox: createPostgresInbox(db),
      idempotencyKeys: createPostgresIdempotencyKeys(db),
      async close() {
        await queue.close();
        await events.close();
        await db.close();
      },
    };
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }
}
