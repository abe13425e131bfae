import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCapability } from '../../src/catalog/capability.js';
import type { Capability } from '../../src/catalog/contract.js';
import { createCatalog } from '../../src/catalog/registry.js';
import { mathCapabilities } from '../../src/catalog/math.js';
import type { PolicyRule } from '../../src/config.js';
import { createRuntime } from '../../src/runtime.js';
import { scriptedModel } from '../../src/testing/index.js';
import { isRunchartError } from '../../src/errors.js';
import type { ExecuteRequest, JournalClaimRequest } from '../../src/execution/contract.js';
import { createGateway } from '../../src/execution/gateway.js';
import { createPostgresMemory } from '../../src/memory/postgres.js';
import { openDatabase, type Database } from '../../src/store/postgres/db.js';
import { createPostgresJournal } from '../../src/store/postgres/journal.js';
import { migrate, migrations } from '../../src/store/postgres/migrations.js';
import { openPostgresStore, type PostgresStore, type PostgresStoreOptions } from '../../src/store/postgres/open.js';
import { openPostgresQueue, type PostgresQueue, type PostgresQueueOptions, type RunDispatch } from '../../src/store/postgres/queue.js';
import { createPostgresRunStore } from '../../src/store/postgres/runs.js';
import { describeMemoryContract } from './memory.contract.js';
import { describeQueueContract } from './queue.contract.js';
import { describeJournalContract, describeRunStoreContract, run } from './store.contract.js';
import { describePostgres, postgresUrl, sql, testSchema } from '../support/postgres.js';
import { afterEach } from 'vitest';

const opened: { close(): Promise<void> }[] = [];
afterEach(async () => {
  // Closed before the support code drops the test's schema.
  for (const resource of opened.splice(0).reverse()) await resource.close();
});

/** A pool on the test's schema, migrated, closed after the test. */
async function migratedDb(schema?: string): Promise<Database> {
  const db = await openDatabase({ url: postgresUrl!, schema: schema ?? (await testSchema()), maxConnections: 20 });
  opened.push(db);
  await migrate(db);
  return db;
}

/** The whole store on the test's schema, closed after the test. */
async function store(schema: string, options: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
  const shared = await openPostgresStore({ url: postgresUrl!, schema, handlers: {}, ...options });
  opened.push(shared);
  return shared;
}

/** The job queue on the test's schema (its own schema beside it), closed after the test. */
async function queueOn(db: Database, options: Partial<PostgresQueueOptions> = {}): Promise<PostgresQueue> {
  const queue = await openPostgresQueue(db, { handlers: {}, retries: 1, backoffSeconds: 1, pollMs: 200, ...options });
  opened.push(queue);
  return queue;
}

/** Makes every lease in the test's schema run out now, as if its holder had stopped renewing long ago. */
async function expireLeases(schema: string, table: 'runs' | 'journal') {
  await sql(`UPDATE ${schema}.${table} SET lease_expires_at = now() - interval '1 second' WHERE lease_owner IS NOT NULL`);
}

describePostgres('PostgreSQL store', () => {
  describeRunStoreContract('postgres', async () => createPostgresRunStore(await migratedDb()));
  describeJournalContract('postgres', async () => createPostgresJournal(await migratedDb()));
  describeMemoryContract('postgres', async () => createPostgresMemory(await migratedDb()));
  describeQueueContract('postgres', async ({ handlers, onGiveUp }) => queueOn(await migratedDb(), { handlers, onGiveUp }));

  describe('run jobs', () => {
    it('dispatches a run once while a dispatch of it waits, and hands it to a worker with its tenant', async () => {
      const db = await migratedDb();
      const queue = await queueOn(db);
      expect(await queue.dispatchRun({ runId: 'r1', tenantId: 'acme' })).toBe(true);
      expect(await queue.dispatchRun({ runId: 'r1', tenantId: 'acme' })).toBe(false);
      expect(await queue.dispatchRun({ runId: 'r2', tenantId: 'globex' })).toBe(true);
      const worked: (RunDispatch & { attempt: number })[] = [];
      const stop = queue.workRuns(async (dispatched, { attempt }) => void worked.push({ ...dispatched, attempt }), { concurrency: 2 });
      await expect.poll(() => worked.length).toBe(2);
      expect(worked.sort((a, b) => a.runId.localeCompare(b.runId))).toEqual([
        { runId: 'r1', tenantId: 'acme', attempt: 1 },
        { runId: 'r2', tenantId: 'globex', attempt: 1 },
      ]);
      // Worked and done: the run may be dispatched again (resumed after an approval, say).
      await expect.poll(() => queue.dispatchRun({ runId: 'r1', tenantId: 'acme' })).toBe(true);
      await expect.poll(() => worked.length).toBe(3);
      await stop();
    });

    it('queues tasks without waiting for the wake-up it sends workers, and closes only once the wake-ups are out', async () => {
      const db = await migratedDb();
      let letThrough!: () => void;
      const gate = new Promise<void>((resolve) => (letThrough = resolve));
      const sent: string[] = [];
      const slowWakeUps: Database = { ...db, notify: async (channel, payload) => (await gate, sent.push(payload), db.notify(channel, payload)) };
      const queue = await openPostgresQueue(slowWakeUps, { handlers: {}, retries: 1, backoffSeconds: 1, pollMs: 200, work: false });
      await queue.enqueue([{ id: 'run-1:memory', kind: 'memory.write', runId: 'run-1', tenantId: 'acme', principalId: 'u', payload: {} }], { signal: new AbortController().signal });
      expect(await queue.dispatchRun({ runId: 'r1', tenantId: 'acme' })).toBe(true);
      expect(sent).toEqual([]);
      let closed = false;
      const closing = queue.close().then(() => (closed = true));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(closed).toBe(false);
      letThrough();
      await closing;
      expect(sent).toHaveLength(2);
    });

    it('gives the job of a worker that died to another once it expires, as its next attempt', async () => {
      const schema = await testSchema();
      const [dying, living] = [await migratedDb(schema), await migratedDb(schema)];
      const first = await queueOn(dying, { work: false, expireSeconds: 1 });
      const second = await queueOn(living, { work: false, expireSeconds: 1 });
      await first.dispatchRun({ runId: 'r1', tenantId: 'acme' }, { expireSeconds: 1 });
      let taken!: () => void;
      const tookIt = new Promise<void>((resolve) => (taken = resolve));
      // The dying worker takes the job and never finishes it (it hangs until closed, as a dead process would forever).
      const stopDying = first.workRuns(async (_run, { signal }) => {
        taken();
        await new Promise((resolve) => signal.addEventListener('abort', resolve));
        throw new Error('stopped');
      });
      await tookIt;
      const worked: number[] = [];
      const stopLiving = second.workRuns(async (_run, { attempt }) => void worked.push(attempt));
      // Once the job has been active past its expiry, a sweep fails it, and its retry goes to the living worker.
      await expect.poll(async () => (await second.maintain(), worked), { timeout: 20_000, interval: 500 }).toEqual([2]);
      await stopLiving();
      await stopDying();
    });
  });

  describe('migrations', () => {
    it('applies each migration once when several processes start at once, and records it', async () => {
      const schema = await testSchema();
      const stores = await Promise.all(Array.from({ length: 4 }, () => store(schema)));
      expect(stores).toHaveLength(4);
      const recorded = await sql<{ version: number; name: string }>(`SELECT version, name FROM ${schema}.migrations ORDER BY version`);
      expect(recorded).toEqual(migrations.map(({ version, name }) => ({ version, name })));
      // The job queue's own schema was set up beside it, by pg-boss under its own lock.
      expect(await sql(`SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'job'`, [`${schema}_queue`])).toHaveLength(1);
      // A later start finds nothing left to do.
      expect(await migrate(stores[0]!.db)).toEqual([]);
    });

    it('refuses a schema newer than this build knows, naming both versions', async () => {
      const db = await migratedDb();
      await sql(`INSERT INTO ${db.schema}.migrations (version, name) VALUES (99, 'from a later build')`);
      await expect(migrate(db)).rejects.toThrow(new RegExp(`schema ${db.schema} .* is at migration 99, newer than this build knows \\(${migrations.at(-1)!.version}\\); upgrade runchart`));
    });

    it('names the server and the fix when it cannot connect, without the password', async () => {
      const error = await openDatabase({ url: 'postgres://someone:secret@127.0.0.1:1/nowhere', schema: 'runchart' }).catch((caught: unknown) => caught);
      expect(isRunchartError(error) && error.kind).toBe('upstream');
      expect((error as Error).message).toMatch(/store: cannot connect to PostgreSQL at 127\.0\.0\.1:1\/nowhere: .*check store\.url \(or DATABASE_URL\)/);
      expect((error as Error).message).not.toContain('secret');
    });
  });

  describe('journal claims', () => {
    const claimOf = (owner: string, overrides: Partial<JournalClaimRequest> = {}): JournalClaimRequest => ({
      key: 'run-1:c0.0',
      tenantId: 'acme',
      runId: 'run-1',
      deadline: 1_000,
      owner,
      leaseMs: 60_000,
      ...overrides,
    });

    it('gives a key to exactly one of many claimants at once; the others are told who holds it and until when', async () => {
      const schema = await testSchema();
      // Two pools, as two processes would have: the claims race in the database, not in one client.
      const journals = [createPostgresJournal(await migratedDb(schema)), createPostgresJournal(await migratedDb(schema))];
      const claims = await Promise.all(Array.from({ length: 24 }, (_, index) => journals[index % 2]!.claim(claimOf(`worker-${index}`))));
      const owners = claims.filter((claim) => claim.status === 'claimed');
      expect(owners).toHaveLength(1);
      const winner = `worker-${claims.findIndex((claim) => claim.status === 'claimed')}`;
      const held = claims.filter((claim) => claim.status === 'held');
      expect(held).toHaveLength(23);
      for (const claim of held) expect(claim).toMatchObject({ status: 'held', owner: winner, until: owners[0]!.until });
      // What is left of the lease, by the database's clock: something, while it lives.
      expect(held.every((claim) => claim.status === 'held' && claim.retryInMs > 0)).toBe(true);
    });

    it('answers a finished call with its recorded result, to anyone, for good', async () => {
      const journal = createPostgresJournal(await migratedDb());
      expect(await journal.claim(claimOf('a'))).toMatchObject({ status: 'claimed', attempts: 0, deadline: 1_000 });
      await journal.put({ key: 'run-1:c0.0', runId: 'run-1', state: 'started', attempts: 1, deadline: 1_000, updatedAt: 1 });
      await journal.put({ key: 'run-1:c0.0', runId: 'run-1', state: 'completed', result: { status: 'ok', output: 5 }, attempts: 1, deadline: 1_000, updatedAt: 2 });
      expect(await journal.claim(claimOf('b'))).toEqual({ status: 'completed', result: { status: 'ok', output: 5 }, attempts: 1 });
      // A late write of a started attempt (a worker that lost its lease) does not undo the finish.
      await journal.put({ key: 'run-1:c0.0', runId: 'run-1', state: 'started', attempts: 2, deadline: 1_000, updatedAt: 3 });
      expect(await journal.claim(claimOf('a'))).toEqual({ status: 'completed', result: { status: 'ok', output: 5 }, attempts: 1 });
    });

    it('lets another owner take a crashed claim over once its lease ran out, with the same key, its attempts and its deadline', async () => {
      const schema = await testSchema();
      const journal = createPostgresJournal(await migratedDb(schema));
      expect(await journal.claim(claimOf('crashed', { deadline: 1_000 }))).toMatchObject({ status: 'claimed' });
      await journal.put({ key: 'run-1:c0.0', runId: 'run-1', state: 'started', attempts: 1, deadline: 1_000, updatedAt: 1 });
      expect(await journal.claim(claimOf('next', { deadline: 9_000 }))).toMatchObject({ status: 'held', owner: 'crashed' });
      await expireLeases(schema, 'journal');
      expect(await journal.claim(claimOf('next', { deadline: 9_000 }))).toMatchObject({ status: 'claimed', attempts: 1, deadline: 1_000 });
      // The crashed owner, back, has lost it: its renewal fails and its claim is held by the new owner.
      expect(await journal.renew({ key: 'run-1:c0.0', tenantId: 'acme', owner: 'crashed', leaseMs: 60_000 })).toBe(false);
      expect(await journal.renew({ key: 'run-1:c0.0', tenantId: 'acme', owner: 'next', leaseMs: 60_000 })).toBe(true);
      expect(await journal.claim(claimOf('crashed'))).toMatchObject({ status: 'held', owner: 'next' });
    });

    it('records the start of the attempt a granted claim allows, and nothing for a claim it refuses', async () => {
      const schema = await testSchema();
      const journal = createPostgresJournal(await migratedDb(schema));
      expect(await journal.claim(claimOf('a', { deadline: 1_000 }))).toMatchObject({ status: 'claimed', attempts: 0, started: true });
      expect(await journal.get('run-1:c0.0')).toMatchObject({ key: 'run-1:c0.0', runId: 'run-1', state: 'started', attempts: 1, deadline: 1_000 });
      expect(await journal.claim(claimOf('b'))).toMatchObject({ status: 'held', owner: 'a' });
      expect(await journal.get('run-1:c0.0')).toMatchObject({ attempts: 1 });
      // The owner asking again (a restored run in the same process) starts another attempt.
      expect(await journal.claim(claimOf('a'))).toMatchObject({ status: 'claimed', attempts: 1, started: true });
      await expireLeases(schema, 'journal');
      expect(await journal.claim(claimOf('b', { deadline: 9_000 }))).toMatchObject({ status: 'claimed', attempts: 2, deadline: 1_000, started: true });
      expect(await journal.get('run-1:c0.0')).toMatchObject({ state: 'started', attempts: 3, deadline: 1_000 });
      // Released with its run, like an entry the gateway put.
      await journal.release('run-1');
      expect(await journal.get('run-1:c0.0')).toBeUndefined();
    });

    it('never hands one tenant\'s key, or its result, to another', async () => {
      const journal = createPostgresJournal(await migratedDb());
      await journal.claim(claimOf('a'));
      await journal.put({ key: 'run-1:c0.0', runId: 'run-1', state: 'completed', result: { status: 'ok', output: 'acme secret' }, attempts: 1, updatedAt: 1 });
      await expect(journal.claim(claimOf('b', { tenantId: 'globex' }))).rejects.toThrow(/execution: idempotency key run-1:c0\.0 belongs to another tenant/);
    });
  });

  describe('the gateway on a shared journal', () => {
    const request = (overrides: Partial<ExecuteRequest> = {}): ExecuteRequest => ({
      capability: 'effects.write',
      version: '1.0.0',
      arguments: '{"row":"r1"}',
      idempotencyKey: 'run-1:c0.0',
      deadline: Date.now() + 60_000,
      runId: 'run-1',
      callId: 'c0.0',
      tenantId: 'acme',
      principalId: 'u',
      ...overrides,
    });
    /** A tool whose effect is a row under a unique key: a second execution would fail on it. */
    function effectTool(db: Database, gate?: Promise<void>): { capability: Capability; executions: () => number } {
      let executions = 0;
      const capability = defineCapability({
        name: 'effects.write',
        version: '1.0.0',
        description: 'Write one row',
        input: z.object({ row: z.string() }),
        output: z.object({ written: z.string() }),
        effects: 'write',
        handler: async ({ row }) => {
          executions++;
          await gate;
          await db.query(`INSERT INTO ${db.schema}.effects (key) VALUES ($1)`, [row]);
          return { written: row };
        },
      }) as Capability;
      return { capability, executions: () => executions };
    }

    it('runs a call once across processes at once: the second waits and gets the first one\'s result', async () => {
      const schema = await testSchema();
      const [one, two] = [await migratedDb(schema), await migratedDb(schema)];
      await sql(`CREATE TABLE ${schema}.effects (key text PRIMARY KEY)`);
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const tools = [effectTool(one, gate), effectTool(two, gate)];
      const gateways = tools.map((tool, index) =>
        createGateway({ catalog: createCatalog([tool.capability]), journal: createPostgresJournal(index ? two : one), owner: `process-${index}`, claimPollMs: 10 }),
      );
      const signal = new AbortController().signal;
      const first = gateways[0]!.execute(request(), { signal });
      await expect.poll(() => tools[0]!.executions()).toBe(1);
      const second = gateways[1]!.execute(request(), { signal });
      release();
      expect(await first).toEqual({ status: 'ok', output: { written: 'r1' } });
      expect(await second).toEqual({ status: 'ok', output: { written: 'r1' } });
      expect(tools[0]!.executions() + tools[1]!.executions()).toBe(1);
      expect(await sql(`SELECT key FROM ${schema}.effects`)).toEqual([{ key: 'r1' }]);
      // Finished: asked again later, by either, it is answered from the journal.
      expect(await gateways[1]!.execute(request(), { signal })).toEqual({ status: 'ok', output: { written: 'r1' } });
      expect(tools[1]!.executions()).toBe(0);
    });

    it('takes over the call of a process that died once its lease ran out, counting the attempt on', async () => {
      const schema = await testSchema();
      const db = await migratedDb(schema);
      await sql(`CREATE TABLE ${schema}.effects (key text PRIMARY KEY)`);
      const journal = createPostgresJournal(db);
      // The process that died: it claimed the key and started an attempt, then stopped renewing.
      await journal.claim({ key: 'run-1:c0.0', tenantId: 'acme', runId: 'run-1', deadline: Date.now() + 60_000, owner: 'dead', leaseMs: 60_000 });
      await journal.put({ key: 'run-1:c0.0', runId: 'run-1', state: 'started', attempts: 1, deadline: Date.now() + 60_000, updatedAt: 1 });
      const tool = effectTool(db);
      const gateway = createGateway({ catalog: createCatalog([tool.capability]), journal, owner: 'alive', claimPollMs: 10 });
      const result = gateway.execute(request(), { signal: new AbortController().signal });
      // It waits while the lease lives, and takes the call once it has run out.
      await expect.poll(async () => (await sql<{ lease_owner: string }>(`SELECT lease_owner FROM ${schema}.journal`))[0]?.lease_owner).toBe('dead');
      expect(tool.executions()).toBe(0);
      await expireLeases(schema, 'journal');
      expect(await result).toEqual({ status: 'ok', output: { written: 'r1' } });
      expect(tool.executions()).toBe(1);
      expect(await journal.get('run-1:c0.0')).toMatchObject({ state: 'completed', attempts: 2 });
    });

    it('renews its lease while a long call runs, so nobody takes it over meanwhile', async () => {
      const schema = await testSchema();
      const db = await migratedDb(schema);
      await sql(`CREATE TABLE ${schema}.effects (key text PRIMARY KEY)`);
      let release!: () => void;
      const tool = effectTool(db, new Promise<void>((resolve) => (release = resolve)));
      const gateway = createGateway({ catalog: createCatalog([tool.capability]), journal: createPostgresJournal(db), owner: 'slow', leaseMs: 300 });
      const result = gateway.execute(request(), { signal: new AbortController().signal });
      const expiry = async () => (await sql<{ until: Date }>(`SELECT lease_expires_at AS until FROM ${schema}.journal`))[0]?.until.getTime() ?? 0;
      await expect.poll(expiry).toBeGreaterThan(0);
      const first = await expiry();
      await expect.poll(expiry, { timeout: 10_000 }).toBeGreaterThan(first);
      release();
      expect(await result).toMatchObject({ status: 'ok' });
    });
  });

  describe('run leases', () => {
    const lease = { tenantId: 'acme', leaseMs: 60_000 };

    it('lets one worker hold a run; another is told who holds it until the lease runs out, then takes it over', async () => {
      const schema = await testSchema();
      const db = await migratedDb(schema);
      const first = createPostgresRunStore(db, { owner: 'w1' });
      const second = createPostgresRunStore(db, { owner: 'w2' });
      await first.save(run({ runId: 'r1', status: 'running', updatedAt: 1 }));
      expect(await first.leases.acquire({ ...lease, runId: 'r1', owner: 'w1' })).toMatchObject({ status: 'acquired', run: { runId: 'r1', status: 'running' } });
      expect(await second.leases.acquire({ ...lease, runId: 'r1', owner: 'w2' })).toMatchObject({ status: 'held', owner: 'w1' });
      // While w1 holds it, w2's saves are refused, naming the holder; w1's go through.
      await expect(second.save(run({ runId: 'r1', updatedAt: 2 }))).rejects.toThrow(/store: run r1 is held by w1 until .*; this process's save of it was refused/);
      await first.save(run({ runId: 'r1', updatedAt: 3 }));
      expect(await second.leases.takeOverExpired({ owner: 'w2', leaseMs: 60_000, limit: 10 })).toEqual([]);
      await expireLeases(schema, 'runs');
      const taken = await second.leases.takeOverExpired({ owner: 'w2', leaseMs: 60_000, limit: 10 });
      expect(taken.map((entry) => [entry.run.runId, entry.run.updatedAt, entry.previousOwner])).toEqual([['r1', 3, 'w1']]);
      // w1 comes back: its lease is gone, and so is its right to save.
      expect(await first.leases.renew({ ...lease, runId: 'r1', owner: 'w1' })).toBe(false);
      await expect(first.save(run({ runId: 'r1', updatedAt: 4 }))).rejects.toThrow(/held by w2/);
      await second.save(run({ runId: 'r1', status: 'completed', updatedAt: 5 }));
      // Finished: the lease is let go, and nothing can be leased any more.
      expect(await first.leases.acquire({ ...lease, runId: 'r1', owner: 'w1' })).toMatchObject({ status: 'finished', run: { runId: 'r1', status: 'completed' } });
      expect(await first.leases.acquire({ ...lease, runId: 'missing', owner: 'w1' })).toEqual({ status: 'missing' });
    });

    it('gives a released run to the next worker at once, and each lapsed run to one sweeper only', async () => {
      const schema = await testSchema();
      const db = await migratedDb(schema);
      const store = createPostgresRunStore(db);
      for (let index = 0; index < 30; index++) await store.save(run({ runId: `r${index}`, status: index % 2 ? 'running' : 'awaiting_approval' }));
      await store.save(run({ runId: 'done', status: 'completed' }));
      expect(await store.leases.acquire({ ...lease, runId: 'r0', owner: 'w1' })).toMatchObject({ status: 'acquired' });
      await store.leases.release({ tenantId: 'acme', runId: 'r0', owner: 'w1' });
      expect(await store.leases.acquire({ ...lease, runId: 'r0', owner: 'w2' })).toMatchObject({ status: 'acquired' });
      for (let index = 1; index < 30; index++) await store.leases.acquire({ ...lease, runId: `r${index}`, owner: 'dead' });
      await expireLeases(schema, 'runs');
      const sweeps = await Promise.all(['a', 'b', 'c'].map((owner) => store.leases.takeOverExpired({ owner, leaseMs: 60_000, limit: 30 })));
      const taken = sweeps.flat().map((entry) => entry.run.runId);
      expect(taken.sort()).toEqual(Array.from({ length: 30 }, (_, index) => `r${index}`).sort());
      expect(new Set(taken).size).toBe(30);
    });
  });

  describe('run listings', () => {
    it('lists a tenant\'s runs newest first, by status, a page at a time', async () => {
      const store = createPostgresRunStore(await migratedDb());
      for (let index = 0; index < 7; index++) await store.save(run({ runId: `r${index}`, status: index % 3 ? 'completed' : 'awaiting_approval', updatedAt: 100 + index }));
      await store.save(run({ runId: 'other', tenantId: 'globex', updatedAt: 500 }));
      const first = await store.list({ tenantId: 'acme', limit: 3 });
      expect(first.map((summary) => summary.runId)).toEqual(['r6', 'r5', 'r4']);
      const last = first.at(-1)!;
      expect((await store.list({ tenantId: 'acme', limit: 3, after: { updatedAt: last.updatedAt, runId: last.runId } })).map((summary) => summary.runId)).toEqual(['r3', 'r2', 'r1']);
      expect((await store.list({ tenantId: 'acme', status: ['awaiting_approval'] })).map((summary) => summary.runId)).toEqual(['r6', 'r3', 'r0']);
      expect(await store.load('r1', { tenantId: 'globex' })).toBeUndefined();
      expect(await store.load('r1', { tenantId: 'acme' })).toMatchObject({ runId: 'r1' });
    });

    it('refuses a run id another tenant has, and leaves that tenant\'s run as it was', async () => {
      const store = createPostgresRunStore(await migratedDb());
      await store.save(run({ runId: 'shared', tenantId: 'acme', snapshot: { value: 'mine' } }));
      await expect(store.save(run({ runId: 'shared', tenantId: 'globex', snapshot: { value: 'theirs' } }))).rejects.toThrow(/store: run id shared belongs to another tenant/);
      expect(await store.load('shared', { tenantId: 'acme' })).toMatchObject({ snapshot: { value: 'mine' } });
      // Saved before ingress accepted it, a run has no tenant yet: its next save gives it one, for good.
      await store.save(run({ runId: 'early', tenantId: '', principalId: '' }));
      await store.save(run({ runId: 'early', tenantId: 'acme', updatedAt: 2 }));
      expect(await store.load('early', { tenantId: 'acme' })).toMatchObject({ tenantId: 'acme', updatedAt: 2 });
      await expect(store.save(run({ runId: 'early', tenantId: 'globex', updatedAt: 3 }))).rejects.toThrow(/belongs to another tenant/);
    });
  });

  describe('text jsonb and text columns cannot hold', () => {
    it('keeps a snapshot and a tool result with U+0000 in them exactly, and memory with it readable', async () => {
      const db = await migratedDb();
      const runs = createPostgresRunStore(db);
      const odd = { note: 'a\u0000b', literal: '\\u0000 as typed', nested: [{ deep: '\u0000' }] };
      await runs.save(run({ runId: 'nul', snapshot: odd }));
      expect((await runs.load('nul'))!.snapshot).toEqual(odd);
      await runs.save(run({ runId: 'nul', status: 'completed', snapshot: { ...odd, done: true } }));
      expect((await runs.load('nul', { tenantId: 'acme' }))!.snapshot).toEqual({ ...odd, done: true });
      const journal = createPostgresJournal(db);
      await journal.put({ key: 'nul:c0.0', runId: 'nul', state: 'completed', result: { status: 'ok', output: 'bytes \u0000 here' }, attempts: 1, updatedAt: 1 });
      expect(await journal.get('nul:c0.0')).toMatchObject({ result: { status: 'ok', output: 'bytes \u0000 here' } });
      expect(await journal.claim({ key: 'nul:c0.0', tenantId: 'acme', runId: 'nul', deadline: 1, owner: 'w', leaseMs: 1_000 })).toMatchObject({ result: { output: 'bytes \u0000 here' } });
      const memory = createPostgresMemory(db);
      const signal = new AbortController().signal;
      await memory.remember({ tenantId: 'acme', principalId: 'u', sessionId: 's', runId: 'nul', input: 'binary\u0000input', output: 'ok', createdAt: new Date().toISOString() }, { idempotencyKey: 'nul', signal });
      expect((await memory.recall({ tenantId: 'acme', principalId: 'u', sessionId: 's', query: 'binary', limit: 5 }, { signal })).history[0]).toEqual({ role: 'user', content: 'binary\uFFFDinput' });
    });
  });

  describe('memory search', () => {
    it('ranks items sharing more of the query first, and reads query syntax as plain words', async () => {
      const memory = createPostgresMemory(await migratedDb());
      const signal = new AbortController().signal;
      const remember = (key: string, input: string) =>
        memory.remember({ tenantId: 'acme', principalId: 'u', runId: key, input, output: 'noted', createdAt: new Date(Date.UTC(2026, 0, 1)).toISOString() }, { idempotencyKey: key, signal });
      await remember('one', 'the invoice for the refund');
      await remember('both', 'the invoice for the refund of the order, an order refund');
      await remember('none', 'bread and butter');
      const found = await memory.recall({ tenantId: 'acme', principalId: 'u', query: 'order refund', limit: 5 }, { signal });
      expect(found.items.map((item) => item.id)).toEqual(['both', 'one']);
      for (const query of ['-refund "invoice', 'or or', '!!! & | :*', '']) {
        await expect(memory.recall({ tenantId: 'acme', principalId: 'u', query, limit: 5 }, { signal })).resolves.toBeDefined();
      }
    });
  });

  describe('tenants', () => {
    const tenants = ['acme', 'globex', 'initech'];
    const words = ['invoice', 'refund', 'order', 'paris', 'meeting'];
    const step = fc.oneof(
      fc.record({ kind: fc.constant('save' as const), tenant: fc.constantFrom(...tenants), status: fc.constantFrom('running' as const, 'awaiting_approval' as const, 'completed' as const) }),
      fc.record({ kind: fc.constant('remember' as const), tenant: fc.constantFrom(...tenants), principal: fc.constantFrom('u1', 'u2'), text: fc.constantFrom(...words) }),
      fc.record({ kind: fc.constant('read' as const), tenant: fc.constantFrom(...tenants), principal: fc.constantFrom('u1', 'u2'), text: fc.constantFrom(...words), pick: fc.nat() }),
    );

    it('never lets a read, a listing, an approval lookup, a lease or a recall cross them', async () => {
      const db = await migratedDb();
      const runs = createPostgresRunStore(db);
      const memory = createPostgresMemory(db);
      const signal = new AbortController().signal;
      let counter = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 25 }), async (steps) => {
          const saved: string[] = [];
          for (const next of steps) {
            const id = `x${counter++}`;
            if (next.kind === 'save') {
              saved.push(id);
              await runs.save(run({ runId: id, tenantId: next.tenant, status: next.status, snapshot: { owner: next.tenant } }));
            } else if (next.kind === 'remember') {
              const owner = `owner=${next.tenant}/${next.principal}`;
              await memory.remember({ tenantId: next.tenant, principalId: next.principal, sessionId: 's', runId: id, input: `${next.text} ${owner}`, output: `${next.text} ${owner}`, createdAt: new Date(1_700_000_000_000 + counter).toISOString() }, { idempotencyKey: id, signal });
            } else {
              // Any run id, of any tenant: what comes back is the asking tenant's, or nothing.
              const runId = saved.length ? saved[next.pick % saved.length]! : 'none';
              const loaded = await runs.load(runId, { tenantId: next.tenant });
              if (loaded) expect([loaded.tenantId, loaded.snapshot]).toEqual([next.tenant, { owner: next.tenant }]);
              for (const summary of await runs.list({ tenantId: next.tenant })) expect(summary.tenantId).toBe(next.tenant);
              for (const parked of await runs.list({ tenantId: next.tenant, status: ['awaiting_approval'] })) expect([parked.tenantId, parked.status]).toEqual([next.tenant, 'awaiting_approval']);
              const lease = await runs.leases.acquire({ tenantId: next.tenant, runId, owner: 'w', leaseMs: 60_000 });
              if (lease.status === 'acquired') expect(lease.run.tenantId).toBe(next.tenant);
              if (lease.status === 'finished') expect(lease.run.tenantId).toBe(next.tenant);
              await runs.leases.release({ tenantId: next.tenant, runId, owner: 'w' });
              const recalled = await memory.recall({ tenantId: next.tenant, principalId: next.principal, sessionId: 's', query: next.text, limit: 10 }, { signal });
              for (const text of [...recalled.items.map((item) => item.text), ...recalled.history.map((turn) => turn.content)]) expect(text).toContain(`owner=${next.tenant}/${next.principal}`);
            }
          }
        }),
        { numRuns: 30 },
      );
    });
  });

  describe('a runtime on store kind postgres', () => {
    const rules: PolicyRule[] = [
      { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
      { id: 'math-needs-approval', stage: 'tool', effect: 'require_approval', capabilities: ['math.*'] },
      { id: 'managers-approve', stage: 'approval', effect: 'allow', capabilities: ['math.*'], principals: ['manager'] },
    ];
    const runtimeOn = (schema: string, steps: Parameters<typeof scriptedModel>[0]) =>
      createRuntime({
        config: { store: { kind: 'postgres', url: postgresUrl!, schema }, policy: { rules }, telemetry: { emit_structured_events: false, record_runs: false } },
        capabilities: mathCapabilities,
        model: scriptedModel(steps),
      });

    it('keeps runs, the journal, the queue and memory in the database: a run parked by one process is approved in the next', async () => {
      const schema = await testSchema();
      const first = runtimeOn(schema, [{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }]);
      const parked = await first.run({ input: 'what is 2+3?', tenantId: 'acme', principalId: 'u', sessionId: 's' });
      expect(parked.status).toBe('awaiting_approval');
      await first.close();
      expect(await sql(`SELECT tenant_id, status FROM ${schema}.runs`)).toEqual([{ tenant_id: 'acme', status: 'awaiting_approval' }]);

      const second = runtimeOn(schema, [{ text: '5' }]);
      expect((await second.recover()).map((handle) => handle.runId)).toEqual([parked.runId]);
      const done = await second.approve(parked.runId, 'c0.0', { principalId: 'manager' });
      expect(done).toMatchObject({ status: 'completed', output: '5' });
      await second.drain();
      expect(await sql(`SELECT status, snapshot->>'status' AS snapshot_status FROM ${schema}.runs`)).toEqual([{ status: 'completed', snapshot_status: 'done' }]);
      // The finished run's journal entries were released; its memory write-back landed under its tenant.
      await expect.poll(async () => sql(`SELECT key FROM ${schema}.journal`)).toEqual([]);
      expect(await sql(`SELECT tenant_id, idempotency_key, input, output FROM ${schema}.memory`)).toEqual([
        { tenant_id: 'acme', idempotency_key: `${parked.runId}:memory.write`, input: 'what is 2+3?', output: '5' },
      ]);
      expect((await second.list({ tenantId: 'acme' })).map((summary) => [summary.runId, summary.status])).toEqual([[parked.runId, 'completed']]);
      expect(await second.list({ tenantId: 'globex' })).toEqual([]);
      await second.close();
    });
  });

  describe('LISTEN/NOTIFY', () => {
    it('carries a message from one process to another', async () => {
      const schema = await testSchema();
      const [sender, receiver] = [await migratedDb(schema), await migratedDb(schema)];
      const received: string[] = [];
      const stop = await receiver.listen(`${schema}_events`, (payload) => received.push(payload));
      await sender.notify(`${schema}_events`, JSON.stringify({ type: 'run.cancel', runId: 'r1' }));
      await expect.poll(() => received).toEqual(['{"type":"run.cancel","runId":"r1"}']);
      await stop();
      await sender.notify(`${schema}_events`, 'after');
      await sender.notify(`${schema}_other`, 'elsewhere');
      // A message sent after the first one arrives after it: once 'marker' is in, 'after' would have been.
      const marker = await receiver.listen(`${schema}_marker`, (payload) => received.push(payload));
      await sender.notify(`${schema}_marker`, 'marker');
      await expect.poll(() => received).toEqual(['{"type":"run.cancel","runId":"r1"}', 'marker']);
      await marker();
    });

    it('listens again after its connection is cut, on every channel it listened on', async () => {
      const schema = await testSchema();
      const warnings: string[] = [];
      const receiver = await openDatabase({ url: postgresUrl!, schema, onWarning: (message) => warnings.push(message) });
      opened.push(receiver);
      const sender = await migratedDb(schema);
      const received: string[] = [];
      await receiver.listen(`${schema}_a`, (payload) => received.push(`a:${payload}`));
      await receiver.listen(`${schema}_b`, (payload) => received.push(`b:${payload}`));
      const cut = await sql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`runchart:listen:${schema}`]);
      expect(cut).toHaveLength(1);
      await expect.poll(() => warnings.some((message) => message.includes('the LISTEN connection') && message.includes('listening again'))).toBe(true);
      // Messages sent while it was down are lost (listeners take them as wake-ups); once it is back, both channels arrive.
      await expect
        .poll(async () => {
          await sender.notify(`${schema}_a`, 'one');
          await sender.notify(`${schema}_b`, 'two');
          return received.includes('a:one') && received.includes('b:two');
        }, { timeout: 15_000, interval: 200 })
        .toBe(true);
    });
  });
});

describe('PostgreSQL store: bad options', () => {
  it('fails a run with a message naming the server when the database cannot be reached, and closes cleanly', async () => {
    const runtime = createRuntime({ config: { store: { kind: 'postgres', url: 'postgres://someone:secret@127.0.0.1:1/none' }, telemetry: { emit_structured_events: false, record_runs: false } }, model: scriptedModel([]) });
    const outcome = await runtime.run({ input: 'hello', tenantId: 'acme', principalId: 'u' }).then(
      (result) => JSON.stringify(result.error),
      (error: unknown) => (error as Error).message,
    );
    expect(outcome).toMatch(/cannot connect to PostgreSQL at 127\.0\.0\.1:1\/none/);
    expect(outcome).not.toContain('secret');
    await runtime.close();
  });

  it('refuses a schema name it would have to quote, naming the rule', async () => {
    await expect(openDatabase({ url: 'postgres://postgres@127.0.0.1:5432/test', schema: 'Robert"); DROP' })).rejects.toThrow(/store: schema "Robert"\); DROP" is not a plain schema name/);
  });
});
