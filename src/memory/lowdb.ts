import MiniSearch from 'minisearch';
import type { JsonDocument, StoreDirectory } from '../store/directory.js';
import type { HistoryTurn, MemoryItem, MemoryLayer, MemoryRecord } from './contract.js';

interface StoredItem {
  key: string;
  principalId: string;
  sessionId: string | null;
  runId: string;
  input: string;
  output: string;
  createdAt: string;
}

/** The memory file: items by tenant, then by idempotency key. Every call names its tenant and touches only that subtree. */
export interface MemoryData {
  schemaVersion: 1;
  tenants: Record<string, { items: Record<string, StoredItem> }>;
}

/**
 * Memory in a lowdb JSON file (`memory.json` of the store directory): long-term items ranked
 * for the run's input with MiniSearch (BM25-style full-text search), the session's recent turns,
 * one item per idempotency key, tenants isolated inside the store.
 * @example
 * const memory = await createLowdbMemory(await openStoreDirectory('.runchart'));
 */
export async function createLowdbMemory(directory: StoreDirectory, options: { historyTurns?: number } = {}): Promise<MemoryLayer> {
  const document: JsonDocument<MemoryData> = await directory.open<MemoryData>('memory.json', () => ({ schemaVersion: 1, tenants: {} }));
  const historyTurns = options.historyTurns ?? 10;
  const indexes = new Map<string, MiniSearch<StoredItem>>();

  const newIndex = () =>
    new MiniSearch<StoredItem>({
      idField: 'key',
      fields: ['input', 'output'],
      storeFields: ['principalId'],
      searchOptions: { prefix: true, fuzzy: 0.2, combineWith: 'OR' },
    });
  /** The tenant's search index, built on first use from the file. */
  const indexFor = (tenantId: string) => {
    let index = indexes.get(tenantId);
    if (!index) {
      index = newIndex();
      index.addAll(Object.values(document.data.tenants[tenantId]?.items ?? {}));
      indexes.set(tenantId, index);
    }
    return index;
  };

  return {
    async recall(query) {
      const tenant = document.data.tenants[query.tenantId];
      if (!tenant) return { items: [], history: [] };
      const items: MemoryItem[] = query.query.trim()
        ? indexFor(query.tenantId)
            .search(query.query, { filter: (result) => result.principalId === query.principalId })
            .slice(0, query.limit)
            .map((result) => {
              const item = tenant.items[result.id as string]!;
              return { id: item.key, text: `${item.input} → ${item.output}`, score: result.score };
            })
        : [];
      const history: HistoryTurn[] = query.sessionId
        ? Object.values(tenant.items)
            .filter((item) => item.sessionId === query.sessionId && item.principalId === query.principalId)
            .sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0))
            .slice(-historyTurns)
            .flatMap((item) => [
              { role: 'user' as const, content: item.input },
              { role: 'assistant' as const, content: item.output },
            ])
        : [];
      return { items, history };
    },
    async remember(record: MemoryRecord, { idempotencyKey }) {
      if (document.data.tenants[record.tenantId]?.items[idempotencyKey]) return;
      const item: StoredItem = {
        key: idempotencyKey,
        principalId: record.principalId,
        sessionId: record.sessionId ?? null,
        runId: record.runId,
        input: record.input,
        output: record.output,
        createdAt: record.createdAt,
      };
      try {
        await document.update((data) => {
          (data.tenants[record.tenantId] ??= { items: {} }).items[idempotencyKey] = item;
        });
      } catch (error) {
        indexes.delete(record.tenantId); // rebuilt from the file, which the failed write left as it was
        throw error;
      }
      // Indexed once it is on disk; a recall that built the index meanwhile may have it already.
      const index = indexes.get(record.tenantId);
      if (index && !index.has(item.key)) index.add(item);
    },
  };
}
