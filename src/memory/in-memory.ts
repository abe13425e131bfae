import type { HistoryTurn, MemoryItem, MemoryLayer, MemoryRecord } from './contract.js';

const words = (text: string) => new Set(text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []);

/**
 * Memory in a Map, per tenant: recall ranks by shared words and returns the session's recent turns.
 * @example
 * const memory = createInMemoryMemory();
 */
export function createInMemoryMemory(options: { historyTurns?: number } = {}): MemoryLayer & { size(tenantId: string): number } {
  const byTenant = new Map<string, Map<string, MemoryRecord>>();
  const historyTurns = options.historyTurns ?? 10;
  return {
    size: (tenantId) => byTenant.get(tenantId)?.size ?? 0,
    async recall(query) {
      const records = [...(byTenant.get(query.tenantId)?.values() ?? [])].filter((record) => record.principalId === query.principalId);
      const wanted = words(query.query);
      const items: MemoryItem[] = records
        .map((record) => {
          const text = `${record.input} → ${record.output}`;
          const shared = [...words(text)].filter((word) => wanted.has(word)).length;
          return { id: record.runId, text, score: shared / (wanted.size || 1) };
        })
        .filter((item) => item.score > 0)
        .sort((a, b) => b.score - a.score)
        .slice(0, query.limit);
      const history: HistoryTurn[] = query.sessionId
        ? records
            .filter((record) => record.sessionId === query.sessionId)
            .sort((a, b) => (a.createdAt < b.createdAt ? -1 : 1))
            .slice(-historyTurns)
            .flatMap((record) => [
              { role: 'user' as const, content: record.input },
              { role: 'assistant' as const, content: record.output },
            ])
        : [];
      return { items, history };
    },
    async remember(record, { idempotencyKey }) {
      let records = byTenant.get(record.tenantId);
      if (!records) byTenant.set(record.tenantId, (records = new Map()));
      if (!records.has(idempotencyKey)) records.set(idempotencyKey, record);
    },
  };
}
