import { randomBytes } from 'node:crypto';
import { afterEach, describe } from 'vitest';
import { openDatabase, type Database } from '../../src/store/postgres/db.js';

/**
 * The PostgreSQL the suites run against, from RUNCHART_TEST_DATABASE_URL. Without the variable
 * the suites are skipped, saying so in one line; with it and CI=true, a server that cannot be
 * reached fails them (CI must not pass by testing nothing); without CI it skips them.
 */
export const postgresUrl = process.env.RUNCHART_TEST_DATABASE_URL;

const reachable = postgresUrl ? await probe(postgresUrl) : { ok: false as const, reason: 'RUNCHART_TEST_DATABASE_URL is not set' };
const runs = postgresUrl !== undefined && (reachable.ok || process.env.CI === 'true');
if (!runs) {
  console.log(`PostgreSQL suites skipped (${reachable.ok ? '' : reachable.reason}): run them with RUNCHART_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx vitest run test/contracts/postgres.contract.test.ts`);
}

async function probe(url: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    const db = await openDatabase({ url, schema: 'public', maxConnections: 1 });
    await db.close();
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: `PostgreSQL at RUNCHART_TEST_DATABASE_URL cannot be reached: ${(error as Error).message}` };
  }
}

/** `describe` for suites that need PostgreSQL: runs them when the server is there (or CI insists). */
export function describePostgres(name: string, body: () => void): void {
  describe.runIf(runs)(name, body);
}

const made: { schema: string; admin: Database }[] = [];

/**
 * A schema of the test's own (created now, dropped after the test with the job queue's schema
 * beside it), and its name for the store's options.
 * @example
 * const schema = await testSchema();
 * const store = await openPostgresStore({ url: postgresUrl!, schema, handlers: {} });
 */
export async function testSchema(): Promise<string> {
  const schema = `rc_test_${randomBytes(6).toString('hex')}`;
  const admin = await openDatabase({ url: postgresUrl!, schema, maxConnections: 1 });
  made.push({ schema, admin });
  await admin.query(`CREATE SCHEMA ${schema}`);
  return schema;
}

/** Runs SQL in the test's database as the test support does (to age a lease, to look at a row). */
export async function sql<Row extends object = Record<string, unknown>>(text: string, values?: unknown[]): Promise<Row[]> {
  const admin = made.at(-1)?.admin;
  if (!admin) throw new Error('sql() needs testSchema() first');
  return admin.query<Row>(text, values);
}

afterEach(async () => {
  for (const { schema, admin } of made.splice(0)) {
    try {
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.query(`DROP SCHEMA IF EXISTS ${schema}_queue CASCADE`);
    } finally {
      await admin.close();
    }
  }
});
