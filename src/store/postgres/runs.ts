import { checked, RunchartError } from '../../errors.js';
import { isFinalStatus, PersistedRun, RunSummary, type RunListFilter, type RunStore } from '../contract.js';
import { fromJsonb, toJsonb, type Database } from './db.js';

export type { RunListFilter };

/** What asking for a run's lease answers. */
export type RunLease =
  | { status: 'acquired'; run: PersistedRun; until: number }
  | { status: 'held'; owner: string; until: number }
  | { status: 'finished'; run: RunSummary }
  | { status: 'missing' };

/** A worker's lease on a run it holds. */
export interface RunLeaseRequest {
  tenantId: string;
  runId: string;
  owner: string;
  leaseMs: number;
}

/** The lease operations a worker uses: a run is stepped only by the worker holding its lease. */
export interface RunLeases {
  /** Takes the run for `owner` when nobody holds it, its lease ran out, or `owner` holds it already. */
  acquire(request: RunLeaseRequest): Promise<RunLease>;
  /** Extends the owner's lease; false once it was lost (taken over, or the run finished). */
  renew(request: RunLeaseRequest): Promise<boolean>;
  /** Gives the run up (a worker shutting down), so another takes it at once rather than after the lease. */
  release(request: Omit<RunLeaseRequest, 'leaseMs'>): Promise<void>;
  /** Takes up to `limit` unfinished runs whose leases ran out (their workers died), oldest lapse first; two callers never get the same run. */
  takeOverExpired(request: {
    owner: string;
    leaseMs: number;
    limit: number;
    /**
     * Also take unfinished runs nobody holds whose last save is this old: a run handed back at a
     * worker's shutdown, submitted but never dispatched, or started by a process that died before
     * leasing it. `previousOwner` is null for those.
     */
    orphanedMs?: number;
  }): Promise<{ run: PersistedRun; previousOwner: string | null; until: number }[]>;
}

/** The PostgreSQL run store: the `RunStore` contract, tenant-scoped reads and listings, and leases. */
export interface PostgresRunStore extends RunStore {
  /** With `tenantId`, the run only when it is that tenant's. */
  load(runId: string, scope?: { tenantId: string }): Promise<PersistedRun | undefined>;
  list(filter: RunListFilter): Promise<RunSummary[]>;
  leases: RunLeases;
}

interface RunRow {
  run_id: string;
  tenant_id: string;
  principal_id: string;
  status: string;
  schema_version: number;
  snapshot: unknown;
  updated_at: number;
}

const columnsOf = (table: string) =>
  `${table}.run_id, ${table}.tenant_id, ${table}.principal_id, ${table}.status, ${table}.schema_version, ${table}.snapshot, ${table}.updated_at::float8 AS updated_at`;
const columns = columnsOf('runs');
const summaryColumns = 'run_id, tenant_id, principal_id, status, updated_at::float8 AS updated_at';
const active = `status IN ('running', 'awaiting_approval')`;
const final = `status IN ('completed', 'denied', 'failed', 'cancelled')`;
const leaseFor = `now() + $LEASE * interval '1 millisecond'`;

const toRun = (row: RunRow): PersistedRun =>
  checked(PersistedRun, { schemaVersion: row.schema_version, runId: row.run_id, tenantId: row.tenant_id, principalId: row.principal_id, status: row.status, updatedAt: row.updated_at, snapshot: fromJsonb(row.snapshot) }, 'store');
const toSummary = (row: Omit<RunRow, 'snapshot' | 'schema_version'>): RunSummary =>
  checked(RunSummary, { runId: row.run_id, tenantId: row.tenant_id, principalId: row.principal_id, status: row.status, updatedAt: row.updated_at }, 'store');
const epoch = (value: Date | null) => (value ? value.getTime() : 0);

/**
 * Runs in one table: the persisted snapshot as jsonb beside the columns listings and leases
 * need. A run saved before ingress accepted it has no tenant yet (`''`) and takes the tenant of
 * its next save; after that, a save under another tenant is refused. Saves from a process are refused while another owner holds a live lease on the run
 * (`owner` is this process's worker id, when it leases runs), so a worker that lost its lease
 * cannot write over the one that took the run over.
 * @example
 * const runStore = createPostgresRunStore(db, { owner: 'worker-1' });
 * const lease = await runStore.leases.acquire({ tenantId: 'acme', runId, owner: 'worker-1', leaseMs: 30_000 });
 */
export function createPostgresRunStore(db: Database, options: { owner?: string } = {}): PostgresRunStore {
  const runs = `${db.schema}.runs`;
  const owner = options.owner ?? null;
  const lease = (position: number) => leaseFor.replace('$LEASE', `$${position}`);

  async function explainRefusedSave(run: PersistedRun): Promise<void> {
    const [row] = await db.query<{ status: string; lease_owner: string | null; lease_expires_at: Date | null }>(
      `SELECT status, lease_owner, lease_expires_at FROM ${runs} WHERE tenant_id = $1 AND run_id = $2`,
      [run.tenantId, run.runId],
    );
    // A finished run stays finished: a late save of an earlier step is dropped.
    if (row && isFinalStatus(row.status)) return;
    if (row) {
      throw new RunchartError('internal', 'store', `store: run ${run.runId} is held by ${row.lease_owner} until ${row.lease_expires_at?.toISOString()}; this process's save of it was refused`);
    }
    throw new RunchartError('invalid-input', 'store', `store: run id ${run.runId} belongs to another tenant; run ids must be unique across tenants`);
  }

  /** One try at a lease; undefined when the run was let go between the two statements. */
  async function acquireOnce({ tenantId, runId, owner: holder, leaseMs }: RunLeaseRequest): Promise<RunLease | undefined> {
    const [taken] = await db.query<RunRow & { lease_expires_at: Date }>(
      `UPDATE ${runs} SET lease_owner = $3, lease_expires_at = ${lease(4)}
       WHERE tenant_id = $1 AND run_id = $2 AND ${active} AND (lease_owner IS NULL OR lease_expires_at <= now() OR lease_owner = $3)
       RETURNING ${columns}, lease_expires_at`,
      [tenantId, runId, holder, leaseMs],
    );
    if (taken) return { status: 'acquired', run: toRun(taken), until: epoch(taken.lease_expires_at) };
    const [row] = await db.query<RunRow & { lease_owner: string | null; lease_expires_at: Date | null; lapsed: boolean }>(
      `SELECT ${summaryColumns}, lease_owner, lease_expires_at, lease_expires_at <= now() AS lapsed FROM ${runs} WHERE tenant_id = $1 AND run_id = $2`,
      [tenantId, runId],
    );
    if (!row) return { status: 'missing' };
    if (isFinalStatus(row.status)) return { status: 'finished', run: toSummary(row) };
    if (!row.lease_owner || row.lapsed) return undefined;
    return { status: 'held', owner: row.lease_owner, until: epoch(row.lease_expires_at) };
  }

  return {
    async save(run) {
      // A step between two settled points may be lost with the database server (the run resumes from the one before); a parked or finished run is on disk before its result is released.
      const saved = await (run.status === 'running' ? db.relaxed : db.query)(
        `INSERT INTO ${runs} AS r (run_id, tenant_id, principal_id, status, schema_version, snapshot, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)
         ON CONFLICT (run_id) DO UPDATE SET
           tenant_id = EXCLUDED.tenant_id, principal_id = EXCLUDED.principal_id, status = EXCLUDED.status, schema_version = EXCLUDED.schema_version,
           snapshot = EXCLUDED.snapshot, updated_at = EXCLUDED.updated_at, saved_at = now(),
           lease_owner = CASE WHEN EXCLUDED.${final} THEN NULL ELSE r.lease_owner END,
           lease_expires_at = CASE WHEN EXCLUDED.${final} THEN NULL ELSE r.lease_expires_at END
         WHERE (r.tenant_id = EXCLUDED.tenant_id OR r.tenant_id = '')
           AND (r.${active} OR EXCLUDED.${final})
           AND (r.lease_owner IS NULL OR r.lease_expires_at <= now() OR r.lease_owner = $8)
         RETURNING 1`,
        [run.runId, run.tenantId, run.principalId, run.status, run.schemaVersion, toJsonb(run.snapshot), run.updatedAt, owner],
      );
      if (saved.length === 0) await explainRefusedSave(run);
    },
    async load(runId, scope) {
      const rows = scope
        ? await db.query<RunRow>(`SELECT ${columns} FROM ${runs} WHERE tenant_id = $1 AND run_id = $2`, [scope.tenantId, runId])
        : await db.query<RunRow>(`SELECT ${columns} FROM ${runs} WHERE run_id = $1`, [runId]);
      return rows[0] && toRun(rows[0]);
    },
    listActive: async () => (await db.query<RunRow>(`SELECT ${columns} FROM ${runs} WHERE ${active} ORDER BY updated_at, run_id`)).map(toRun),
    async list(filter) {
      const values: unknown[] = [filter.tenantId];
      const where = ['tenant_id = $1'];
      if (filter.status) where.push(`status = ANY($${values.push(filter.status)}::text[])`);
      if (filter.after) where.push(`(updated_at, run_id) < ($${values.push(filter.after.updatedAt)}, $${values.push(filter.after.runId)})`);
      const limit = filter.limit === undefined ? '' : ` LIMIT $${values.push(filter.limit)}`;
      const rows = await db.query<RunRow>(`SELECT ${summaryColumns} FROM ${runs} WHERE ${where.join(' AND ')} ORDER BY updated_at DESC, run_id DESC${limit}`, values);
      return rows.map(toSummary);
    },
    leases: {
      async acquire(request) {
        // Between the update and the look the holder may have let go: then it is asked again.
        for (let round = 0; round < 3; round++) {
          const answer = await acquireOnce(request);
          if (answer) return answer;
        }
        throw new RunchartError('internal', 'store', `store: the lease of run ${request.runId} changed hands three times while it was asked for; ask again`, { retryable: true });
      },
      async renew({ tenantId, runId, owner: holder, leaseMs }) {
        const renewed = await db.query(
          `UPDATE ${runs} SET lease_expires_at = ${lease(4)} WHERE tenant_id = $1 AND run_id = $2 AND lease_owner = $3 AND ${active} RETURNING 1`,
          [tenantId, runId, holder, leaseMs],
        );
        return renewed.length > 0;
      },
      async release({ tenantId, runId, owner: holder }) {
        await db.query(`UPDATE ${runs} SET lease_owner = NULL, lease_expires_at = NULL WHERE tenant_id = $1 AND run_id = $2 AND lease_owner = $3`, [tenantId, runId, holder]);
      },
      async takeOverExpired({ owner: holder, leaseMs, limit, orphanedMs }) {
        const orphaned = orphanedMs === undefined ? '' : ` OR (lease_owner IS NULL AND ${active} AND saved_at <= now() - $4 * interval '1 millisecond')`;
        // SKIP LOCKED: two workers sweeping at once split the lapsed runs between them.
        const rows = await db.query<RunRow & { previous_owner: string | null; lease_expires_at: Date }>(
          `WITH lapsed AS (
             SELECT run_id, lease_owner FROM ${runs}
             WHERE (lease_owner IS NOT NULL AND ${active} AND lease_expires_at <= now())${orphaned}
             ORDER BY coalesce(lease_expires_at, saved_at) LIMIT $3 FOR UPDATE SKIP LOCKED
           )
           UPDATE ${runs} AS r SET lease_owner = $1, lease_expires_at = ${lease(2)}
           FROM lapsed WHERE r.run_id = lapsed.run_id
           RETURNING ${columnsOf('r')}, lapsed.lease_owner AS previous_owner, r.lease_expires_at`,
          orphanedMs === undefined ? [holder, leaseMs, limit] : [holder, leaseMs, limit, orphanedMs],
        );
        return rows.map((row) => ({ run: toRun(row), previousOwner: row.previous_owner, until: epoch(row.lease_expires_at) }));
      },
    },
  };
}
