import { closeSync, existsSync, fstatSync, ftruncateSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { RunchartError } from '../errors.js';
import { RunStatus, type RunSummary } from './contract.js';
import type { LinePlace } from './log.js';

// The finished runs of `runs-finished.jsonl` are found through an index on disk, so a long-lived
// process keeps nothing per finished run. `runs-finished.index.jsonl` gets one entry per finished
// run (its summary and the place of its line), appended as the run finishes; each entry points to
// the entry before it of the same run-id bucket and of the same tenant bucket, and
// `runs-finished.heads` holds the newest entry of every bucket (a fixed-size file, read whole at
// open). A look-up by run id walks its bucket's chain, a listing its tenant bucket's: both read the
// entries of the run's or tenant's bucket only, newest first. The index is derived data: the heads
// say how much of `runs-finished.jsonl` they cover, an open adds the lines past that, and an index
// that is missing, damaged or ahead of the file is rebuilt from the file.

/** How many buckets each chain has: a look-up reads about (finished runs / buckets) entries. */
export const INDEX_BUCKETS = 4096;

const Place = z.tuple([z.number().int().nonnegative(), z.number().int().positive()]);

/** One finished run in the index: its summary, where its line is, and the entries before it in its two chains. */
const IndexEntry = z.object({
  runId: z.string(),
  tenantId: z.string(),
  principalId: z.string(),
  status: RunStatus,
  updatedAt: z.number(),
  at: Place,
  byRun: Place.nullable(),
  byTenant: Place.nullable(),
});
type IndexEntry = z.infer<typeof IndexEntry>;

const magic = 'rcfinix1';
/** Magic (8 bytes), buckets (u32), 4 spare, covered bytes of the finished file, bytes of the entries file, covered lines (f64 each). */
const headerBytes = 40;
const slotBytes = 16;
/** Where a chain's slot lies in the heads file: run-id buckets first, then tenant buckets. */
const slotAt = (chain: 0 | 1, bucket: number) => headerBytes + (chain * INDEX_BUCKETS + bucket) * slotBytes;
const headsBytes = slotAt(1, INDEX_BUCKETS);

function bucketOf(kind: string, key: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < kind.length; index++) hash = Math.imul(hash ^ kind.charCodeAt(index), 0x01000193);
  for (let index = 0; index < key.length; index++) hash = Math.imul(hash ^ key.charCodeAt(index), 0x01000193);
  return (hash >>> 0) % INDEX_BUCKETS;
}

/** A finished run as the index gives it back: its summary and the place of its line in `runs-finished.jsonl`. */
export interface FinishedRun {
  summary: RunSummary;
  place: LinePlace;
}

export interface FinishedIndex {
  /** Bytes of `runs-finished.jsonl` the index covers: its lines past that are to be `add`ed. */
  readonly covered: number;
  /** How many lines of `runs-finished.jsonl` it covers (for reports that name a line). */
  readonly coveredLines: number;
  /** Takes a finished run whose line is on disk at `place`. Never throws: a failure is reported, and the run kept in memory until the next open. */
  add(summary: RunSummary, place: LinePlace): void;
  /** Marks `runs-finished.jsonl` as covered up to `bytes` and line `lines` (after the lines past `covered` were read, good or bad). */
  coverUpTo(bytes: number, lines: number): void;
  /** The newest finished line of the run. */
  find(runId: string): FinishedRun | undefined;
  /** The tenant's finished runs, newest first, each once. */
  list(tenantId: string): Promise<RunSummary[]>;
  close(): void;
}

/** How much of the entries file one read takes: chains mostly run backwards through neighbouring entries. */
const readBlockBytes = 64 * 1024;

/**
 * Opens (rebuilding when needed) the index of the finished runs in `<dir>/runs-finished.jsonl`,
 * which holds `finishedBytes` bytes now.
 * @example
 * const index = openFinishedIndex(dir, size, warn); // then feed it the lines past index.covered
 */
export function openFinishedIndex(dir: string, finishedBytes: number, onWarning: (message: string) => void): FinishedIndex {
  const entriesPath = join(dir, 'runs-finished.index.jsonl');
  const headsPath = join(dir, 'runs-finished.heads');
  let heads = Buffer.alloc(headsBytes);
  const known = existsSync(headsPath) ? readFileSync(headsPath) : undefined;
  const entries = openSync(entriesPath, 'a+');
  let entriesSize = fstatSync(entries).size;
  const usable =
    known?.length === headsBytes &&
    known.toString('latin1', 0, 8) === magic &&
    known.readUInt32LE(8) === INDEX_BUCKETS &&
    known.readDoubleLE(16) <= finishedBytes &&
    known.readDoubleLE(24) <= entriesSize;
  if (usable) {
    heads = known;
    // Entries written after the heads last were (a crash between the two) are in no chain: cut off.
    if (entriesSize > heads.readDoubleLE(24)) ftruncateSync(entries, (entriesSize = heads.readDoubleLE(24)));
  } else {
    // Missing (a store of the earlier layout, or removed by hand): built from the file, as it is when it does not match.
    if (known) onWarning(`store: the index of finished runs (${headsPath}) does not match runs-finished.jsonl; it is rebuilt from that file`);
    heads.write(magic, 0, 'latin1');
    heads.writeUInt32LE(INDEX_BUCKETS, 8);
    ftruncateSync(entries, (entriesSize = 0));
  }
  const headsFile = openSync(headsPath, 'w+');
  writeSync(headsFile, heads, 0, headsBytes, 0);

  /** Runs the index could not take (a failed write): found from memory until the next open adds them. */
  const unindexed = new Map<string, FinishedRun>();
  let failing = false;
  let block: { start: number; bytes: Buffer } | undefined;

  const slot = (chain: 0 | 1, bucket: number): [number, number] | null => {
    const at = slotAt(chain, bucket);
    const length = heads.readUInt32LE(at + 8);
    return length === 0 ? null : [heads.readDoubleLE(at), length];
  };
  const setSlot = (chain: 0 | 1, bucket: number, place: [number, number]) => {
    const at = slotAt(chain, bucket);
    heads.writeDoubleLE(place[0], at);
    heads.writeUInt32LE(place[1], at + 8);
    writeSync(headsFile, heads, at, slotBytes, at);
  };
  const writeHeader = () => writeSync(headsFile, heads, 0, headerBytes, 0);

  const damaged = (offset: number, why: string) =>
    new RunchartError('internal', 'store', `store: the index of finished runs is damaged at byte ${offset} of ${entriesPath} (${why}); remove it and ${headsPath}, and the next open rebuilds them`);

  /**
   * The entry at a place. A listing reads through a block of the entries file that ends with it
   * (a tenant's entries lie mostly side by side); a look-up reads the entry alone (a bucket's
   * entries lie far apart).
   */
  function entryAt([offset, length]: [number, number], below: number, ahead: boolean): IndexEntry {
    if (offset + length >= below) throw damaged(offset, 'a chain points forwards');
    if (!block || offset < block.start || offset + length > block.start + block.bytes.length) {
      const end = offset + length;
      const start = ahead ? Math.max(0, end - Math.max(readBlockBytes, length)) : offset;
      const bytes = Buffer.allocUnsafe(end - start);
      block = { start, bytes: bytes.subarray(0, readSync(entries, bytes, 0, bytes.length, start)) };
    }
    const text = block.bytes.toString('utf8', offset - block.start, offset - block.start + length);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw damaged(offset, 'not JSON');
    }
    const parsed = IndexEntry.safeParse(value);
    if (!parsed.success) throw damaged(offset, 'not an index entry');
    return parsed.data;
  }

  const finishedOf = (entry: IndexEntry): FinishedRun => ({
    summary: { runId: entry.runId, tenantId: entry.tenantId, principalId: entry.principalId, status: entry.status, updatedAt: entry.updatedAt },
    place: { offset: entry.at[0], length: entry.at[1] },
  });

  // long-lived: one per open store (made once, so its getters cost no run anything; test/unit/object-literals.test.ts)
  return {
    get covered() {
      return heads.readDoubleLE(16);
    },
    get coveredLines() {
      return heads.readDoubleLE(32);
    },
    add(summary, place) {
      if (failing) return void unindexed.set(summary.runId, { summary, place });
      const runBucket = bucketOf('run', summary.runId);
      const tenantBucket = bucketOf('tenant', summary.tenantId);
      const { runId, tenantId, principalId, status, updatedAt } = summary;
      const entry: IndexEntry = { runId, tenantId, principalId, status, updatedAt, at: [place.offset, place.length], byRun: slot(0, runBucket), byTenant: slot(1, tenantBucket) };
      const bytes = Buffer.from(`${JSON.stringify(entry)}\n`);
      try {
        for (let offset = 0; offset < bytes.length; ) {
          const written = writeSync(entries, bytes, offset, bytes.length - offset);
          if (written <= 0) throw Object.assign(new Error('the disk took no more bytes'), { code: 'ENOSPC' });
          offset += written;
        }
        const at: [number, number] = [entriesSize, bytes.length - 1];
        entriesSize += bytes.length;
        block = undefined;
        setSlot(0, runBucket, at);
        setSlot(1, tenantBucket, at);
        heads.writeDoubleLE(Math.max(heads.readDoubleLE(16), place.offset + place.length + 1), 16);
        heads.writeDoubleLE(entriesSize, 24);
        heads.writeDoubleLE(heads.readDoubleLE(32) + 1, 32);
        writeHeader();
      } catch (error) {
        // What is on disk stays consistent (the heads did not move past it); this run and later ones wait in memory.
        failing = true;
        unindexed.set(summary.runId, { summary, place });
        onWarning(`store: writing the index of finished runs failed (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); finished runs are kept in memory until the next open indexes them`);
      }
    },
    coverUpTo(bytes, lines) {
      if (failing) return;
      heads.writeDoubleLE(bytes, 16);
      heads.writeDoubleLE(lines, 32);
      writeHeader();
    },
    find(runId) {
      const kept = unindexed.get(runId);
      if (kept) return kept;
      let below = entriesSize + 1;
      try {
        for (let place = slot(0, bucketOf('run', runId)); place; ) {
          const entry = entryAt(place, below, false);
          if (entry.runId === runId) return finishedOf(entry);
          below = place[0];
          place = entry.byRun;
        }
        return undefined;
      } finally {
        block = undefined; // what is read is not kept: the file is the truth
      }
    },
    async list(tenantId) {
      const seen = new Set<string>();
      const listed: RunSummary[] = [];
      for (const { summary } of unindexed.values()) if (summary.tenantId === tenantId && !seen.has(summary.runId)) (seen.add(summary.runId), listed.push(summary));
      let below = entriesSize + 1;
      let read = 0;
      try {
        for (let place = slot(1, bucketOf('tenant', tenantId)); place; ) {
          const entry = entryAt(place, below, true);
          if (entry.tenantId === tenantId && !seen.has(entry.runId)) {
            seen.add(entry.runId);
            listed.push(finishedOf(entry).summary);
          }
          below = place[0];
          place = entry.byTenant;
          // A long listing lets other work in now and then.
          if (++read % 2_000 === 0) {
            block = undefined;
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
        }
        return listed;
      } finally {
        block = undefined;
      }
    },
    close() {
      for (const file of [entries, headsFile]) {
        try {
          closeSync(file);
        } catch {
          // already closed
        }
      }
    },
  };
}

/**
 * The index a read-only open builds in memory from the whole of `runs-finished.jsonl`: a reader
 * beside the store's writer (`runchart runs list` while `serve` runs) never writes the writer's
 * index files. It lives as long as one command.
 * @example
 * const index = memoryFinishedIndex(); // then feed it every line of the file
 */
export function memoryFinishedIndex(): FinishedIndex {
  const byRun = new Map<string, FinishedRun>();
  return {
    // It covers nothing at open: every line of the file is read into it.
    covered: 0,
    coveredLines: 0,
    add: (summary, place) => void byRun.set(summary.runId, { summary, place }),
    coverUpTo: () => {},
    find: (runId) => byRun.get(runId),
    list: async (tenantId) =>
      [...byRun.values()]
        .filter((run) => run.summary.tenantId === tenantId)
        .map((run) => run.summary)
        .sort((a, b) => b.updatedAt - a.updatedAt),
    close: () => {},
  };
}
