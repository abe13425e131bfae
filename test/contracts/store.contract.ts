import { describe, expect, it } from 'vitest';
import type { ExecutionJournal } from '../../src/execution/contract.js';
import { SCHEMA_VERSION, type PersistedRun, type RunStore } from '../../src/store/contract.js';

/** A stored run for the suites, with `overrides` on top. */
export const run = (overrides: Partial<PersistedRun> = {}): PersistedRun => ({
  schemaVersion: SCHEMA_VERSION,
  runId: 'run-1',
  tenantId: 'acme',
  principalId: 'u',
  status: 'running',
  updatedAt: 1,
  snapshot: { value: 'policy', context: { note: 'x' } },
  ...overrides,
});

/** The run store contract: any RunStore, in memory, on files or in PostgreSQL, must pass it. */
export function describeRunStoreContract(name: string, create: () => Promise<RunStore>) {
  describe(`run store contract: ${name}`, () => {
    it('loads what it saved, as a copy', async () => {
      const store = await create();
      await store.save(run());
      const loaded = await store.load('run-1');
      expect(loaded).toEqual(run());
      (loaded!.snapshot as { value: string }).value = 'changed';
      expect((await store.load('run-1'))!.snapshot).toEqual(run().snapshot);
      expect(await store.load('missing')).toBeUndefined();
    });

    it('lists active runs and a tenant’s runs only', async () => {
      const store = await create();
      await store.save(run({ runId: 'a', status: 'running' }));
      await store.save(run({ runId: 'b', status: 'awaiting_approval' }));
      await store.save(run({ runId: 'c', status: 'completed' }));
      await store.save(run({ runId: 'd', tenantId: 'globex', status: 'failed' }));
      expect((await store.listActive()).map((stored) => stored.runId).sort()).toEqual(['a', 'b']);
      expect((await store.list({ tenantId: 'acme' })).map((stored) => stored.runId).sort()).toEqual(['a', 'b', 'c']);
      expect((await store.list({ tenantId: 'globex' })).map((stored) => stored.runId)).toEqual(['d']);
    });

    it('keeps the latest save of a run', async () => {
      const store = await create();
      await store.save(run({ status: 'running', updatedAt: 1 }));
      await store.save(run({ status: 'completed', updatedAt: 2 }));
      expect(await store.load('run-1')).toMatchObject({ status: 'completed', updatedAt: 2 });
      expect(await store.listActive()).toEqual([]);
    });

    it('keeps a finished run finished: a late save of an earlier step changes nothing', async () => {
      const store = await create();
      await store.save(run({ status: 'completed', updatedAt: 2, snapshot: { value: 'completed', context: {} } }));
      await store.save(run({ status: 'running', updatedAt: 3 }));
      expect(await store.load('run-1')).toMatchObject({ status: 'completed', updatedAt: 2, snapshot: { value: 'completed' } });
      expect(await store.listActive()).toEqual([]);
    });

    it('lists summaries: the identity and status of each run, never its snapshot', async () => {
      const store = await create();
      await store.save(run({ runId: 'a', status: 'running', updatedAt: 5 }));
      await store.save(run({ runId: 'b', status: 'denied', updatedAt: 6 }));
      const listed = (await store.list({ tenantId: 'acme' })).sort((x, y) => x.updatedAt - y.updatedAt);
      expect(listed).toEqual([
        { runId: 'a', tenantId: 'acme', principalId: 'u', status: 'running', updatedAt: 5 },
        { runId: 'b', tenantId: 'acme', principalId: 'u', status: 'denied', updatedAt: 6 },
      ]);
    });

    it('gives back a finished run exactly, text beyond ASCII included, as a copy', async () => {
      const store = await create();
      const note = 'naïve café — 日本語 😀';
      await store.save(run({ runId: 'x', status: 'completed', snapshot: { value: 'completed', context: { note } } }));
      await store.save(run({ runId: 'y', status: 'completed', snapshot: { value: 'completed', context: { note: `${note}${note}` } } }));
      const loaded = await store.load('x');
      expect(loaded!.snapshot).toEqual({ value: 'completed', context: { note } });
      (loaded!.snapshot as { value: string }).value = 'changed';
      expect((await store.load('x'))!.snapshot).toEqual({ value: 'completed', context: { note } });
      expect((await store.load('y'))!.snapshot).toEqual({ value: 'completed', context: { note: `${note}${note}` } });
    });
  });
}

/** The journal contract: any ExecutionJournal must pass it. */
export function describeJournalContract(name: string, create: () => Promise<ExecutionJournal>) {
  describe(`journal contract: ${name}`, () => {
    it('returns the latest entry per key', async () => {
      const journal = await create();
      await journal.put({ key: 'r:c', state: 'started', attempts: 1, deadline: 10, updatedAt: 1 });
      await journal.put({ key: 'r:c', state: 'completed', attempts: 1, deadline: 10, result: { status: 'ok', output: 5 }, updatedAt: 2 });
      expect(await journal.get('r:c')).toEqual({ key: 'r:c', state: 'completed', attempts: 1, deadline: 10, result: { status: 'ok', output: 5 }, updatedAt: 2 });
      expect(await journal.get('r:other')).toBeUndefined();
    });

    it('releases a run\'s entries and no other run\'s, run ids with a colon included', async () => {
      const journal = await create();
      const entry = (key: string) => ({ key, state: 'completed' as const, attempts: 1, deadline: 10, updatedAt: 1 });
      for (const key of ['r1:c0.0', 'r1:c1.0', 'r10:c0.0', 'tenant:r1:c0.0', 'r2:c0.0']) await journal.put(entry(key));
      await journal.release!('r1');
      expect(await journal.get('r1:c0.0')).toBeUndefined();
      expect(await journal.get('r1:c1.0')).toBeUndefined();
      for (const key of ['r10:c0.0', 'tenant:r1:c0.0', 'r2:c0.0']) expect(await journal.get(key)).toMatchObject({ key });
      await journal.release!('tenant:r1');
      expect(await journal.get('tenant:r1:c0.0')).toBeUndefined();
      expect(await journal.get('r10:c0.0')).toMatchObject({ key: 'r10:c0.0' });
    });

    it('releases a run\'s approval deadlines with its calls, whether the entry names its run or (written earlier) only its key', async () => {
      const journal = await create();
      const deadline = (key: string, runId?: string) => ({ key, ...(runId ? { runId } : {}), state: 'started' as const, attempts: 0, deadline: 10, updatedAt: 1 });
      await journal.put(deadline('a:b:c0.0:approval', 'a:b'));
      await journal.put(deadline('r1:c0.0:approval'));
      await journal.put(deadline('r1:c1.0:approval', 'r1'));
      await journal.put(deadline('r2:c0.0:approval', 'r2'));
      await journal.release!('r1');
      await journal.release!('a:b');
      expect(await journal.get('r1:c0.0:approval')).toBeUndefined();
      expect(await journal.get('r1:c1.0:approval')).toBeUndefined();
      expect(await journal.get('a:b:c0.0:approval')).toBeUndefined();
      expect(await journal.get('r2:c0.0:approval')).toMatchObject({ runId: 'r2' });
    });
  });
}
