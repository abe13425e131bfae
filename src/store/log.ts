import { closeSync, fstatSync, ftruncateSync, openSync, readSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { copyFile, open, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';
import type { ZodType } from 'zod';
import { RunchartError } from '../errors.js';

/** Where a line sits in its log's file: its first byte and its length in bytes (without the newline). */
export interface LinePlace {
  offset: number;
  length: number;
}

/**
 * An append-only JSON Lines file: one record per line, appended with an open file descriptor. Appends
 * made in one synchronous stretch go out as one write (group commit); a write resolves its appends once it
 * is done. What was written stays as written: a state is rebuilt by reading the lines in order,
 * and `compact` rewrites the file with only the records still needed (a temp file and a rename).
 */
export interface JsonLog<Entry> {
  /**
   * Appends a record; resolves once it is written, rejects when the write fails. `applied` runs
   * right after the write, before anything else touches the file, with where the line landed, so
   * whoever keeps the state the lines describe changes it exactly when the file does.
   */
  append(entry: Entry, applied?: (place: LinePlace) => void): Promise<void>;
  /** Lines appended since the file was last written whole: how much `compact` would drop. */
  readonly appendedSinceCompaction: number;
  /**
   * Rewrites the file with the records `live()` returns when the rewrite runs (after every append
   * before it); `placed` learns where each landed in the new file. A compaction already waiting is
   * not asked for twice. Places known from before a compaction are void once it is done.
   */
  compact(live: () => readonly Entry[], placed?: (entry: Entry, place: LinePlace) => void): Promise<void>;
  /** Reads back the record at a place that `append`, `compact` or the reading at open reported. */
  readAt(place: LinePlace): Promise<Entry>;
  /**
   * Reads back the records at several places at once, synchronously (one open, one read per place):
   * for the few short lines a call needs right away, which the page cache holds, where a read
   * through libuv's thread pool would wait behind whatever else is queued there.
   */
  readAtSync(places: readonly LinePlace[]): Entry[];
  /** True when lines could not be read at open: compact soon, so they are not copied aside again. */
  readonly damaged: boolean;
  /** The number of the file's last line at open (a torn one included), counting from `firstLine`; 0 for an empty file. */
  readonly lastLineAtOpen: number;
  /** Resolves once every append and compaction asked for so far is done. */
  settled(): Promise<void>;
  /** Closes the file at once; appends still waiting fail. */
  close(): void;
}

interface Pending {
  lines: string[];
  /** Per line: what to call once it is written (most lines have nothing). */
  applied: (((place: LinePlace) => void) | undefined)[];
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Up to how many characters a compaction writes its file synchronously. A small rewrite (its
 * temp file, the rename, the file opened again) takes well under a millisecond here that way;
 * through libuv's thread pool it waits behind whatever else is queued there (a memory document
 * being written) and took 3–6 ms under load, with every append of every run held behind it. A
 * larger file is written asynchronously, so the event loop stays free meanwhile.
 */
export const DEFAULT_SYNC_COMPACTION_CHARS = 1 << 20;

/** How a store directory's logs are opened. */
export interface JsonLogOptions {
  /** Up to how many characters a compaction writes its file synchronously (default `DEFAULT_SYNC_COMPACTION_CHARS`). */
  syncCompactionChars?: number;
}

/** How one log is opened. */
export interface OneLogOptions<Entry> {
  /** What a record is: a line that is JSON but not this (`null`, `7`, a field missing) is skipped and reported as a torn one is. */
  schema?: ZodType<Entry>;
  /** Reads the lines from this byte on (the start of a line: an index holds those before it). */
  from?: number;
  /** The number of the line at `from`, for reports (default 1). */
  firstLine?: number;
  /**
   * False: the file is opened for each write and closed after it, so a process with many small logs
   * (one per tenant) holds no descriptor for an idle one. Default true.
   */
  holdOpen?: boolean;
  /**
   * False: the temp files of compactions cut short are not looked for beside the log (the owner of
   * many logs in one folder removes them once, with `removeLeftoverTemps`). Default true.
   */
  removeLeftovers?: boolean;
}

/** Parses one line's text into a record, or says why it is not one. */
type LineParser<Entry> = (text: string) => { entry: Entry } | { problem: string };

export function parserFor<Entry>(schema: ZodType<Entry> | undefined): LineParser<Entry> {
  return (text) => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return { problem: 'is not JSON (a write cut short?)' };
    }
    if (!schema) return { entry: value as Entry };
    const parsed = schema.safeParse(value);
    if (parsed.success) return { entry: parsed.data };
    if (typeof value !== 'object' || value === null) return { problem: `is not a valid record (got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`})` };
    return { problem: `is not a valid record (${describeIssue(parsed.error.issues[0])})` };
  };
}

type Issue = { code?: string; path: PropertyKey[]; message: string; errors?: Issue[][] };

/** The first thing wrong with a record, naming its field; of a union, the first thing wrong for each kind of record. */
function describeIssue(issue: Issue | undefined): string {
  if (!issue) return 'rejected by its schema';
  if (issue.code === 'invalid_union' && issue.errors?.length) {
    return issue.errors.map((branch) => describeIssue(branch[0] && Object.assign({}, branch[0], { path: [...issue.path, ...branch[0].path] }))).join(', or ');
  }
  return `${issue.path.length ? `${issue.path.map(String).join('.')}: ` : ''}${issue.message}`;
}

/** The report of the lines a log skipped at open, at most ten of them named. */
function skippedReport(path: string, bad: readonly BadLine[], aside: string): string {
  const named = bad.slice(0, 10).map((line) => `line ${line.line} of ${path} ${line.problem}`);
  const more = bad.length > 10 ? `; and ${bad.length - 10} more lines` : '';
  return `store: ${named.join('; ')}${more}; ${bad.length === 1 ? 'it was' : 'they were'} skipped; the file as it was is kept as ${aside}`;
}

interface BadLine {
  line: number;
  problem: string;
}

/**
 * A compaction's temp file, never another's: two logs of one file (a directory closed and opened
 * again in one process, in another worker thread, or by a second copy of this module) may
 * compact at once.
 */
const tempFor = (path: string) => `${path}.compacting-${process.pid}-${threadId}-${randomBytes(6).toString('hex')}`;

/**
 * Removes the temp files of compactions that a crash (or a close) cut short, of the log at `path`
 * or (given a folder and no name) of every log in it; the logs themselves were never touched by them.
 */
export async function removeLeftoverTemps(path: string, everyLog = false): Promise<void> {
  const folder = everyLog ? path : dirname(path);
  const prefix = everyLog ? undefined : `${basename(path)}.compacting`;
  const names = await readdir(folder).catch(() => [] as string[]);
  const leftover = (name: string) => (prefix ? name.startsWith(prefix) : /\.jsonl\.compacting/.test(name));
  await Promise.all(names.filter(leftover).map((name) => unlink(join(folder, name)).catch(() => {})));
}

function pending(): Pending {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  promise.catch(() => {}); // each caller of append() gets the error; this copy must not be unhandled
  return { lines: [], applied: [], promise, resolve, reject };
}

/**
 * Reads a log and opens it for appending. A line that is not JSON (a write cut short by a crash or
 * a full disk), or not a record of `schema`, is skipped and reported, and the file as it was is
 * copied aside first, so nothing is lost silently; `damaged` then tells the owner to compact,
 * which leaves the bad lines behind.
 * @example
 * const log = await openJsonLog<Entry>('.runchart/journal.jsonl', (entry) => apply(entry), warn, { schema: Entry });
 */
export async function openJsonLog<Entry>(
  path: string,
  read: (entry: Entry, place: LinePlace) => void,
  onWarning: (message: string) => void,
  options: JsonLogOptions & OneLogOptions<Entry> = {},
): Promise<JsonLog<Entry>> {
  const syncCompactionChars = options.syncCompactionChars ?? DEFAULT_SYNC_COMPACTION_CHARS;
  const holdOpen = options.holdOpen ?? true;
  const from = options.from ?? 0;
  const parse = parserFor(options.schema);
  const found = await readLines(path, read, parse, from, (options.firstLine ?? 1) - 1);
  if (options.removeLeftovers ?? true) await removeLeftoverTemps(path);
  if (found.bad.length) {
    const aside = `${path}.corrupt-${Date.now()}`;
    await copyFile(path, aside);
    onWarning(skippedReport(path, found.bad, aside));
  }
  let fd: number | undefined = holdOpen ? openSync(path, 'a') : undefined;
  /** Bytes in the file as far as this log knows: a failed write is cut back to it. */
  let size = fd === undefined ? found.size : fstatSync(fd).size;
  let closed = false;
  /** The file may end inside a line (a crash, a write that could not be cut back): the next write starts a new one. */
  let tornTail = found.tornTail;
  let collecting: Pending | undefined;
  let chain: Promise<void> = Promise.resolve();
  // Lines already in the file count as appended: a log that only ever grows across short-lived
  // processes (one CLI run each) is compacted all the same.
  let appended = found.lines;
  let compacting: Promise<void> | undefined;

  const closeQuietly = () => {
    try {
      if (fd !== undefined) closeSync(fd);
    } catch {
      // already closed or gone: nothing left to release
    }
    fd = undefined;
  };

  function write(batch: Pending) {
    if (collecting === batch) collecting = undefined;
    try {
      if (closed) throw Object.assign(new Error('the store is closed'), { code: 'ECLOSED' });
      if (fd === undefined) {
        // Reopened after a failure: the file may have been repaired or replaced meanwhile.
        fd = openSync(path, 'a');
        size = fstatSync(fd).size;
      }
      // Synchronous: an append to the page cache is far cheaper than a write through libuv's thread pool (bench/README.md).
      // (Nothing is fsynced, as lowdb does not: a killed process loses nothing, a power cut may lose the last lines.)
      const lead = tornTail ? '\n' : '';
      const text = `${lead}${batch.lines.join('')}`;
      const bytes = Buffer.from(text);
      const start = size + lead.length;
      // As many bytes as characters: every line is ASCII, and a line's length in bytes is its length.
      const ascii = bytes.length === text.length;
      // A write may stop short of the end (a disk nearly full, a file size limit) without an error.
      for (let offset = 0; offset < bytes.length; ) {
        const written = writeSync(fd, bytes, offset, bytes.length - offset);
        if (written <= 0) throw Object.assign(new Error('the disk took no more bytes'), { code: 'ENOSPC' });
        offset += written;
      }
      size += bytes.length;
      tornTail = false;
      appended += batch.lines.length;
      let offset = start;
      for (let index = 0; index < batch.lines.length; index++) {
        const line = batch.lines[index]!;
        const length = (ascii ? line.length : Buffer.byteLength(line)) - 1;
        batch.applied[index]?.({ offset, length });
        offset += length + 1;
      }
      if (!holdOpen) closeQuietly();
      batch.resolve();
    } catch (error) {
      // Whatever part of the batch reached the file is cut off again, so no later line is glued to it.
      try {
        if (fd !== undefined && !closed) ftruncateSync(fd, size);
      } catch {
        tornTail = true;
      }
      if (!closed) closeQuietly();
      batch.reject(
        new RunchartError('internal', 'store', `store: writing ${path} failed (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); the change was not applied`, {
          cause: error,
          retryable: true,
        }),
      );
    }
  }

  /** The record a line read back holds; a line changed by hand since is an error naming its place. */
  function recordAt(place: LinePlace, text: string): Entry {
    const parsed = parse(text);
    if ('entry' in parsed) return parsed.entry;
    throw new RunchartError('internal', 'store', `store: the record at byte ${place.offset} of ${path} ${parsed.problem.replace(/ \(a write cut short\?\)/, '')} any more (was the file changed by hand?)`);
  }

  // long-lived: one per open log (made once, so its getters cost no run anything; test/unit/object-literals.test.ts)
  return {
    damaged: found.bad.length > 0 || found.tornTail,
    lastLineAtOpen: found.lastLine,
    append(entry, applied) {
      const line = `${JSON.stringify(entry)}\n`;
      if (!collecting) {
        const batch = (collecting = pending());
        // Every append made before the next microtask rides on one write, after the writes (and any compaction) before it.
        chain = chain.then(() => write(batch));
      }
      collecting.lines.push(line);
      collecting.applied.push(applied);
      return collecting.promise;
    },
    get appendedSinceCompaction() {
      return appended;
    },
    compact(live, placed) {
      if (compacting) return compacting;
      const rewrite = chain.then(async () => {
        if (closed) return;
        const temp = tempFor(path);
        const entries = live();
        const lines = entries.map((entry) => `${JSON.stringify(entry)}\n`);
        const text = lines.join('');
        try {
          if (text.length <= syncCompactionChars) {
            writeFileSync(temp, text);
            renameSync(temp, path);
          } else {
            await writeFile(temp, text);
            // Closed meanwhile: another owner may have the file now, and must not lose it to this rewrite.
            if (closed) return void (await unlink(temp).catch(() => {}));
            await rename(temp, path);
          }
        } catch (error) {
          // A failed compaction leaves the log as it was; its half-written temp file goes (a full disk would fill up with them).
          await unlink(temp).catch(() => {});
          throw error;
        }
        closeQuietly();
        if (holdOpen) fd = openSync(path, 'a');
        size = Buffer.byteLength(text);
        tornTail = false;
        appended = 0;
        if (placed) {
          let offset = 0;
          lines.forEach((line, index) => {
            const length = Buffer.byteLength(line) - 1;
            placed(entries[index]!, { offset, length });
            offset += length + 1;
          });
        }
      });
      // Appends wait for the rewrite: what they add must land in the new file.
      chain = rewrite.catch(() => {});
      compacting = rewrite.finally(() => (compacting = undefined));
      compacting.catch(() => {});
      return compacting;
    },
    async readAt(place) {
      const file = await open(path, 'r');
      try {
        const buffer = Buffer.alloc(place.length);
        const { bytesRead } = await file.read(buffer, 0, place.length, place.offset);
        return recordAt(place, buffer.toString('utf8', 0, bytesRead));
      } finally {
        await file.close();
      }
    },
    readAtSync(places) {
      if (places.length === 0) return [];
      const reader = openSync(path, 'r');
      try {
        const buffer = Buffer.allocUnsafe(Math.max(...places.map((place) => place.length)));
        return places.map((place) => recordAt(place, buffer.toString('utf8', 0, readSync(reader, buffer, 0, place.length, place.offset))));
      } finally {
        closeSync(reader);
      }
    },
    settled: () => chain,
    close() {
      if (closed) return;
      closed = true;
      closeQuietly();
    },
  };
}

/** How much of a log is read at once when it is opened. */
const readChunkBytes = 1 << 20;

/**
 * Feeds every record of `path` from byte `from` on to `read`, with where it sits, reading the file a
 * chunk at a time: how many lines it held, which were not records, whether it ends inside a line,
 * and its size.
 */
async function readLines<Entry>(
  path: string,
  read: (entry: Entry, place: LinePlace) => void,
  parse: LineParser<Entry>,
  from: number,
  lineBefore: number,
): Promise<{ lines: number; bad: BadLine[]; tornTail: boolean; size: number; lastLine: number }> {
  let size: number;
  try {
    // Only as many bytes as the file holds (a device standing in for a file reads as empty).
    size = (await stat(path)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { lines: 0, bad: [], tornTail: false, size: 0, lastLine: 0 };
    throw error;
  }
  const bad: BadLine[] = [];
  if (size <= from) return { lines: 0, bad, tornTail: false, size, lastLine: lineBefore };
  let lines = 0;
  let lineNumber = lineBefore;
  const take = (buffer: Buffer, start: number, end: number, offset: number) => {
    lineNumber++;
    const text = buffer.toString('utf8', start, end);
    if (!text.trim()) return;
    lines++;
    const parsed = parse(text);
    if ('problem' in parsed) bad.push({ line: lineNumber, problem: parsed.problem });
    else read(parsed.entry, { offset, length: end - start });
  };
  const file = await open(path, 'r');
  /** The pieces of a line begun in an earlier chunk (joined once, when the line ends), and where it begins. */
  let carried: Buffer[] = [];
  let carriedOffset = 0;
  let position = from;
  try {
    while (position < size) {
      const chunk = Buffer.allocUnsafe(Math.min(readChunkBytes, size - position));
      const { bytesRead } = await file.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) break;
      const data = chunk.subarray(0, bytesRead);
      let start = 0;
      for (let newline = data.indexOf(10); newline !== -1; newline = data.indexOf(10, start)) {
        if (carried.length) {
          const line = Buffer.concat([...carried, data.subarray(0, newline)]);
          take(line, 0, line.length, carriedOffset);
          carried = [];
        } else {
          take(data, start, newline, position + start);
        }
        start = newline + 1;
      }
      if (start < data.length) {
        if (!carried.length) carriedOffset = position + start;
        // A copy: the chunk's memory is not kept alive for a few bytes of it.
        carried.push(Buffer.from(data.subarray(start)));
      }
      position += bytesRead;
    }
  } finally {
    await file.close();
  }
  const tornTail = carried.length > 0;
  if (tornTail) {
    const line = Buffer.concat(carried);
    take(line, 0, line.length, carriedOffset);
  }
  return { lines, bad, tornTail, size, lastLine: lineNumber };
}
