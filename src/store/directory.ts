import { closeSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { mkdir, open as openFile, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Low } from 'lowdb';
import { DataFile } from 'lowdb/node';
import { RunchartError } from '../errors.js';
import { openJsonLog, parserFor, type JsonLog, type JsonLogOptions, type LinePlace, type OneLogOptions } from './log.js';

/** One JSON file of the store: its data, and writes that are coalesced and all-or-nothing. */
export interface JsonDocument<Data> {
  readonly data: Data;
  /**
   * Applies `change` and resolves once it is on disk. Changes made in the same tick share one
   * write (lowdb stringifies the whole document each time). If the write fails, every change
   * since the last good write is undone in memory too, and each waiting caller gets the error.
   */
  update(change: (data: Data) => void): Promise<void>;
}

/** A store directory held by this process alone, or opened read-only beside its writer. */
export interface StoreDirectory {
  readonly path: string;
  /** True when opened with `readOnly`: nothing is written, moved or locked; writes are refused. */
  readonly readOnly?: boolean;
  /** Where the directory reports what it repaired (corrupt files moved aside, torn lines skipped). */
  readonly onWarning: (message: string) => void;
  /** Opens a lowdb document; `{ isNew: true }` skips reading a file the caller knows is not there yet. */
  open<Data extends object>(name: string, defaults: () => Data, options?: { isNew?: boolean }): Promise<JsonDocument<Data>>;
  /** Opens an append-only JSON Lines file of the store, feeding `read` every record it holds (closing it lets the directory forget it). */
  openLog<Entry>(name: string, read: (entry: Entry, place: LinePlace) => void, options?: OneLogOptions<Entry>): Promise<JsonLog<Entry>>;
  /** Resolves once every log's appends and compactions asked for so far are done. */
  settled(): Promise<void>;
  /** Has `close` called when the directory closes (files a store keeps open besides its logs). */
  whenClosed(close: () => void): void;
  /** Closes the logs and releases the lock; nothing must be written afterwards. */
  close(): void;
}

interface LockHolder {
  pid: number;
  host: string;
  since: string;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes `<dir>/lock` with O_EXCL; a lock whose holder is gone from this host is taken over. */
function takeLock(path: string): () => void {
  const me: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx');
      writeSync(fd, JSON.stringify(me));
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let holder: LockHolder | undefined;
      try {
        holder = JSON.parse(readFileSync(path, 'utf8')) as LockHolder;
      } catch {
        holder = undefined;
      }
      if (holder && (holder.host !== me.host || isAlive(holder.pid))) {
        throw new RunchartError(
          'invalid-input',
          'store',
          `store: ${path} is held by process ${holder.pid} on ${holder.host} since ${holder.since}; a store has one writer. Stop that process, or give this one another store.dir`,
        );
      }
      // The holder is gone (killed) or the lock is unreadable: take it over.
      rmSync(path, { force: true });
    }
  }
  throw new RunchartError('internal', 'store', `store: could not take the lock ${path}`);
}

/** How a store directory is opened. */
export interface StoreDirectoryOptions extends JsonLogOptions {
  onWarning?: (message: string) => void;
  /**
   * Read the files as they are now, beside the process that holds the store (a running
   * `runchart serve`): no lock is taken, nothing is created, repaired, compacted or moved, and
   * every write is refused. A line the writer has not finished is left out.
   */
  readOnly?: boolean;
}

/**
 * Opens (creating) a store directory and takes its lock, or, with `readOnly`, reads it beside its
 * writer. Corrupt files are moved aside and reported through `onWarning`, never silently replaced.
 * @example
 * const directory = await openStoreDirectory('.runchart');
 * const log = await directory.openLog<Entry>('runs.jsonl', (entry) => apply(entry));
 */
export async function openStoreDirectory(path: string, options: StoreDirectoryOptions = {}): Promise<StoreDirectory> {
  if (options.readOnly) return openReadOnly(path, options.onWarning ?? (() => {}));
  await mkdir(path, { recursive: true });
  const release = takeLock(join(path, 'lock'));
  let closed = false;
  const onWarning = options.onWarning ?? (() => {});
  const logs = new Set<JsonLog<unknown>>();
  const closers: (() => void)[] = [];
  return {
    path,
    onWarning,
    open: (name, defaults, options) => openDocument(join(path, name), defaults, onWarning, options?.isNew ?? false),
    async openLog<Entry>(name: string, read: (entry: Entry, place: LinePlace) => void, logOptions?: OneLogOptions<Entry>) {
      const log = await openJsonLog<Entry>(join(path, name), read, onWarning, Object.assign({}, options, logOptions));
      const close = log.close;
      log.close = () => {
        logs.delete(log as JsonLog<unknown>);
        close();
      };
      logs.add(log as JsonLog<unknown>);
      return log;
    },
    settled: async () => void (await Promise.all([...logs].map((log) => log.settled()))),
    whenClosed: (close) => void closers.push(close),
    close() {
      if (closed) return;
      closed = true;
      for (const log of [...logs]) log.close();
      for (const close of closers.splice(0)) close();
      release();
    },
  };
}

interface Batch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
  /** Set when a failed write undid this batch's changes before it could be written. */
  undone?: RunchartError;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  promise.catch(() => {}); // the caller of update() gets the error; this copy must not be unhandled
  return { promise, resolve, reject };
}

async function openDocument<Data extends object>(file: string, defaults: () => Data, onWarning: (message: string) => void, isNew: boolean): Promise<JsonDocument<Data>> {
  let lastText = '';
  const adapter = new DataFile<Data>(file, { parse: JSON.parse, stringify: (data) => (lastText = JSON.stringify(data)) });
  const db = new Low<Data>(adapter, defaults());
  try {
    if (!isNew) await db.read();
  } catch (error) {
    const aside = `${file}.corrupt-${Date.now()}`;
    await rename(file, aside);
    onWarning(`store: ${file} could not be read (${(error as Error).message}); it was moved to ${aside} and a new one started`);
    db.data = defaults();
  }
  if (typeof db.data !== 'object' || db.data === null || Array.isArray(db.data)) {
    throw new RunchartError('contract-violation', 'store', `store: ${file} does not hold a JSON object; move it away and start again`);
  }
  let lastGood = JSON.stringify(db.data);
  let collecting: Batch | undefined;
  let chain: Promise<void> = Promise.resolve();

  async function flush(batch: Batch) {
    if (collecting === batch) collecting = undefined;
    if (batch.undone) return batch.reject(batch.undone);
    try {
      await db.write();
      lastGood = lastText;
      batch.resolve();
    } catch (error) {
      const failure = new RunchartError(
        'internal',
        'store',
        `store: writing ${file} failed (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); the change was undone`,
        { cause: error, retryable: true },
      );
      // Memory goes back to what is on disk; changes waiting for the next write are undone with it.
      db.data = JSON.parse(lastGood) as Data;
      if (collecting) {
        collecting.undone = failure;
        collecting = undefined;
      }
      batch.reject(failure);
    }
  }

  // long-lived: one per document opened (made once, so its getters cost no run anything; test/unit/object-literals.test.ts)
  return {
    get data() {
      return db.data;
    },
    update(change) {
      change(db.data);
      if (!collecting) {
        const batch = (collecting = newBatch());
        // Every change made before the write starts rides on it (one stringify for many changes).
        chain = chain.then(() => new Promise<void>((resolve) => setImmediate(resolve))).then(() => flush(batch));
      }
      return collecting.promise;
    },
  };
}

/**
 * Reads a whole-document JSON file of an earlier store format so its records can move into the
 * current one: undefined when there is none; a file that does not parse is moved aside and reported.
 * `removeFormerDocument` deletes it once its records are safely written elsewhere.
 */
export async function readFormerDocument<Data>(directory: StoreDirectory, name: string): Promise<Data | undefined> {
  const path = join(directory.path, name);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as Data;
  } catch (error) {
    if (directory.readOnly) {
      directory.onWarning(`store: ${path} could not be read (${(error as Error).message}); it is left as it is (read-only)`);
      return undefined;
    }
    const aside = `${path}.corrupt-${Date.now()}`;
    await rename(path, aside);
    directory.onWarning(`store: ${path} could not be read (${(error as Error).message}); it was moved to ${aside}`);
    return undefined;
  }
}

export async function removeFormerDocument(directory: StoreDirectory, name: string): Promise<void> {
  if (directory.readOnly) return;
  await unlink(join(directory.path, name)).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}

const readOnlyRefusal = (path: string) =>
  new RunchartError('invalid-input', 'store', `store: ${path} is open read-only (another process holds the store); nothing can be written through it`);

/** The read-only directory: documents and logs as they are on disk now, no lock, no writes. */
function openReadOnly(path: string, onWarning: (message: string) => void): StoreDirectory {
  const logs: JsonLog<unknown>[] = [];
  const closers: (() => void)[] = [];
  let closed = false;
  return {
    path,
    readOnly: true,
    onWarning,
    async open<Data extends object>(name: string, defaults: () => Data) {
      const file = join(path, name);
      let data = defaults();
      try {
        data = JSON.parse(await readFile(file, 'utf8')) as Data;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') onWarning(`store: ${file} could not be read (${(error as Error).message}); it is left as it is (read-only)`);
      }
      // long-lived: one per document opened (made once, so its getters cost no run anything; test/unit/object-literals.test.ts)
      return {
        get data() {
          return data;
        },
        update: () => Promise.reject(readOnlyRefusal(file)),
      };
    },
    async openLog<Entry>(name: string, read: (entry: Entry, place: LinePlace) => void, options?: OneLogOptions<Entry>) {
      const log = await openReadOnlyLog(join(path, name), read, onWarning, parserFor(options?.schema));
      logs.push(log as JsonLog<unknown>);
      return log;
    },
    settled: async () => {},
    whenClosed: (close) => void closers.push(close),
    close() {
      if (closed) return;
      closed = true;
      for (const log of logs.splice(0)) log.close();
      for (const close of closers.splice(0)) close();
    },
  };
}

/**
 * A log read as it is now. Its file stays open, so the places read at open keep pointing at the
 * same bytes even if the writer compacts meanwhile (a compaction renames a new file over the old).
 */
async function openReadOnlyLog<Entry>(
  path: string,
  read: (entry: Entry, place: LinePlace) => void,
  onWarning: (message: string) => void,
  parse: ReturnType<typeof parserFor<Entry>>,
): Promise<JsonLog<Entry>> {
  let file: FileHandle | undefined;
  try {
    file = await openFile(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const lastLine = file ? await readCompleteLines(file, path, read, onWarning, parse) : 0;
  const handle = file;
  const parseAt = (place: LinePlace, text: string): Entry => {
    const parsed = parse(text);
    if ('entry' in parsed) return parsed.entry;
    throw new RunchartError('internal', 'store', `store: the record at byte ${place.offset} of ${path} ${parsed.problem}`);
  };
  return {
    damaged: false,
    lastLineAtOpen: lastLine,
    appendedSinceCompaction: 0,
    append: () => Promise.reject(readOnlyRefusal(path)),
    compact: async () => {},
    async readAt(place) {
      if (!handle) throw new RunchartError('internal', 'store', `store: ${path} was not there when it was opened`);
      const buffer = Buffer.alloc(place.length);
      const { bytesRead } = await handle.read(buffer, 0, place.length, place.offset);
      return parseAt(place, buffer.toString('utf8', 0, bytesRead));
    },
    readAtSync(places) {
      if (places.length === 0) return [];
      if (!handle) throw new RunchartError('internal', 'store', `store: ${path} was not there when it was opened`);
      const buffer = Buffer.allocUnsafe(Math.max(...places.map((place) => place.length)));
      return places.map((place) => parseAt(place, buffer.toString('utf8', 0, readSync(handle.fd, buffer, 0, place.length, place.offset))));
    },
    settled: async () => {},
    close: () => void handle?.close().catch(() => {}),
  };
}

/**
 * Feeds every complete record of the file to `read`, a chunk at a time, and returns the number of
 * its last complete line; a last line without its newline is still being written, and left out.
 */
async function readCompleteLines<Entry>(
  file: FileHandle,
  path: string,
  read: (entry: Entry, place: LinePlace) => void,
  onWarning: (message: string) => void,
  parse: ReturnType<typeof parserFor<Entry>>,
): Promise<number> {
  const { size } = await file.stat();
  const bad: string[] = [];
  let lineNumber = 0;
  let carried = Buffer.alloc(0);
  let carriedOffset = 0;
  for (let position = 0; position < size; ) {
    const chunk = Buffer.allocUnsafe(Math.min(1 << 20, size - position));
    const { bytesRead } = await file.read(chunk, 0, chunk.length, position);
    if (bytesRead === 0) break;
    const data = carried.length ? Buffer.concat([carried, chunk.subarray(0, bytesRead)]) : chunk.subarray(0, bytesRead);
    const base = carried.length ? carriedOffset : position;
    let from = 0;
    for (let newline = data.indexOf(10); newline !== -1; newline = data.indexOf(10, from)) {
      lineNumber++;
      const text = data.toString('utf8', from, newline);
      if (text.trim()) {
        const parsed = parse(text);
        if ('entry' in parsed) read(parsed.entry, { offset: base + from, length: newline - from });
        else bad.push(`line ${lineNumber} ${parsed.problem}`);
      }
      from = newline + 1;
    }
    carried = Buffer.from(data.subarray(from));
    carriedOffset = base + from;
    position += bytesRead;
  }
  if (bad.length) onWarning(`store: ${path}: ${bad.join('; ')}; skipped (read-only: the file is left as it is)`);
  return lineNumber;
}
