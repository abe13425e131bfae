import type { LoggedRunEvent, RunEventLog, RunScope } from '../../runs/events.js';
import type { IdempotencyKeys } from '../../runs/idempotency.js';
import { fromJsonb, toJsonb, type Database } from './db.js';

// Run events, the run inbox and idempotency keys on PostgreSQL. Events are written in batches
// by the process holding the run, one multi-row INSERT per flush, and a NOTIFY naming each run
// written to tells every other process to read what is new; an inbox event (approve, reject,
// cancel) is a row plus a NOTIFY that wakes the worker holding the run.

/** Options of `createPostgresEventLog`. */
export interface PostgresEventLogOptions {
  /** How long appended events wait to be written together. */
  batchMs?: number;
  /** How often followed runs are read even without a NOTIFY (default 2000). */
  pollMs?: number;
  onWarning?: (message: string, error?: unknown) => void;
}

interface Follower {
  scope: RunScope;
  last: number;
  listener: (event: LoggedRunEvent) => void;
  reading: Promise<void>;
}

/**
 * The run event log on PostgreSQL: any server follows a run that any worker holds.
 * @example
 * const log = createPostgresEventLog(db);
 * const stop = log.follow({ tenantId: 'acme', runId }, 0, (event) => console.log(event.kind));
 */
export function createPostgresEventLog(db: Database, options: PostgresEventLogOptions = {}): RunEventLog {
  const table = `${db.schema}.run_events`;
  const channel = `${db.schema}_events`;
  const warn = options.onWarning ?? (() => {});
  const batchMs = options.batchMs ?? 5;
  let pending: { scope: RunScope; kind: string; data: unknown }[] = [];
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();
  const followers = new Map<string, Set<Follower>>();
  let listening: Promise<() => Promise<void>> | undefined;
  // A NOTIFY is a wake-up, never the only copy: followed runs are also read every `pollMs`, so one missed while the LISTEN connection was down is caught up.
  let polling: NodeJS.Timeout | undefined;
  const poll = () => {
    for (const runId of followers.keys()) wake(runId);
  };

  async function write(batch: typeof pending) {
    if (batch.length === 0) return;
    const values: unknown[] = [];
    const rows = batch.map(({ scope, kind, data }) => `($${values.push(scope.tenantId)}, $${values.push(scope.runId)}, $${values.push(kind)}, $${values.push(toJsonb(data))}::jsonb)`);
    try {
      await db.relaxed(`INSERT INTO ${table} (tenant_id, run_id, kind, data) VALUES ${rows.join(', ')}`, values);
      const runs = [...new Set(batch.map(({ scope }) => scope.runId))];
      await db.relaxed(`SELECT pg_notify($1, run_id) FROM unnest($2::text[]) AS run_id`, [channel, runs]);
      for (const runId of runs) wake(runId);
    } catch (error) {
      warn(`store: ${batch.length} run events could not be written; listeners miss them`, error);
    }
  }

  function flushSoon() {
    timer = undefined;
    const batch = pending;
    pending = [];
    writing = writing.then(() => write(batch));
  }

  /** Reads what is new for the followers of `runId` in this process. */
  function wake(runId: string) {
    for (const follower of followers.get(runId) ?? []) {
      follower.reading = follower.reading.then(async () => {
        const events = await read(follower.scope, follower.last).catch((error: unknown) => (warn(`store: the events of run ${runId} could not be read`, error), []));
        for (const event of events) {
          if (event.id <= follower.last) continue;
          follower.last = event.id;
          follower.listener(event);
        }
      });
    }
  }

  async function read(scope: RunScope, after: number): Promise<LoggedRunEvent[]> {
    const rows = await db.query<{ id: string; kind: string; data: unknown }>(
      `SELECT id, kind, data FROM ${table} WHERE tenant_id = $1 AND run_id = $2 AND id > $3 ORDER BY id`,
      [scope.tenantId, scope.runId, after],
    );
    return rows.map((row) => ({ id: Number(row.id), kind: row.kind, data: fromJsonb(row.data) }));
  }

  return {
    append(scope, kind, data) {
      pending.push({ scope, kind, data });
      timer ??= setTimeout(flushSoon, batchMs);
    },
    read,
    follow(scope, after, listener) {
      const follower: Follower = { scope, last: after, listener, reading: Promise.resolve() };
      let set = followers.get(scope.runId);
      if (!set) followers.set(scope.runId, (set = new Set()));
      set.add(follower);
      listening ??= db.listen(channel, wake);
      polling ??= setInterval(poll, options.pollMs ?? 2_000).unref();
      // Listening first, then reading: nothing written between the two is missed.
      follower.reading = listening.then(
        () => undefined,
        (error: unknown) => warn('store: listening for run events failed; followers hear only what they read', error),
      );
      wake(scope.runId);
      return () => {
        set.delete(follower);
        if (set.size === 0 && followers.get(scope.runId) === set) followers.delete(scope.runId);
      };
    },
    async flush() {
      if (timer) {
        clearTimeout(timer);
        flushSoon();
      }
      await writing;
    },
    async close() {
      await this.flush();
      followers.clear();
      clearInterval(polling);
      const stop = await listening?.catch(() => undefined);
      await stop?.();
    },
  };
}

/** An event for a run, sent by any process to the one holding the run. */
export interface InboxEvent {
  id: number;
  event: Record<string, unknown>;
}

/**
 * The run inbox: `send` from any server, `take` by the worker holding the run (each event once,
 * oldest first), and a NOTIFY that tells every worker which run has mail.
 * @example
 * const inbox = createPostgresInbox(db);
 * const id = await inbox.send({ tenantId, runId }, { type: 'run.cancel' });
 */
export function createPostgresInbox(db: Database) {
  const table = `${db.schema}.run_inbox`;
  const channel = `${db.schema}_inbox`;
  return {
    async send(scope: RunScope, event: Record<string, unknown>): Promise<number> {
      const [row] = await db.query<{ id: string }>(`INSERT INTO ${table} (tenant_id, run_id, event) VALUES ($1, $2, $3::jsonb) RETURNING id`, [scope.tenantId, scope.runId, toJsonb(event)]);
      await db.notify(channel, scope.runId);
      return Number(row!.id);
    },
    async take(scope: RunScope): Promise<InboxEvent[]> {
      const rows = await db.query<{ id: string; event: unknown }>(`DELETE FROM ${table} WHERE tenant_id = $1 AND run_id = $2 RETURNING id, event`, [scope.tenantId, scope.runId]);
      return rows.map((row) => ({ id: Number(row.id), event: fromJsonb(row.event) as Record<string, unknown> })).sort((a, b) => a.id - b.id);
    },
    async has(scope: RunScope): Promise<boolean> {
      return (await db.query(`SELECT 1 FROM ${table} WHERE tenant_id = $1 AND run_id = $2 LIMIT 1`, [scope.tenantId, scope.runId])).length > 0;
    },
    /** Of these runs, the ones with mail waiting: the look that finds mail whose NOTIFY was missed. */
    async waiting(runIds: readonly string[]): Promise<string[]> {
      if (runIds.length === 0) return [];
      return (await db.query<{ run_id: string }>(`SELECT DISTINCT run_id FROM ${table} WHERE run_id = ANY($1::text[])`, [runIds])).map((row) => row.run_id);
    },
    /** Calls `onMail` with the run id of every event sent from now on, by any process. */
    listen: (onMail: (runId: string) => void) => db.listen(channel, onMail),
  };
}
export type PostgresInbox = ReturnType<typeof createPostgresInbox>;

/**
 * Idempotency keys in PostgreSQL: a unique `(tenant, key)`, so two servers given the same key at
 * once start one run.
 * @example
 * const existing = await createPostgresIdempotencyKeys(db).claim('acme', 'order-17', runId);
 */
export function createPostgresIdempotencyKeys(db: Database): IdempotencyKeys {
  const table = `${db.schema}.idempotency_keys`;
  return {
    async claim(tenantId, key, runId) {
      const inserted = await db.query(`INSERT INTO ${table} (tenant_id, key, run_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1`, [tenantId, key, runId]);
      if (inserted.length > 0) return undefined;
      const [row] = await db.query<{ run_id: string }>(`SELECT run_id FROM ${table} WHERE tenant_id = $1 AND key = $2`, [tenantId, key]);
      return row?.run_id;
    },
  };
}
