import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createInMemoryMemory } from '../../src/memory/in-memory.js';
import { createLowdbMemory } from '../../src/memory/lowdb.js';
import type { MemoryLayer } from '../../src/memory/contract.js';
import { openStoreDirectory, type StoreDirectory } from '../../src/store/directory.js';
import { tempDir } from '../support/temp.js';
import { describeMemoryContract } from './memory.contract.js';

describeMemoryContract('in-memory', async () => createInMemoryMemory());
describeMemoryContract('lowdb', async () => createLowdbMemory(await openStoreDirectory(await tempDir())));

describe('lowdb memory on disk', () => {
  it('finds what an earlier process remembered', async () => {
    const dir = await tempDir();
    const signal = new AbortController().signal;
    const first = await openStoreDirectory(dir);
    const memory = await createLowdbMemory(first);
    await memory.remember(
      { tenantId: 'acme', principalId: 'u', sessionId: 's', runId: 'r1', input: 'favourite colour?', output: 'Blue.', createdAt: new Date().toISOString() },
      { idempotencyKey: 'r1:memory.write', signal },
    );
    first.close();
    const again = await createLowdbMemory(await openStoreDirectory(dir));
    const result = await again.recall({ tenantId: 'acme', principalId: 'u', sessionId: 's', query: 'colour', limit: 3 }, { signal });
    expect(result.items[0]?.text).toContain('Blue');
    expect(result.history).toHaveLength(2);
  });

  it('keeps a session\'s turns right when a recall runs while a write-back is on its way, and when a write-back fails', async () => {
    const dir = await tempDir();
    const signal = new AbortController().signal;
    const memory = await createLowdbMemory(await openStoreDirectory(dir));
    const turn = (runId: string, second: number, tenantId = 'acme') => ({ tenantId, principalId: 'u', sessionId: 's', runId, input: runId, output: 'ok', createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString() });
    const inputs = async (tenantId = 'acme') =>
      (await memory.recall({ tenantId, principalId: 'u', sessionId: 's', query: 'x', limit: 1 }, { signal })).history.filter((entry) => entry.role === 'user').map((entry) => entry.content);
    const tenantFile = async (known: string[]) => join(dir, 'memory', (await readdir(join(dir, 'memory'))).find((name) => name.endsWith('.json') && !known.includes(name))!);
    await memory.remember(turn('one', 1), { idempotencyKey: 'one', signal });
    // A recall in the same turn as the write-back: it sees the turn (already in the document), and the write-back does not add it twice.
    const writing = memory.remember(turn('two', 2), { idempotencyKey: 'two', signal });
    expect(await inputs()).toEqual(['one', 'two']);
    await writing;
    expect(await inputs()).toEqual(['one', 'two']);
    // A directory where the tenant's file was: the write fails, and the turn it carried is not recalled.
    const acme = await tenantFile([]);
    await rm(acme);
    await mkdir(acme);
    await expect(memory.remember(turn('three', 3), { idempotencyKey: 'three', signal })).rejects.toThrow(/writing .* failed/);
    expect(await inputs()).toEqual(['one', 'two']);
    // The same for a tenant whose turns are first gathered by a recall while the failing write is on its way.
    await memory.remember(turn('g-one', 1, 'globex'), { idempotencyKey: 'g-one', signal });
    const globex = await tenantFile([acme.split('/').at(-1)!]);
    await rm(globex);
    await mkdir(globex);
    const failing = memory.remember(turn('g-two', 2, 'globex'), { idempotencyKey: 'g-two', signal });
    expect(await inputs('globex')).toEqual(['g-one', 'g-two']);
    await expect(failing).rejects.toThrow(/writing .* failed/);
    expect(await inputs('globex')).toEqual(['g-one']);
  });

  describe('loaded tenants (keepLoadedTenants)', () => {
    const signal = new AbortController().signal;
    const turn = (tenantId: string, runId: string) => ({ tenantId, principalId: 'u', sessionId: 's', runId, input: `${tenantId} ${runId}`, output: 'ok', createdAt: new Date().toISOString() });
    /** The session's turns (the sessions index) and what a search finds (the search index). */
    const recalled = async (memory: MemoryLayer, tenantId: string) => {
      const result = await memory.recall({ tenantId, principalId: 'u', sessionId: 's', query: `${tenantId} r1 r2 hand`, limit: 10 }, { signal });
      return { turns: result.history.filter((entry) => entry.role === 'user').map((entry) => entry.content), found: result.items.map((item) => item.id).sort() };
    };
    /** Adds a turn to a tenant's file behind the memory's back: seen only by a memory that reads the file again. */
    const addByHand = async (dir: string, tenantId: string) => {
      for (const name of await readdir(join(dir, 'memory'))) {
        const file = join(dir, 'memory', name);
        const data = JSON.parse(await readFile(file, 'utf8')) as { tenantId: string; items: Record<string, object> };
        if (data.tenantId !== tenantId) continue;
        data.items['by-hand'] = { key: 'by-hand', principalId: 'u', sessionId: 's', runId: 'by-hand', input: `${tenantId} by hand`, output: 'ok', createdAt: new Date().toISOString() };
        await writeFile(file, JSON.stringify(data));
      }
    };
    /**
     * The store directory, with the first open of tenant `slowOpen`'s file or the first write of
     * tenant `slowWrite`'s held until `release` (a slow disk), so calls of other tenants run meanwhile.
     */
    const slowDirectory = (real: StoreDirectory, slow: { open?: string; write?: string }) => {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      const isTenant = (data: unknown, tenantId: string | undefined) => tenantId !== undefined && (data as { tenantId?: string }).tenantId === tenantId;
      let opened = false;
      let wrote = false;
      const directory: StoreDirectory = {
        ...real,
        async open<Data extends object>(name: string, defaults: () => Data, options?: { isNew?: boolean }) {
          const document = await real.open(name, defaults, options);
          if (!opened && isTenant(document.data, slow.open)) {
            opened = true;
            await held;
          }
          return {
            get data() {
              return document.data;
            },
            async update(change: (data: Data) => void) {
              if (!wrote && isTenant(document.data, slow.write)) {
                wrote = true;
                await held;
              }
              return document.update(change);
            },
          };
        },
      };
      return { directory, release };
    };

    it('keeps the tenants used last loaded, drops the one used longest ago, and reads it again, indexes and all', async () => {
      const dir = await tempDir();
      const memory = await createLowdbMemory(await openStoreDirectory(dir), { keepLoadedTenants: 2 });
      for (const tenantId of ['a', 'b']) await memory.remember(turn(tenantId, 'r1'), { idempotencyKey: `${tenantId}:r1`, signal });
      expect((await recalled(memory, 'a')).turns).toEqual(['a r1']); // a is now the one used last, b the one used longest ago
      await memory.remember(turn('c', 'r1'), { idempotencyKey: 'c:r1', signal }); // drops b
      await addByHand(dir, 'a');
      await addByHand(dir, 'b');
      expect(await recalled(memory, 'a')).toEqual({ turns: ['a r1'], found: ['a:r1'] }); // loaded: its file is not read again
      expect(await recalled(memory, 'b')).toEqual({ turns: ['b r1', 'b by hand'], found: ['b:r1', 'by-hand'] }); // dropped: read again
      // Written after it was read again: on disk beside what was there, and in both indexes.
      await memory.remember(turn('b', 'r2'), { idempotencyKey: 'b:r2', signal });
      expect(await recalled(memory, 'b')).toEqual({ turns: ['b r1', 'b by hand', 'b r2'], found: ['b:r1', 'b:r2', 'by-hand'] });
      await expect(createLowdbMemory(await openStoreDirectory(await tempDir()), { keepLoadedTenants: 0 })).rejects.toThrow(/keepLoadedTenants must be a whole number of tenants, 1 or more \(got 0\)/);
    });

    it('holds the bound while it splits the memory.json of earlier versions', async () => {
      const dir = await tempDir();
      const item = (tenantId: string) => ({ key: `${tenantId}:r1`, principalId: 'u', sessionId: 's', runId: 'r1', input: `${tenantId} r1`, output: 'ok', createdAt: '2026-01-01T00:00:00.000Z' });
      await writeFile(join(dir, 'memory.json'), JSON.stringify({ tenants: Object.fromEntries(['a', 'b', 'c'].map((tenantId) => [tenantId, { items: { [`${tenantId}:r1`]: item(tenantId) } }])) }));
      const memory = await createLowdbMemory(await openStoreDirectory(dir), { keepLoadedTenants: 1 });
      await addByHand(dir, 'a');
      await addByHand(dir, 'b');
      // Only the tenant migrated last stayed loaded: the others are read again, with what was added by hand.
      expect((await recalled(memory, 'a')).turns).toEqual(['a r1', 'a by hand']);
      expect((await recalled(memory, 'b')).turns).toEqual(['b r1', 'b by hand']);
    });

    it('never drops a tenant while a write of its is under way: a second document of its file would write over the first', async () => {
      const dir = await tempDir();
      const real = await openStoreDirectory(dir);
      const { directory, release } = slowDirectory(real, { write: 'a' });
      const memory = await createLowdbMemory(directory, { keepLoadedTenants: 1 });
      const first = memory.remember(turn('a', 'r1'), { idempotencyKey: 'a:r1', signal });
      await memory.remember(turn('b', 'r1'), { idempotencyKey: 'b:r1', signal }); // over the bound: only b may be dropped
      await memory.remember(turn('a', 'r2'), { idempotencyKey: 'a:r2', signal });
      release();
      await first;
      real.close();
      const again = await createLowdbMemory(await openStoreDirectory(dir));
      expect((await recalled(again, 'a')).turns.sort()).toEqual(['a r1', 'a r2']);
      expect((await recalled(again, 'b')).turns).toEqual(['b r1']);
    });

    it('never drops a tenant while a recall of its is under way: its indexes would outlive its document', async () => {
      const dir = await tempDir();
      const real = await openStoreDirectory(dir);
      const seed = await createLowdbMemory(real);
      await seed.remember(turn('a', 'r1'), { idempotencyKey: 'a:r1', signal });
      const { directory, release } = slowDirectory(real, { open: 'a' });
      const memory = await createLowdbMemory(directory, { keepLoadedTenants: 1 });
      const first = recalled(memory, 'a'); // waits for a's file
      await memory.remember(turn('b', 'r1'), { idempotencyKey: 'b:r1', signal }); // over the bound: only b may be dropped
      release();
      expect(await first).toEqual({ turns: ['a r1'], found: ['a:r1'] });
      await memory.remember(turn('c', 'r1'), { idempotencyKey: 'c:r1', signal }); // now a is idle and dropped
      await addByHand(dir, 'a');
      expect(await recalled(memory, 'a')).toEqual({ turns: ['a r1', 'a by hand'], found: ['a:r1', 'by-hand'] });
    });
  });

  it('keeps each tenant in its own file, and splits the single memory.json of earlier versions into them', async () => {
    const dir = await tempDir();
    const signal = new AbortController().signal;
    const item = (key: string, input: string) => ({ key, principalId: 'u', sessionId: null, runId: key, input, output: 'ok', createdAt: '2026-01-01T00:00:00.000Z' });
    await writeFile(join(dir, 'memory.json'), JSON.stringify({ schemaVersion: 1, tenants: { acme: { items: { a1: item('a1', 'acme pricing') } }, globex: { items: { g1: item('g1', 'globex pricing') } } } }));
    const memory = await createLowdbMemory(await openStoreDirectory(dir));
    const recalled = async (tenantId: string) => (await memory.recall({ tenantId, principalId: 'u', query: 'pricing', limit: 5 }, { signal })).items.map((found) => found.id);
    expect(await recalled('acme')).toEqual(['a1']);
    expect(await recalled('globex')).toEqual(['g1']);
    expect(await recalled('initech')).toEqual([]);
    expect(existsSync(join(dir, 'memory.json'))).toBe(false);
    const files = await readdir(join(dir, 'memory'));
    expect(files).toHaveLength(2);
    const tenants = await Promise.all(files.map(async (file) => JSON.parse(await readFile(join(dir, 'memory', file), 'utf8')) as { tenantId: string; items: object }));
    expect(tenants.map((tenant) => [tenant.tenantId, Object.keys(tenant.items)]).sort()).toEqual([
      ['acme', ['a1']],
      ['globex', ['g1']],
    ]);
  });
});
