import { RunchartError } from '../../errors.js';
import type { Database } from './db.js';

/** One step of the schema: applied once, in order, and recorded in `migrations`. */
export interface Migration {
  version: number;
  name: string;
  /** The statements, with `{schema}` standing for the schema's name. */
  sql: string;
}

const activeStatuses = `('running', 'awaiting_approval')`;

/** The schema this build needs, oldest first. A released migration is never edited: a change adds one. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, journal and memory',
    sql: `
      CREATE TABLE {schema}.runs (
        run_id text PRIMARY KEY,
        tenant_id text NOT NULL,
        principal_id text NOT NULL,
        status text NOT NULL CHECK (status IN ('running', 'awaiting_approval', 'completed', 'denied', 'failed', 'cancelled')),
        schema_version integer NOT NULL,
        snapshot jsonb NOT NULL,
        -- the run's own clock (PersistedRun.updatedAt, epoch ms); created_at and saved_at are the database's
        updated_at bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        saved_at timestamptz NOT NULL DEFAULT now(),
        lease_owner text,
        lease_expires_at timestamptz
      );
      CREATE INDEX runs_by_tenant ON {schema}.runs (tenant_id, updated_at DESC, run_id DESC);
      CREATE INDEX runs_by_tenant_status ON {schema}.runs (tenant_id, status, updated_at DESC, run_id DESC);
      CREATE INDEX runs_active ON {schema}.runs (updated_at) WHERE status IN ${activeStatuses};
      CREATE INDEX runs_leases ON {schema}.runs (lease_expires_at) WHERE lease_owner IS NOT NULL AND status IN ${activeStatuses};

      CREATE TABLE {schema}.journal (
        key text PRIMARY KEY,
        -- set by a claim; entries put without one (approval deadlines) have none
        tenant_id text,
        -- the run as the entry names it (entries of earlier versions name none) and the run whose release removes it
        run_id text,
        released_with text NOT NULL,
        state text NOT NULL CHECK (state IN ('started', 'completed')),
        result jsonb,
        attempts integer NOT NULL,
        deadline bigint,
        updated_at bigint NOT NULL,
        lease_owner text,
        lease_expires_at timestamptz
      );
      CREATE INDEX journal_by_run ON {schema}.journal (released_with);

      CREATE TABLE {schema}.memory (
        tenant_id text NOT NULL,
        idempotency_key text NOT NULL,
        principal_id text NOT NULL,
        session_id text,
        run_id text NOT NULL,
        input text NOT NULL,
        output text NOT NULL,
        created_at timestamptz NOT NULL,
        search tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, input || ' ' || output)) STORED,
        PRIMARY KEY (tenant_id, idempotency_key)
      );
      CREATE INDEX memory_search ON {schema}.memory USING gin (search);
      CREATE INDEX memory_history ON {schema}.memory (tenant_id, principal_id, session_id, created_at);
    `,
  },
  {
    version: 2,
    name: 'run events, run inbox and idempotency keys',
    sql: `
      -- what a run's listeners hear, in order: written by the worker holding the run, read by any server
      CREATE TABLE {schema}.run_events (
        id bigserial PRIMARY KEY,
        tenant_id text NOT NULL,
        run_id text NOT NULL,
        kind text NOT NULL,
        data jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX run_events_by_run ON {schema}.run_events (run_id, id);

      -- events for a run (approve, reject, cancel) sent by any server, taken by the worker that holds it
      CREATE TABLE {schema}.run_inbox (
        id bigserial PRIMARY KEY,
        tenant_id text NOT NULL,
        run_id text NOT NULL,
        event jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX run_inbox_by_run ON {schema}.run_inbox (run_id, id);

      -- an Idempotency-Key of POST /v1/runs and the run it started
      CREATE TABLE {schema}.idempotency_keys (
        tenant_id text NOT NULL,
        key text NOT NULL,
        run_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, key)
      );
    `,
  },
];

/** The transaction-scoped advisory lock every runchart process takes before it touches a schema. */
const LOCK_CLASS = 0x52434854; // "RCHT"

/**
 * Brings the schema up to date: in one transaction under an advisory lock (two processes that
 * start at once wait for each other; the second finds nothing left to do), creates the schema
 * and the migrations table if needed, applies the migrations not yet recorded, and records
 * them. A schema newer than this build is refused, so an old process never writes to it.
 * @example
 * const applied = await migrate(db); // [1] on a new schema, [] after
 */
export async function migrate(db: Database, list: readonly Migration[] = migrations): Promise<number[]> {
  const schema = db.schema;
  return db.transaction(async (query) => {
    await query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_CLASS, schema]);
    await query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await query(`CREATE TABLE IF NOT EXISTS ${schema}.migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await query<{ version: number }>(`SELECT version FROM ${schema}.migrations`)).map((row) => row.version));
    const known = Math.max(0, ...list.map((migration) => migration.version));
    const newest = Math.max(0, ...done);
    if (newest > known) {
      throw new RunchartError(
        'invalid-input',
        'store',
        `store: schema ${schema} at ${db.where} is at migration ${newest}, newer than this build knows (${known}); upgrade runchart on this machine`,
      );
    }
    const applied: number[] = [];
    for (const migration of [...list].sort((a, b) => a.version - b.version)) {
      if (done.has(migration.version)) continue;
      await query(migration.sql.replaceAll('{schema}', schema));
      await query(`INSERT INTO ${schema}.migrations (version, name) VALUES ($1, $2)`, [migration.version, migration.name]);
      applied.push(migration.version);
    }
    return applied;
  });
}
