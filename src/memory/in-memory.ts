import type { HistoryTurn, MemoryItem, MemoryLayer, MemoryRecord } from './contract.js';
import { createRecallIndex, type RecallIndex, type RecallStats } from './recall-index.js';

/** One tenant's memory: its records by id (the order they came in), ids by idempotency key, the index. */
interface TenantMemory {
  records: MemoryRecord[];
  keys: Map<string, number>;
  index: RecallIndex;
}

/** The text recall matches and returns for a record. */
export const itemText = (record: { input: string; output: string }) => `${record.input} → ${record.output}`;

/**
 * Memory in Maps, per tenant: recall ranks from an index of terms (BM25, `recall-index.ts`) and
 * returns the session's recent turns, so its cost does not grow with the tenant's history.
 * `stats()` says what recalls have touched.
 * @example
 * const memory = createInMemoryMemory();
 */
export function createInMemoryMemory(options: { historyTurns?: number } = {}): MemoryLayer & { size(tenantId: string): number; stats(): RecallStats } {
  const byTenant = new Map<string, TenantMemory>();
  const historyTurns = options.historyTurns ?? 10;
  const totals: RecallStats = { recalls: 0, scored: 0, postingsRead: 0 };
  return {
    size: (tenantId) => byTenant.get(tenantId)?.records.length ?? 0,
    stats: () => ({ ...totals }),
    async recall(query) {
      const tenant = byTenant.get(query.tenantId);
      if (!tenant) {
        totals.recalls++;
        return { items: [], history: [] };
      }
      const items: MemoryItem[] = tenant.index.search(query.principalId, query.query, query.limit).map(({ id, score }) => ({
        id: tenant.records[id]!.runId,
        text: itemText(tenant.records[id]!),
        score,
      }));
      const history: HistoryTurn[] = query.sessionId
        ? tenant.index.history(query.principalId, query.sessionId).flatMap((id) => [
            { role: 'user' as const, content: tenant.records[id]!.input },
            { role: 'assistant' as const, content: tenant.records[id]!.output },
          ])
        : [];
      return { items, history };
    },
    async remember(record, { idempotencyKey }) {
      let tenant = byTenant.get(record.tenantId);
      if (!tenant) byTenant.set(record.tenantId, (tenant = { records: [], keys: new Map(), index: createRecallIndex({ historyTurns, stats: totals }) }));
      if (tenant.keys.has(idempotencyKey)) return;
      const id = tenant.records.length;
      tenant.records.push(record);
      tenant.keys.set(idempotencyKey, id);
      tenant.index.add({ id, principalId: record.principalId, sessionId: record.sessionId ?? null, createdAt: record.createdAt, text: `${record.input} ${record.output}` });
    },
  };
}
