import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
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
