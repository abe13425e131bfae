import { closeSync, fstatSync, ftruncateSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { copyFile, open, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { threadId } from 'node:worker_threads';
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
  /** True when lines could not be read at open: compact soon, so they are not copied aside again. */
  readonly damaged: boolean;
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

/** How a log is opened. */
export interface JsonLogOptions {
  /** Up to how many characters a compaction writes its file synchronously (default `DEFAULT_SYNC_COMPACTION_CHARS`). */
  syncCompactionChars?: number;
}

/**
 * A compaction's temp file, never another's: two logs of one file (a directory closed and opened
 * again in one process, in another worker thread, or by a second copy of this module) may
 * compact at once.
 */
const tempFor = (path: string) => `${path}.compacting-${process.pid}-${threadId}-${randomBytes(6).toString('hex')}`;

/** Removes the temp files of compactions that a crash (or a close) cut short; the log itself was never touched by them. */
async function removeLeftoverTemps(path: string): Promise<void> {
  const prefix = `${basename(path)}.compacting`;
  const names = await readdir(dirname(path)).catch(() => [] as string[]);
  await Promise.all(names.filter((name) => name.startsWith(prefix)).map((name) => unlink(join(dirname(path), name)).catch(() => {})));
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
 * a full disk) is skipped and reported, and the file as it was is copied aside first, so nothing
 * is lost silently; `damaged` then tells the owner to compact, which leaves the bad lines behind.
 * @example
 * const log = await openJsonLog<Entry>('.runchart/journal.jsonl', (entry) => apply(entry), warn);
 */
export async function openJsonLog<Entry>(
  path: string,
  read: (entry: Entry, place: LinePlace) => void,
  onWarning: (message: string) => void,
  options: JsonLogOptions = {},
): Promise<JsonLog<Entry>> {
  const syncCompactionChars = options.syncCompactionChars ?? DEFAULT_SYNC_COMPACTION_CHARS;
  const found = await readLines(path, read);
  await removeLeftoverTemps(path);
  if (found.bad.length) {
    const aside = `${path}.corrupt-${Date.now()}`;
    await copyFile(path, aside);
    const { bad } = found;
    onWarning(`store: ${bad.map((line) => `line ${line}`).join(', ')} of ${path} ${bad.length === 1 ? 'is' : 'are'} not JSON (a write cut short?) and ${bad.length === 1 ? 'was' : 'were'} skipped; the file as it was is kept as ${aside}`);
  }
  let fd: number | undefined = openSync(path, 'a');
  /** Bytes in the file as far as this log knows: a failed write is cut back to it. */
  let size = fstatSync(fd).size;
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
      // A synchronous append to the page cache costs ~2 µs here; a write through libuv's thread pool ~30–60 µs.
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

  return {
    damaged: found.bad.length > 0 || found.tornTail,
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
        fd = openSync(path, 'a');
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
        const text = buffer.toString('utf8', 0, bytesRead);
        try {
          return JSON.parse(text) as Entry;
        } catch (error) {
          throw new RunchartError('internal', 'store', `store: the record at byte ${place.offset} of ${path} is not JSON any more (was the file changed by hand?)`, { cause: error });
        }
      } finally {
        await file.close();
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
 * Feeds every line of `path` to `read`, with where it sits, reading the file a chunk at a time:
 * how many lines it held, which were not JSON, whether it ends inside a line.
 */
async function readLines<Entry>(path: string, read: (entry: Entry, place: LinePlace) => void): Promise<{ lines: number; bad: number[]; tornTail: boolean }> {
  let size: number;
  try {
    // Only as many bytes as the file holds (a device standing in for a file reads as empty).
    size = (await stat(path)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { lines: 0, bad: [], tornTail: false };
    throw error;
  }
  const bad: number[] = [];
  if (size === 0) return { lines: 0, bad, tornTail: false };
  let lines = 0;
  let lineNumber = 0;
  const take = (buffer: Buffer, from: number, to: number, offset: number) => {
    lineNumber++;
    const text = buffer.toString('utf8', from, to);
    if (!text.trim()) return;
    lines++;
    let entry: Entry;
    try {
      entry = JSON.parse(text) as Entry;
    } catch {
      bad.push(lineNumber);
      return;
    }
    read(entry, { offset, length: to - from });
  };
  const file = await open(path, 'r');
  /** The pieces of a line begun in an earlier chunk (joined once, when the line ends), and where it begins. */
  let carried: Buffer[] = [];
  let carriedOffset = 0;
  let position = 0;
  try {
    while (position < size) {
      const chunk = Buffer.allocUnsafe(Math.min(readChunkBytes, size - position));
      const { bytesRead } = await file.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) break;
      const data = chunk.subarray(0, bytesRead);
      let from = 0;
      for (let newline = data.indexOf(10); newline !== -1; newline = data.indexOf(10, from)) {
        if (carried.length) {
          const line = Buffer.concat([...carried, data.subarray(0, newline)]);
          take(line, 0, line.length, carriedOffset);
          carried = [];
        } else {
          take(data, from, newline, position + from);
        }
        from = newline + 1;
      }
      if (from < data.length) {
        if (!carried.length) carriedOffset = position + from;
        // A copy: the chunk's memory is not kept alive for a few bytes of it.
        carried.push(Buffer.from(data.subarray(from)));
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
  return { lines, bad, tornTail };
}
