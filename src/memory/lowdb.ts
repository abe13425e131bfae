import { createHash } from 'node:crypto';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import MiniSearch from 'minisearch';
import { RunchartError } from '../errors.js';
import { readFormerDocument, removeFormerDocument, type JsonDocument, type StoreDirectory } from '../store/directory.js';
import type { HistoryTurn, MemoryItem, MemoryLayer, MemoryRecord, RecallQuery, RecallResult } from './contract.js';

interface StoredItem {
  key: string;
  principalId: string;
  sessionId: string | null;
  runId: string;
  input: string;
  output: string;
  createdAt: string;
}

/** One tenant's memory file: its items by idempotency key. */
export interface TenantMemoryData {
  schemaVersion: 1;
  tenantId: string;
  items: Record<string, StoredItem>;
}

/** The single memory file of earlier versions, split into one file per tenant when found. */
interface FormerMemoryData {
  tenants?: Record<string, { items: Record<string, StoredItem> }>;
}

/** A tenant's file name: a hash, so any tenant id is a safe name and two never collide on a case-insensitive disk. */
const nameOf = (tenantId: string) => `${createHash('sha256').update(tenantId).digest('hex').slice(0, 32)}.json`;

/** How many tenants' memory a lowdb memory keeps loaded (read and indexed) unless told otherwise. */
export const DEFAULT_KEEP_LOADED_TENANTS = 1_000;

/**
 * Memory in lowdb JSON files, one per tenant under `memory/` in the store directory: long-term
 * items ranked for the run's input with MiniSearch (BM25-style full-text search), the session's
 * recent turns, one item per idempotency key. A tenant's file holds only its own items (isolation
 * on disk too), and a write-back stringifies that tenant's file only, not everyone's. The
 * `keepLoadedTenants` tenants used last stay loaded with their indexes; a tenant beyond that is
 * dropped once no call of its is under way and read again on its next call, so a long-lived
 * process holds the tenants it serves now, not every tenant it ever served (of those, only the
 * name of each file is kept).
 * @example
 * const memory = await createLowdbMemory(await openStoreDirectory('.runchart'), { keepLoadedTenants: 200 });
 */
export async function createLowdbMemory(directory: StoreDirectory, options: { historyTurns?: number; keepLoadedTenants?: number } = {}): Promise<MemoryLayer> {
  const keepLoaded = options.keepLoadedTenants ?? DEFAULT_KEEP_LOADED_TENANTS;
  if (!Number.isInteger(keepLoaded) || keepLoaded < 1) {
    throw new RunchartError('invalid-input', 'memory', `memory: keepLoadedTenants must be a whole number of tenants, 1 or more (got ${keepLoaded})`);
  }
  const folder = join(directory.path, 'memory');
  await mkdir(folder, { recursive: true });
  /** The tenant files on disk: a tenant without one has no memory, and its recall touches no disk. */
  const onDisk = new Set((await readdir(folder)).filter((name) => name.endsWith('.json')));
  const historyTurns = options.historyTurns ?? 10;
  /** Loaded tenant files, the one used last at the end. */
  const documents = new Map<string, Promise<JsonDocument<TenantMemoryData>>>();
  /** Calls under way per tenant: a tenant with one is never dropped (a second document of its file would write over the first). */
  const busy = new Map<string, number>();
  const indexes = new Map<string, MiniSearch<StoredItem>>();
  /** Per tenant: each principal's sessions, their items oldest first (so a recall reads one session, not the tenant). */
  const sessions = new Map<string, Map<string, StoredItem[]>>();
  const sessionKey = (principalId: string, sessionId: string) => `${principalId}\u0000${sessionId}`;
  /** Puts an item among its session's, by time (write-backs mostly arrive in order: the search starts at the end). */
  const placeInSession = (bySession: Map<string, StoredItem[]>, item: StoredItem) => {
    if (item.sessionId === null) return;
    const key = sessionKey(item.principalId, item.sessionId);
    let items = bySession.get(key);
    if (!items) bySession.set(key, (items = []));
    let at = items.length;
    while (at > 0 && items[at - 1]!.createdAt > item.createdAt) at--;
    items.splice(at, 0, item);
  };
  /** The tenant's sessions, gathered on first use from its file. */
  const sessionsFor = (tenantId: string, items: Record<string, StoredItem>) => {
    let bySession = sessions.get(tenantId);
    if (!bySession) {
      bySession = new Map();
      for (const item of Object.values(items)) placeInSession(bySession, item);
      sessions.set(tenantId, bySession);
    }
    return bySession;
  };

  /** The tenant's file, opened on first use (written with its first item); marked as used last. */
  const documentFor = (tenantId: string) => {
    let document = documents.get(tenantId);
    if (document) {
      documents.delete(tenantId);
      documents.set(tenantId, document);
    } else {
      const name = nameOf(tenantId);
      document = directory.open<TenantMemoryData>(`memory/${name}`, () => ({ schemaVersion: 1, tenantId, items: {} }), { isNew: !onDisk.has(name) });
      document.then(() => onDisk.add(name)).catch(() => documents.delete(tenantId));
      documents.set(tenantId, document);
    }
    return document;
  };

  /** Drops the idle tenants used longest ago until at most `keepLoaded` are loaded. */
  const dropBeyondBound = () => {
    if (documents.size <= keepLoaded) return;
    for (const tenantId of documents.keys()) {
      if (documents.size <= keepLoaded) break;
      if (busy.has(tenantId)) continue;
      // Everything of the tenant is on disk (its calls are done): its next call reads it again.
      documents.delete(tenantId);
      indexes.delete(tenantId);
      sessions.delete(tenantId);
    }
  };

  /** Runs one call for a tenant, which is not dropped meanwhile; afterwards, trims to the bound. */
  async function withTenant<T>(tenantId: string, call: () => Promise<T>): Promise<T> {
    busy.set(tenantId, (busy.get(tenantId) ?? 0) + 1);
    try {
      return await call();
    } finally {
      const left = busy.get(tenantId)! - 1;
      if (left > 0) busy.set(tenantId, left);
      else busy.delete(tenantId);
      dropBeyondBound();
    }
  }

  await migrateFormer(directory, documentFor, dropBeyondBound);

  const newIndex = () =>
    new MiniSearch<StoredItem>({
      idField: 'key',
      fields: ['input', 'output'],
      storeFields: ['principalId'],
      searchOptions: { prefix: true, fuzzy: 0.2, combineWith: 'OR' },
    });
  /** The tenant's search index, built on first use from its file. */
  const indexFor = (tenantId: string, items: Record<string, StoredItem>) => {
    let index = indexes.get(tenantId);
    if (!index) {
      index = newIndex();
      index.addAll(Object.values(items));
      indexes.set(tenantId, index);
    }
    return index;
  };

  async function recallFrom(query: RecallQuery): Promise<RecallResult> {
    const document = await documentFor(query.tenantId);
    const tenant = document.data;
    // A file that is not this tenant's (copied in by hand) is never read as theirs.
    if (tenant.tenantId !== query.tenantId || Object.keys(tenant.items).length === 0) return { items: [], history: [] };
    const items: MemoryItem[] = query.query.trim()
      ? indexFor(query.tenantId, tenant.items)
          .search(query.query, { filter: (result) => result.principalId === query.principalId })
          .slice(0, query.limit)
          .map((result) => {
            const item = tenant.items[result.id as string]!;
            return { id: item.key, text: `${item.input} → ${item.output}`, score: result.score };
          })
      : [];
    const history: HistoryTurn[] = query.sessionId
      ? (sessionsFor(query.tenantId, tenant.items).get(sessionKey(query.principalId, query.sessionId)) ?? [])
          .slice(-historyTurns)
          .flatMap((item) => [
            { role: 'user' as const, content: item.input },
            { role: 'assistant' as const, content: item.output },
          ])
      : [];
    return { items, history };
  }

  async function rememberIn(record: MemoryRecord, idempotencyKey: string): Promise<void> {
    const document = await documentFor(record.tenantId);
    if (document.data.tenantId !== record.tenantId) {
      throw new RunchartError('contract-violation', 'memory', `memory: the file for tenant "${record.tenantId}" belongs to another tenant; move it away`);
    }
    if (document.data.items[idempotencyKey]) return;
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
        data.items[idempotencyKey] = item;
      });
    } catch (error) {
      // Rebuilt from the file, which the failed write left as it was.
      indexes.delete(record.tenantId);
      sessions.delete(record.tenantId);
      throw error;
    }
    // Indexed once it is on disk; a recall that built the indexes meanwhile may have it already.
    const index = indexes.get(record.tenantId);
    if (index && !index.has(item.key)) index.add(item);
    const bySession = sessions.get(record.tenantId);
    if (bySession && item.sessionId !== null && !bySession.get(sessionKey(item.principalId, item.sessionId))?.includes(item)) placeInSession(bySession, item);
  }

  return {
    async recall(query) {
      if (!documents.has(query.tenantId) && !onDisk.has(nameOf(query.tenantId))) return { items: [], history: [] };
      return withTenant(query.tenantId, () => recallFrom(query));
    },
    remember: (record: MemoryRecord, options) => withTenant(record.tenantId, () => rememberIn(record, options.idempotencyKey)),
  };
}

/** Splits the single `memory.json` of earlier versions into tenant files, then removes it. */
async function migrateFormer(directory: StoreDirectory, documentFor: (tenantId: string) => Promise<JsonDocument<TenantMemoryData>>, afterEach: () => void): Promise<void> {
  const former = await readFormerDocument<FormerMemoryData>(directory, 'memory.json');
  if (!former) return;
  for (const [tenantId, tenant] of Object.entries(former.tenants ?? {})) {
    const document = await documentFor(tenantId);
    await document.update((data) => {
      for (const [key, item] of Object.entries(tenant.items)) data.items[key] ??= item;
    });
    afterEach(); // written: the bound on loaded tenants holds while migrating too
  }
  await removeFormerDocument(directory, 'memory.json');
}
