import { closeSync, openSync, writeSync } from 'node:fs';
import { copyFile, open, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { RunchartError } from '../errors.js';

/**
 * An append-only JSON Lines file: one record per line, appended with an open file descriptor. Appends
 * made in one synchronous stretch go out as one write (group commit); a write resolves its appends once it
 * is done. What was written stays as written: a state is rebuilt by reading the lines in order,
 * and `compact` rewrites the file with only the records still needed (a temp file and a rename).
 */
export interface JsonLog<Entry> {
  /**
   * Appends a record; resolves once it is written, rejects when the write fails. `applied` runs
   * right after the write, before anything else touches the file, so whoever keeps the state the
   * lines describe changes it exactly when the file does.
   */
  append(entry: Entry, applied?: () => void): Promise<void>;
  /** Lines appended since the file was last written whole: how much `compact` would drop. */
  readonly appendedSinceCompaction: number;
  /**
   * Rewrites the file with the records `live()` returns when the rewrite runs (after every append
   * before it). A compaction already waiting is not asked for twice.
   */
  compact(live: () => readonly Entry[]): Promise<void>;
  /** Closes the file at once; appends still waiting fail. */
  close(): void;
}

interface Pending {
  lines: string[];
  applied: (() => void)[];
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
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
 * is lost silently.
 * @example
 * const log = await openJsonLog<Entry>('.runchart/journal.jsonl', (entry) => apply(entry), warn);
 */
export async function openJsonLog<Entry>(path: string, read: (entry: Entry) => void, onWarning: (message: string) => void): Promise<JsonLog<Entry>> {
  const bad = await readLines(path, read);
  if (bad.length) {
    const aside = `${path}.corrupt-${Date.now()}`;
    await copyFile(path, aside);
    onWarning(`store: ${bad.map((line) => `line ${line}`).join(', ')} of ${path} ${bad.length === 1 ? 'is' : 'are'} not JSON (a write cut short?) and ${bad.length === 1 ? 'was' : 'were'} skipped; the file as it was is kept as ${aside}`);
  }
  let fd: number | undefined = openSync(path, 'a');
  let closed = false;
  /** A failed write may have left part of a line: the next write starts on a new line. */
  let tornTail = false;
  let collecting: Pending | undefined;
  let chain: Promise<void> = Promise.resolve();
  let appended = 0;
  let compacting: Promise<void> | undefined;

  function write(batch: Pending) {
    if (collecting === batch) collecting = undefined;
    try {
      if (closed) throw Object.assign(new Error('the store is closed'), { code: 'ECLOSED' });
      // Reopened after a failure: the file may have been repaired or replaced meanwhile.
      fd ??= openSync(path, 'a');
      // A synchronous append to the page cache costs ~2 µs here; a write through libuv's thread pool ~30–60 µs.
      // (Nothing is fsynced, as lowdb does not: a killed process loses nothing, a power cut may lose the last lines.)
      writeSync(fd, `${tornTail ? '\n' : ''}${batch.lines.join('')}`);
      tornTail = false;
      appended += batch.lines.length;
      for (const apply of batch.applied) apply();
      batch.resolve();
    } catch (error) {
      tornTail = true;
      if (fd !== undefined && !closed) closeSync(fd);
      fd = undefined;
      batch.reject(
        new RunchartError('internal', 'store', `store: writing ${path} failed (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); the change was not applied`, {
          cause: error,
          retryable: true,
        }),
      );
    }
  }

  return {
    append(entry, applied) {
      const line = `${JSON.stringify(entry)}\n`;
      if (!collecting) {
        const batch = (collecting = pending());
        // Every append made before the next microtask rides on one write, after the writes (and any compaction) before it.
        chain = chain.then(() => write(batch));
      }
      collecting.lines.push(line);
      if (applied) collecting.applied.push(applied);
      return collecting.promise;
    },
    get appendedSinceCompaction() {
      return appended;
    },
    compact(live) {
      if (compacting) return compacting;
      const rewrite = chain.then(async () => {
        if (closed) return;
        const temp = `${path}.compacting`;
        await writeFile(temp, live().map((entry) => `${JSON.stringify(entry)}\n`).join(''));
        await rename(temp, path);
        if (closed) return;
        if (fd !== undefined) closeSync(fd);
        fd = openSync(path, 'a');
        tornTail = false;
        appended = 0;
      });
      // Appends wait for the rewrite: what they add must land in the new file.
      chain = rewrite.catch(() => {});
      compacting = rewrite.finally(() => (compacting = undefined));
      compacting.catch(() => {});
      return compacting;
    },
    close() {
      if (closed) return;
      closed = true;
      if (fd !== undefined) closeSync(fd);
      fd = undefined;
    },
  };
}

/** Feeds every line of `path` to `read`; returns the numbers of the lines that are not JSON. */
async function readLines<Entry>(path: string, read: (entry: Entry) => void): Promise<number[]> {
  let size: number;
  try {
    // Only as many bytes as the file holds (a device standing in for a file reads as empty).
    size = (await stat(path)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const bad: number[] = [];
  if (size === 0) return bad;
  const file = await open(path, 'r');
  let text: string;
  try {
    const buffer = Buffer.alloc(size);
    const { bytesRead } = await file.read(buffer, 0, size, 0);
    text = buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await file.close();
  }
  text.split('\n').forEach((line, index) => {
    if (!line.trim()) return;
    let entry: Entry;
    try {
      entry = JSON.parse(line) as Entry;
    } catch {
      bad.push(index + 1);
      return;
    }
    read(entry);
  });
  return bad;
}

/** Removes a file that a newer format has taken over; missing is fine. */
export async function removeMigrated(path: string): Promise<void> {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}
