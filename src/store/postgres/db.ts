import pg from 'pg';
import { RunchartError } from '../../errors.js';
import { SCHEMA_NAME } from './schema-name.js';
import { describeServer } from './where.js';

export { describeServer };

// The one file that imports pg: a pool for queries and transactions, one more connection for
// LISTEN, and errors that name the server (never its password).


/** What the adapters run SQL through. */
export interface Database {
  /** The schema the tables live in, checked against `SCHEMA_NAME`. */
  readonly schema: string;
  /** Where the server is, for messages: host, port and database, without credentials. */
  readonly where: string;
  query<Row extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<Row[]>;
  /**
   * A query whose commit does not wait for the server's disk (`synchronous_commit = off`): for
   * writes that a crash of the database server may lose without losing anything a caller was told
   * (run events, the steps of a run between two settled points). A crash of this process loses nothing more.
   */
  relaxed<Row extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<Row[]>;
  /** Runs `work` in one transaction on one connection: committed when it resolves, rolled back when it throws. */
  transaction<T>(work: (query: Database['query']) => Promise<T>): Promise<T>;
  /** Calls `onMessage` with each payload sent on `channel` by any process; resolves once listening. */
  listen(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<void>;
  /** The shape pg-boss takes to share this pool. */
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
  close(): Promise<void>;
}

/** Options of `openDatabase`. */
export interface DatabaseOptions {
  url: string;
  schema: string;
  /** Connections in the pool (the LISTEN connection comes on top). */
  maxConnections?: number;
  applicationName?: string;
  onWarning?: (message: string, error?: unknown) => void;
}

/**
 * Opens a pool on `url` and checks that the server answers, so a wrong URL fails at open with a
 * message naming the server rather than on a run's first step.
 * @example
 * const db = await openDatabase({ url: 'postgres://postgres@127.0.0.1:5432/test', schema: 'runchart' });
 */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (!SCHEMA_NAME.test(options.schema)) {
    throw new RunchartError('invalid-input', 'store', `store: schema "${options.schema}" is not a plain schema name; use lower-case letters, digits and _ (at most 40, not starting with a digit)`);
  }
  const where = describeServer(options.url);
  const warn = options.onWarning ?? (() => {});
  const failed = (doing: string, error: unknown) =>
    new RunchartError('upstream', 'store', `store: PostgreSQL at ${where} failed ${doing}: ${(error as Error).message || String(error)}`, { cause: error, retryable: true });
  const config = { connectionString: options.url, application_name: options.applicationName ?? 'runchart' };
  const size = options.maxConnections ?? 10;
  const pool = new pg.Pool({ max: size, ...config });
  const relaxedPool = new pg.Pool({ max: Math.max(2, Math.ceil(size / 3)), ...config, options: '-c synchronous_commit=off' });
  // An idle connection that breaks (a server restart) is reported; the pool makes a new one.
  pool.on('error', (error) => warn(`store: a PostgreSQL connection to ${where} broke`, error));
  relaxedPool.on('error', (error) => warn(`store: a PostgreSQL connection to ${where} broke`, error));
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    await pool.end().catch(() => {});
    await relaxedPool.end().catch(() => {});
    throw new RunchartError('upstream', 'store', `store: cannot connect to PostgreSQL at ${where}: ${(error as Error).message || String(error)}; check store.url (or DATABASE_URL) and that the server runs`, { cause: error, retryable: true });
  }

  const query = async <Row extends object>(text: string, values?: unknown[]): Promise<Row[]> => {
    try {
      return (await pool.query(text, values)).rows as Row[];
    } catch (error) {
      throw failed(`a query (${firstWords(text)})`, error);
    }
  };

  const relaxed = async <Row extends object>(text: string, values?: unknown[]): Promise<Row[]> => {
    try {
      return (await relaxedPool.query(text, values)).rows as Row[];
    } catch (error) {
      throw failed(`a query (${firstWords(text)})`, error);
    }
  };

  const listeners = new Map<string, Set<(payload: string) => void>>();
  let listener: Promise<pg.Client> | undefined;
  let closed = false;
  async function connectListener(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: config.connectionString, application_name: `${config.application_name}:listen:${options.schema}` });
    client.on('notification', (message) => {
      for (const onMessage of listeners.get(message.channel) ?? []) onMessage(message.payload ?? '');
    });
    let lost = false;
    const onLost = (error?: unknown) => {
      if (lost || closed) return;
      lost = true;
      warn(`store: the LISTEN connection to ${where} broke; listening again`, error);
      listener = undefined;
      client.end().catch(() => {});
      // Messages sent while it was down are lost: listeners treat a message as a wake-up, never as the only copy.
      if (listeners.size > 0) relisten(500);
    };
    client.on('error', onLost);
    client.on('end', () => onLost());
    await client.connect();
    for (const channel of listeners.keys()) await client.query(`LISTEN "${channel}"`);
    return client;
  }
  /** Tries to listen again after `delayMs`, backing off while the server stays away. */
  const relisten = (delayMs: number): void =>
    void setTimeout(() => {
      if (closed || listener) return;
      listening().catch((again: unknown) => {
        warn(`store: listening on ${where} failed; trying again`, again);
        relisten(Math.min(delayMs * 2, 10_000));
      });
    }, delayMs).unref();
  const listening = () => (listener ??= connectListener().catch((error: unknown) => {
    listener = undefined;
    throw failed('to listen', error);
  }));

  return {
    schema: options.schema,
    where,
    query,
    relaxed,
    async transaction(work) {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        throw failed('to open a transaction', error);
      }
      const inTransaction = async <Row extends object>(text: string, values?: unknown[]) => {
        try {
          return (await client.query(text, values)).rows as Row[];
        } catch (error) {
          throw failed(`a query (${firstWords(text)})`, error);
        }
      };
      try {
        await inTransaction('BEGIN');
        const result = await work(inTransaction);
        await inTransaction('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    async listen(channel, onMessage) {
      if (!/^[\w.:-]{1,63}$/.test(channel)) throw new RunchartError('invalid-input', 'store', `store: "${channel}" is not a channel name this store listens on`);
      let handlers = listeners.get(channel);
      const fresh = !handlers;
      if (!handlers) listeners.set(channel, (handlers = new Set()));
      handlers.add(onMessage);
      const client = await listening();
      if (fresh) await client.query(`LISTEN "${channel}"`).catch((error: unknown) => Promise.reject(failed(`to listen on ${channel}`, error)));
      return async () => {
        handlers.delete(onMessage);
        if (handlers.size > 0 || listeners.get(channel) !== handlers) return;
        listeners.delete(channel);
        await (await listener)?.query(`UNLISTEN "${channel}"`).catch(() => {});
      };
    },
    async notify(channel, payload) {
      await query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    executeSql: async (text, values) => pool.query(text, values),
    async close() {
      if (closed) return;
      closed = true;
      listeners.clear();
      const client = await listener?.catch(() => undefined);
      await client?.end().catch(() => {});
      await relaxedPool.end();
      await pool.end();
    },
  };
}

/** The key a value that jsonb cannot hold is kept under, as its JSON text. */
const WRAPPED_JSON = 'runchart:json';

/**
 * JSON text for a jsonb column. jsonb cannot hold the character U+0000 (it refuses `\u0000`), so
 * a value whose text has one is kept whole as a string, `{"runchart:json": "<its JSON text>"}`,
 * and `fromJsonb` turns it back: nothing a tool or a model sent is lost or changed.
 */
export function toJsonb(value: unknown): string {
  const text = JSON.stringify(value ?? null);
  return text.includes('\\u0000') ? JSON.stringify({ [WRAPPED_JSON]: text }) : text;
}

/** A value read from a jsonb column written with `toJsonb`. */
export function fromJsonb(value: unknown): unknown {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const wrapped = (value as Record<string, unknown>)[WRAPPED_JSON];
    if (typeof wrapped === 'string' && Object.keys(value).length === 1) return JSON.parse(wrapped);
  }
  return value;
}

function firstWords(text: string): string {
  return text.trim().split(/\s+/).slice(0, 3).join(' ');
}
