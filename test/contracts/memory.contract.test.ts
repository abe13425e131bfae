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

  describe('open tenants (keepOpenTenants)', () => {
    const signal = new AbortController().signal;
    const turn = (tenantId: string, runId: string) => ({ tenantId, principalId: 'u', sessionId: 's', runId, input: `${tenantId} ${runId}`, output: 'ok', createdAt: new Date().toISOString() });
    const inputsOf = async (memory: MemoryLayer, tenantId: string) =>
      (await memory.recall({ tenantId, principalId: 'u', sessionId: 's', query: tenantId, limit: 5 }, { signal })).history.filter((entry) => entry.role === 'user').map((entry) => entry.content);
    /** Adds a turn to a tenant's file behind the memory's back: seen only by a memory that reads the file again. */
    const addByHand = async (dir: string, tenantId: string, runId: string) => {
      for (const name of await readdir(join(dir, 'memory'))) {
        const file = join(dir, 'memory', name);
        const data = JSON.parse(await readFile(file, 'utf8')) as { tenantId: string; items: Record<string, object> };
        if (data.tenantId !== tenantId) continue;
        data.items[runId] = { key: runId, principalId: 'u', sessionId: 's', runId, input: `${tenantId} ${runId}`, output: 'ok', createdAt: new Date().toISOString() };
        await writeFile(file, JSON.stringify(data));
      }
    };

    it('keeps the tenants used last open, closes the one used longest ago, and reads it again when asked', async () => {
      const dir = await tempDir();
      const memory = await createLowdbMemory(await openStoreDirectory(dir), { keepOpenTenants: 2 });
      for (const tenantId of ['a', 'b']) await memory.remember(turn(tenantId, 'r1'), { idempotencyKey: `${tenantId}:r1`, signal });
      expect(await inputsOf(memory, 'a')).toEqual(['a r1']); // a is now the one used last, b the one used longest ago
      await memory.remember(turn('c', 'r1'), { idempotencyKey: 'c:r1', signal }); // closes b
      await addByHand(dir, 'a', 'by-hand');
      await addByHand(dir, 'b', 'by-hand');
      expect(await inputsOf(memory, 'a')).toEqual(['a r1']); // open: its file is not read again
      expect(await inputsOf(memory, 'b')).toEqual(['b r1', 'b by-hand']); // closed: read again
      // Written after it was read again: on disk beside what was there.
      await memory.remember(turn('b', 'r2'), { idempotencyKey: 'b:r2', signal });
      expect(await inputsOf(memory, 'b')).toEqual(['b r1', 'b by-hand', 'b r2']);
      await expect(createLowdbMemory(await openStoreDirectory(await tempDir()), { keepOpenTenants: 0 })).rejects.toThrow(/keepOpenTenants must be a whole number of tenants, 1 or more \(got 0\)/);
    });

    it('never closes a tenant while a call of its is under way: a second file object would write over the first', async () => {
      const dir = await tempDir();
      const real = await openStoreDirectory(dir);
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let gated = false;
      // The first write of tenant a waits until released (a slow disk), with its change not yet made.
      const directory: StoreDirectory = {
        ...real,
        async open<Data extends object>(name: string, defaults: () => Data, options?: { isNew?: boolean }) {
          const document = await real.open(name, defaults, options);
          return {
            get data() {
              return document.data;
            },
            async update(change: (data: Data) => void) {
              if ((document.data as { tenantId?: string }).tenantId === 'a' && !gated) {
                gated = true;
                await held;
              }
              return document.update(change);
            },
          };
        },
      };
      const memory = await createLowdbMemory(directory, { keepOpenTenants: 1 });
      const first = memory.remember(turn('a', 'r1'), { idempotencyKey: 'a:r1', signal });
      await memory.remember(turn('b', 'r1'), { idempotencyKey: 'b:r1', signal }); // over the bound: only b may be closed
      await memory.remember(turn('a', 'r2'), { idempotencyKey: 'a:r2', signal });
      release();
      await first;
      real.close();
      const again = await createLowdbMemory(await openStoreDirectory(dir));
      expect((await inputsOf(again, 'a')).sort()).toEqual(['a r1', 'a r2']);
      expect(await inputsOf(again, 'b')).toEqual(['b r1']);
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
