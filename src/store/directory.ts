import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { mkdir, readFile, rename, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Low } from 'lowdb';
import { DataFile } from 'lowdb/node';
import { RunchartError } from '../errors.js';
import { openJsonLog, type JsonLog, type JsonLogOptions, type LinePlace, type OneLogOptions } from './log.js';

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

/** A store directory held by this process alone. */
export interface StoreDirectory {
  readonly path: string;
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

/**
 * Opens (creating) a store directory and takes its lock. Corrupt files are moved aside and
 * reported through `onWarning`, never silently replaced.
 * @example
 * const directory = await openStoreDirectory('.runchart');
 * const log = await directory.openLog<Entry>('runs.jsonl', (entry) => apply(entry));
 */
export async function openStoreDirectory(path: string, options: { onWarning?: (message: string) => void } & JsonLogOptions = {}): Promise<StoreDirectory> {
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
    const aside = `${path}.corrupt-${Date.now()}`;
    await rename(path, aside);
    directory.onWarning(`store: ${path} could not be read (${(error as Error).message}); it was moved to ${aside}`);
    return undefined;
  }
}

export async function removeFormerDocument(directory: StoreDirectory, name: string): Promise<void> {
  await unlink(join(directory.path, name)).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}
