import { checked } from '../errors.js';
import type { Database } from '../store/postgres/db.js';
import { HistoryTurn, MemoryItem, type MemoryLayer } from './contract.js';

/** Words of a query beyond this many are not searched for: a recall costs the same for any input. */
const MAX_QUERY_WORDS = 32;

/**
 * The words of `text` joined as alternatives for `websearch_to_tsquery`: an item shares any of
 * them to be found, and `ts_rank` puts those sharing more first. Only letters and digits are
 * kept, so nothing in the text is read as query syntax (quotes, `-`).
 */
export function anyOfWords(text: string): string {
  return (text.match(/[\p{L}\p{N}]+/gu) ?? []).slice(0, MAX_QUERY_WORDS).join(' or ');
}

/** PostgreSQL text cannot hold U+0000: it becomes U+FFFD in what memory keeps and searches. */
const storable = (text: string) => (text.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text);

/**
 * Memory in PostgreSQL: one row per idempotency key; recall ranks with full-text search (a
 * generated `tsvector` column under a GIN index, `websearch_to_tsquery`, `ts_rank`) and reads the
 * session's last turns from the (tenant, principal, session, created_at) index, so neither grows
 * with a tenant's history. Every statement names the tenant and the principal.
 * @example
 * const memory = createPostgresMemory(db, { historyTurns: 10 });
 */
export function createPostgresMemory(db: Database, options: { historyTurns?: number } = {}): MemoryLayer {
  const memory = `${db.schema}.memory`;
  const historyTurns = options.historyTurns ?? 10;
  return {
    async recall(query) {
      const words = anyOfWords(query.query);
      // The two questions are independent: asked at once, a recall costs one round trip, not two.
      const [items, turns] = await Promise.all([
        words && query.limit > 0
          ? db.query<{ id: string; text: string; score: number }>(
              `SELECT m.idempotency_key AS id, m.input || ' → ' || m.output AS text, ts_rank(m.search, q.query)::float8 AS score
               FROM ${memory} AS m, websearch_to_tsquery('english'::regconfig, $3) AS q(query)
               WHERE m.tenant_id = $1 AND m.principal_id = $2 AND m.search @@ q.query
               ORDER BY score DESC, m.created_at DESC
               LIMIT $4`,
              [query.tenantId, query.principalId, words, query.limit],
            )
          : [],
        query.sessionId && historyTurns > 0
          ? db.query<{ input: string; output: string }>(
              `SELECT input, output FROM (
                 SELECT input, output, created_at, idempotency_key FROM ${memory}
                 WHERE tenant_id = $1 AND principal_id = $2 AND session_id = $3
                 ORDER BY created_at DESC, idempotency_key DESC LIMIT $4
               ) AS last ORDER BY created_at, idempotency_key`,
              [query.tenantId, query.principalId, query.sessionId, historyTurns],
            )
          : [],
      ]);
      return {
        items: items.map((item) => checked(MemoryItem, item, 'memory')),
        history: turns.flatMap((turn) => [checked(HistoryTurn, { role: 'user', content: turn.input }, 'memory'), checked(HistoryTurn, { role: 'assistant', content: turn.output }, 'memory')]),
      };
    },
    async remember(record, { idempotencyKey }) {
      await db.query(
        `INSERT INTO ${memory} (tenant_id, idempotency_key, principal_id, session_id, run_id, input, output, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, idempotency_key) DO NOTHING`,
        [record.tenantId, idempotencyKey, record.principalId, record.sessionId ?? null, record.runId, storable(record.input), storable(record.output), record.createdAt],
      );
    },
  };
}
