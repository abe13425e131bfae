import { checked, RunchartError } from '../../errors.js';
import { JournalClaim, JournalEntry, type ExecutionJournal } from '../../execution/contract.js';
import { runOfEntry } from '../../execution/journal-entries.js';
import { fromJsonb, toJsonb, type Database } from './db.js';

interface EntryRow {
  key: string;
  run_id: string | null;
  state: string;
  result: unknown;
  attempts: number;
  deadline: number | null;
  updated_at: number;
}

interface ClaimRow {
  state: string;
  result: unknown;
  attempts: number;
  deadline: number | null;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  retry_in_ms: number | null;
}

const toEntry = (row: EntryRow): JournalEntry =>
  checked(
    JournalEntry,
    {
      key: row.key,
      ...(row.run_id === null ? {} : { runId: row.run_id }),
      state: row.state,
      ...(row.result === null ? {} : { result: fromJsonb(row.result) }),
      attempts: row.attempts,
      ...(row.deadline === null ? {} : { deadline: row.deadline }),
      updatedAt: row.updated_at,
    },
    'execution',
  );

/**
 * The execution journal in one table, one row per idempotency key, shared by every process on
 * the database. `claim` takes a key in one statement: the row is inserted, or the existing one
 * is updated only when its call is unfinished and its lease free or run out, and the row as it
 * stands afterwards says who owns the call. A claim that is granted also records the start of
 * the attempt it allows (one statement before the call, not two). A completed entry is final:
 * later puts leave it.
 * @example
 * const journal = createPostgresJournal(db);
 * const claim = await journal.claim({ key: 'run-1:c0.0', tenantId: 'acme', runId: 'run-1', deadline, owner, leaseMs: 30_000 });
 */
export function createPostgresJournal(db: Database): Required<ExecutionJournal> {
  const journal = `${db.schema}.journal`;
  return {
    async get(key) {
      const [row] = await db.query<EntryRow>(
        `SELECT key, run_id, state, result, attempts, deadline::float8 AS deadline, updated_at::float8 AS updated_at FROM ${journal} WHERE key = $1`,
        [key],
      );
      return row && toEntry(row);
    },
    async put(entry) {
      await db.query(
        `INSERT INTO ${journal} AS j (key, run_id, released_with, state, result, attempts, deadline, updated_at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)
         ON CONFLICT (key) DO UPDATE SET
           run_id = EXCLUDED.run_id, released_with = EXCLUDED.released_with, state = EXCLUDED.state, result = EXCLUDED.result,
           attempts = EXCLUDED.attempts, deadline = EXCLUDED.deadline, updated_at = EXCLUDED.updated_at,
           lease_owner = CASE WHEN EXCLUDED.state = 'completed' THEN NULL ELSE j.lease_owner END,
           lease_expires_at = CASE WHEN EXCLUDED.state = 'completed' THEN NULL ELSE j.lease_expires_at END
         WHERE j.state = 'started'`,
        [entry.key, entry.runId ?? null, runOfEntry(entry), entry.state, entry.result === undefined ? null : toJsonb(entry.result), entry.attempts, entry.deadline ?? null, entry.updatedAt],
      );
    },
    async release(runId) {
      await db.query(`DELETE FROM ${journal} WHERE released_with = $1`, [runId]);
    },
    async claim(request) {
      // Claimable: unfinished, and nobody holds it, or its lease ran out, or the asker holds it already.
      const claimable = `j.state = 'started' AND (j.lease_owner IS NULL OR j.lease_expires_at <= now() OR j.lease_owner = EXCLUDED.lease_owner)`;
      // Every conflict updates the row (to itself when it is not claimable), so RETURNING always
      // shows the row as it stands after this statement, also when another claimant's insert won
      // the race a moment before: no second statement, and no snapshot that could miss that row.
      const [row] = await db.query<ClaimRow>(
        `INSERT INTO ${journal} AS j (key, tenant_id, run_id, released_with, state, attempts, deadline, updated_at, lease_owner, lease_expires_at)
         VALUES ($1, $2, $3, $3, 'started', 1, $4, $5, $6, now() + $7 * interval '1 millisecond')
         ON CONFLICT (key) DO UPDATE SET
           tenant_id = EXCLUDED.tenant_id,
           deadline = COALESCE(j.deadline, EXCLUDED.deadline),
           attempts = CASE WHEN ${claimable} THEN j.attempts + 1 ELSE j.attempts END,
           updated_at = CASE WHEN ${claimable} THEN EXCLUDED.updated_at ELSE j.updated_at END,
           lease_owner = CASE WHEN ${claimable} THEN EXCLUDED.lease_owner ELSE j.lease_owner END,
           lease_expires_at = CASE WHEN ${claimable} THEN EXCLUDED.lease_expires_at ELSE j.lease_expires_at END
         WHERE j.tenant_id IS NULL OR j.tenant_id = EXCLUDED.tenant_id
         RETURNING j.state, j.result, j.attempts, j.deadline::float8 AS deadline, j.lease_owner, j.lease_expires_at,
           GREATEST(0, EXTRACT(EPOCH FROM (j.lease_expires_at - now())) * 1000)::float8 AS retry_in_ms`,
        [request.key, request.tenantId, request.runId, request.deadline, Date.now(), request.owner, request.leaseMs],
      );
      if (!row) throw new RunchartError('invalid-input', 'execution', `execution: idempotency key ${request.key} belongs to another tenant; keys must be unique across tenants`);
      const until = row.lease_expires_at?.getTime() ?? 0;
      const claim =
        row.state === 'completed'
          ? { status: 'completed', result: fromJsonb(row.result), attempts: row.attempts }
          : row.lease_owner === request.owner
            ? { status: 'claimed', attempts: row.attempts - 1, deadline: row.deadline ?? request.deadline, until, started: true }
            : { status: 'held', owner: row.lease_owner, until, retryInMs: row.retry_in_ms ?? 0 };
      return checked(JournalClaim, claim, 'execution');
    },
    async renew(lease) {
      const renewed = await db.query(
        `UPDATE ${journal} SET lease_expires_at = now() + $4 * interval '1 millisecond'
         WHERE key = $1 AND tenant_id = $2 AND lease_owner = $3 AND state = 'started' RETURNING 1`,
        [lease.key, lease.tenantId, lease.owner, lease.leaseMs],
      );
      return renewed.length > 0;
    },
  };
}
