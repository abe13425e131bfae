import { createHash } from 'node:crypto';
import { mkdir, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { RunchartError } from '../errors.js';
import { readFormerDocument, removeFormerDocument, type StoreDirectory } from '../store/directory.js';
import { removeLeftoverTemps, type JsonLog, type LinePlace } from '../store/log.js';
import type { HistoryTurn, MemoryItem, MemoryLayer, MemoryRecord, RecallQuery, RecallResult } from './contract.js';
import { itemText } from './in-memory.js';
import { createRecallIndex, type RecallIndex, type RecallStats } from './recall-index.js';

/** One remembered turn as a tenant's memory file holds it, under its idempotency key. */
const StoredItem = z.object({
  key: z.string(),
  principalId: z.string(),
  sessionId: z.string().nullable(),
  runId: z.string(),
  input: z.string(),
  output: z.string(),
  createdAt: z.iso.datetime(),
});
type StoredItem = z.infer<typeof StoredItem>;

/** The first line of a tenant's memory file: whose it is. */
const MemoryHeader = z.object({ schemaVersion: z.literal(2), tenantId: z.string() });
type MemoryHeader = z.infer<typeof MemoryHeader>;

// Items first: all lines but one are items, and a union tries its members in order.
const MemoryLine = z.union([StoredItem, MemoryHeader]);
type MemoryLine = z.infer<typeof MemoryLine>;

/** One tenant's memory file of the earlier layout (a lowdb document): its items by idempotency key. */
export interface TenantMemoryData {
  schemaVersion: 1;
  tenantId: string;
  items: Record<string, StoredItem>;
}

/** The single memory file of the layout before that, split into tenants when found. */
interface FormerMemoryData {
  tenants?: Record<string, { items: Record<string, StoredItem> }>;
}

/** A tenant's file name (without extension): a hash, so any tenant id is a safe name and two never collide on a case-insensitive disk. */
const baseNameOf = (tenantId: string) => createHash('sha256').update(tenantId).digest('hex').slice(0, 32);
const nameOf = (tenantId: string) => `${baseNameOf(tenantId)}.jsonl`;

/** How many tenants' memory a lowdb memory keeps loaded (read and indexed) unless told otherwise. */
export const DEFAULT_KEEP_LOADED_TENANTS = 1_000;

/** What recalls and write-backs have cost so far: `RecallStats` plus what was read and written on disk. */
export interface FileMemoryStats extends RecallStats {
  /** Items read back from disk by recalls: the ones returned and the session turns. */
  itemsRead: number;
  /** Bytes appended to memory files by write-backs. */
  bytesWritten: number;
}

/** A 30-bit hash of an idempotency key (a small integer): keys are checked on disk only when two share one. */
function keyHash(key: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < key.length; index++) hash = Math.imul(hash ^ key.charCodeAt(index), 0x01000193);
  return hash & 0x3fffffff;
}

/** One loaded tenant: its file, where each item's line is (by id, the order of the file), its index. */
interface TenantFile {
  log: JsonLog<MemoryLine>;
  /** Set when the file names another tenant (copied in by hand), or none while holding items: never read as this tenant's. */
  foreign?: string;
  header: 'written' | 'writing' | 'none';
  offsets: number[];
  lengths: number[];
  /** Item ids by the hash of their key. */
  keys: Map<number, number | number[]>;
  /** Writes under way by key: a second write-back of one key waits for the first. */
  writing: Map<string, Promise<void>>;
  index: RecallIndex;
}

/**
 * Memory in files under `memory/` in the store directory, one append-only JSON Lines file per
 * tenant (a header naming the tenant, then one line per remembered turn), so a tenant's file holds
 * only its own items and a write-back appends its one line, whatever the history. Long-term items
 * are ranked for the run's input from an index of terms per principal (BM25, `recall-index.ts`)
 * that scores the newest matches of the query's rarest terms only; the session's turns come from
 * the session's own list; both are read back from the file by their places (a few short reads).
 * What is kept in memory per item is its place, its postings and a hash of its key. The
 * `keepLoadedTenants` tenants used last stay loaded; a tenant beyond that is dropped once no call
 * of its is under way and read again on its next call. Files of the earlier layout (one lowdb
 * document per tenant, and the single `memory.json` before it) are moved into this one at open.
 * `stats()` says what recalls and write-backs have touched.
 * @example
 * const memory = await createLowdbMemory(await openStoreDirectory('.runchart'), { keepLoadedTenants: 200 });
 */
export async function createLowdbMemory(
  directory: StoreDirectory,
  options: { historyTurns?: number; keepLoadedTenants?: number } = {},
): Promise<MemoryLayer & { stats(): FileMemoryStats }> {
  const keepLoaded = options.keepLoadedTenants ?? DEFAULT_KEEP_LOADED_TENANTS;
  if (!Number.isInteger(keepLoaded) || keepLoaded < 1) {
    throw new RunchartError('invalid-input', 'memory', `memory: keepLoadedTenants must be a whole number of tenants, 1 or more (got ${keepLoaded})`);
  }
  const historyTurns = options.historyTurns ?? 10;
  const folder = join(directory.path, 'memory');
  await mkdir(folder, { recursive: true });
  await migrateFormer(directory, folder);
  // Once for every tenant file, not at each load: a folder of many tenants is not listed per tenant.
  await removeLeftoverTemps(folder, true);
  /** The tenant files on disk: a tenant without one has no memory, and its recall touches no disk. */
  const onDisk = new Set((await readdir(folder)).filter((name) => name.endsWith('.jsonl')));
  /** Loaded tenants, the one used last at the end. */
  const loaded = new Map<string, Promise<TenantFile>>();
  /** Calls under way per tenant: a tenant with one is never dropped (its file would be read twice, its writes indexed once). */
  const busy = new Map<string, number>();
  const totals: FileMemoryStats = { recalls: 0, scored: 0, postingsRead: 0, itemsRead: 0, bytesWritten: 0 };

  const placeOf = (tenant: TenantFile, id: number): LinePlace => ({ offset: tenant.offsets[id]!, length: tenant.lengths[id]! });

  /** True when the tenant holds an item under `key` (a hash shared with another key is settled by reading it). */
  function holds(tenant: TenantFile, key: string): boolean {
    const found = tenant.keys.get(keyHash(key));
    if (found === undefined) return false;
    const ids = typeof found === 'number' ? [found] : found;
    return tenant.log.readAtSync(ids.map((id) => placeOf(tenant, id))).some((line) => 'key' in line && line.key === key);
  }

  /** Takes an item that is on disk at `place` into the tenant's places, keys and index. */
  function take(tenant: TenantFile, item: StoredItem, place: LinePlace): void {
    const id = tenant.offsets.length;
    tenant.offsets.push(place.offset);
    tenant.lengths.push(place.length);
    const hash = keyHash(item.key);
    const found = tenant.keys.get(hash);
    tenant.keys.set(hash, found === undefined ? id : typeof found === 'number' ? [found, id] : [...found, id]);
    tenant.index.add({ id, principalId: item.principalId, sessionId: item.sessionId, createdAt: item.createdAt, text: `${item.input} ${item.output}` });
  }

  async function load(tenantId: string): Promise<TenantFile> {
    const tenant: TenantFile = { log: undefined as never, header: 'none', offsets: [], lengths: [], keys: new Map(), writing: new Map(), index: createRecallIndex({ historyTurns, stats: totals }) };
    /** Keys seen while reading: a line of a key already read (written twice by hand) is left out. */
    const seen = new Set<string>();
    tenant.log = await directory.openLog<MemoryLine>(
      `memory/${nameOf(tenantId)}`,
      (line, place) => {
        if (!('key' in line)) {
          if (line.tenantId !== tenantId) tenant.foreign = line.tenantId;
          tenant.header = 'written';
          return;
        }
        if (tenant.header === 'none') tenant.foreign = '(no tenant named)';
        if (tenant.foreign || seen.has(line.key)) return;
        seen.add(line.key);
        take(tenant, line, place);
      },
      { schema: MemoryLine, holdOpen: false, removeLeftovers: false },
    );
    if (tenant.log.damaged && !tenant.foreign && tenant.header === 'written') {
      // Rewritten without the lines that could not be read, so they are not reported again at every load.
      const places = tenant.offsets.map((_, id) => placeOf(tenant, id));
      let id = -1; // the header comes first, then the items in the order of their ids
      await tenant.log.compact(
        () => [{ schemaVersion: 2, tenantId }, ...tenant.log.readAtSync(places)],
        (_, place) => {
          if (id >= 0) {
            tenant.offsets[id] = place.offset;
            tenant.lengths[id] = place.length;
          }
          id++;
        },
      );
    }
    return tenant;
  }

  /** The tenant, loaded on first use; marked as used last. */
  const tenantFor = (tenantId: string) => {
    let tenant = loaded.get(tenantId);
    if (tenant) {
      loaded.delete(tenantId);
      loaded.set(tenantId, tenant);
    } else {
      tenant = load(tenantId);
      tenant.catch(() => loaded.delete(tenantId));
      loaded.set(tenantId, tenant);
    }
    return tenant;
  };

  /** Drops the idle tenants used longest ago until at most `keepLoaded` are loaded. */
  const dropBeyondBound = () => {
    if (loaded.size <= keepLoaded) return;
    for (const [tenantId, tenant] of loaded) {
      if (loaded.size <= keepLoaded) break;
      if (busy.has(tenantId)) continue;
      // Everything of the tenant is on disk (its calls are done): its next call reads it again.
      loaded.delete(tenantId);
      void tenant.then((file) => file.log.close());
    }
  };

  /** Runs one call for a tenant, which is not dropped meanwhile; afterwards, trims to the bound. */
  async function withTenant<T>(tenantId: string, call: (tenant: TenantFile) => Promise<T> | T): Promise<T> {
    busy.set(tenantId, (busy.get(tenantId) ?? 0) + 1);
    try {
      return await call(await tenantFor(tenantId));
    } finally {
      const left = busy.get(tenantId)! - 1;
      if (left > 0) busy.set(tenantId, left);
      else busy.delete(tenantId);
      dropBeyondBound();
    }
  }

  function recallFrom(tenant: TenantFile, query: RecallQuery): RecallResult {
    // A file that is not this tenant's (copied in by hand) is never read as theirs.
    if (tenant.foreign || tenant.offsets.length === 0) return { items: [], history: [] };
    const found = query.query.trim() ? tenant.index.search(query.principalId, query.query, query.limit) : [];
    const turns = query.sessionId ? tenant.index.history(query.principalId, query.sessionId) : [];
    const read = tenant.log.readAtSync([...found.map(({ id }) => placeOf(tenant, id)), ...turns.map((id) => placeOf(tenant, id))]) as StoredItem[];
    totals.itemsRead += read.length;
    const items: MemoryItem[] = found.map(({ score }, index) => ({ id: read[index]!.key, text: itemText(read[index]!), score }));
    const history: HistoryTurn[] = read.slice(found.length).flatMap((item) => [
      { role: 'user' as const, content: item.input },
      { role: 'assistant' as const, content: item.output },
    ]);
    return { items, history };
  }

  async function rememberIn(tenantId: string, tenant: TenantFile, item: StoredItem): Promise<void> {
    if (tenant.foreign) {
      throw new RunchartError('contract-violation', 'memory', `memory: the file for tenant "${tenantId}" belongs to another tenant; move it away`);
    }
    const under = tenant.writing.get(item.key);
    if (under) return under;
    if (holds(tenant, item.key)) return;
    const header = tenant.header === 'none';
    if (header) {
      tenant.header = 'writing';
      void tenant.log.append({ schemaVersion: 2, tenantId }, (place) => {
        tenant.header = 'written';
        totals.bytesWritten += place.length + 1;
      });
    }
    // Indexed once it is on disk, right after the write: a recall never returns a turn the file lacks.
    const written = tenant.log.append(item, (place) => {
      totals.bytesWritten += place.length + 1;
      take(tenant, item, place);
    });
    tenant.writing.set(item.key, written);
    try {
      await written;
      onDisk.add(nameOf(tenantId));
    } catch (error) {
      if (header && tenant.header === 'writing') tenant.header = 'none';
      throw error;
    } finally {
      tenant.writing.delete(item.key);
    }
  }

  return {
    async recall(query) {
      if (!loaded.has(query.tenantId) && !onDisk.has(nameOf(query.tenantId))) {
        totals.recalls++;
        return { items: [], history: [] };
      }
      return withTenant(query.tenantId, (tenant) => recallFrom(tenant, query));
    },
    remember: (record: MemoryRecord, options) =>
      withTenant(record.tenantId, (tenant) =>
        rememberIn(record.tenantId, tenant, {
          key: options.idempotencyKey,
          principalId: record.principalId,
          sessionId: record.sessionId ?? null,
          runId: record.runId,
          input: record.input,
          output: record.output,
          createdAt: record.createdAt,
        }),
      ),
    stats: () => ({ ...totals }),
  };
}

/**
 * Moves the memory of earlier layouts into tenant files, once, at open: the single `memory.json`
 * (split by tenant), then each tenant's lowdb document (`memory/<name>.json`, into
 * `memory/<name>.jsonl`, the same name). Items already in a tenant file are not written twice, so
 * a move cut short is finished by the next open. Each item is parsed with its schema; a file with
 * items that are not records keeps them in a `.corrupt-` copy, and is reported.
 */
async function migrateFormer(directory: StoreDirectory, folder: string): Promise<void> {
  const single = await readFormerDocument<FormerMemoryData>(directory, 'memory.json');
  if (single) {
    let bad = 0;
    for (const [tenantId, tenant] of Object.entries(single.tenants ?? {})) bad += await moveInto(directory, nameOf(tenantId), tenantId, tenant?.items);
    await retireFormer(directory, 'memory.json', bad);
  }
  for (const name of (await readdir(folder)).filter((file) => file.endsWith('.json'))) {
    const former = `memory/${name}`;
    const data = await readFormerDocument<Partial<TenantMemoryData>>(directory, former);
    if (!data) continue; // not JSON: moved aside and reported
    if (typeof data !== 'object' || data === null || typeof data.tenantId !== 'string') {
      await retireFormer(directory, former, 1, 'names no tenant');
      continue;
    }
    await retireFormer(directory, former, await moveInto(directory, `${name.slice(0, -'.json'.length)}.jsonl`, data.tenantId, data.items));
  }
}

/** Writes a former file's items into a tenant file (header first when it is new); returns how many were not records. */
async function moveInto(directory: StoreDirectory, name: string, tenantId: string, items: Record<string, unknown> | undefined): Promise<number> {
  const keys = new Set<string>();
  let header: string | undefined;
  const log = await directory.openLog<MemoryLine>(`memory/${name}`, (line) => ('key' in line ? void keys.add(line.key) : void (header = line.tenantId)), {
    schema: MemoryLine,
    holdOpen: false,
    removeLeftovers: false,
  });
  let bad = 0;
  try {
    const appends: Promise<void>[] = [];
    if (header === undefined) appends.push(log.append({ schemaVersion: 2, tenantId }));
    for (const raw of Object.values(items ?? {})) {
      const parsed = StoredItem.safeParse(raw);
      if (!parsed.success) bad++;
      else if (!keys.has(parsed.data.key)) {
        keys.add(parsed.data.key);
        appends.push(log.append(parsed.data));
      }
    }
    await Promise.all(appends);
  } finally {
    log.close();
  }
  return bad;
}

/** Removes a former file whose records are all moved; one with records that were not is kept aside and reported. */
async function retireFormer(directory: StoreDirectory, name: string, bad: number, why = `holds ${bad} ${bad === 1 ? 'item that is not a record' : 'items that are not records'}`): Promise<void> {
  if (bad === 0) return removeFormerDocument(directory, name);
  const path = join(directory.path, name);
  const aside = `${path}.corrupt-${Date.now()}`;
  await rename(path, aside);
  directory.onWarning(`memory: ${path} ${why}; the rest was moved to the current layout and the file as it was is kept as ${aside}`);
}
