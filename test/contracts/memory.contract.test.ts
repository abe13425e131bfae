import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createInMemoryMemory } from '../../src/memory/in-memory.js';
import { createLowdbMemory } from '../../src/memory/lowdb.js';
import { openStoreDirectory } from '../../src/store/directory.js';
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
