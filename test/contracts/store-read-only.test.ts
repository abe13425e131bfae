// A store directory opened read-only beside the process that holds it (runchart runs list while serve runs).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRunchartError } from '../../src/errors.js';
import { SCHEMA_VERSION, type PersistedRun } from '../../src/store/contract.js';
import { openStoreDirectory } from '../../src/store/directory.js';
import { createFileRunStore } from '../../src/store/files.js';
import { tempDir } from '../support/temp.js';

const run = (runId: string, status: PersistedRun['status'], updatedAt: number): PersistedRun => ({
  schemaVersion: SCHEMA_VERSION,
  runId,
  tenantId: 'acme',
  principalId: 'u',
  status,
  updatedAt,
  snapshot: { value: status === 'completed' ? 'completed' : 'policy', context: { note: runId } },
});

describe('openStoreDirectory({ readOnly: true })', () => {
  it('reads the runs of a store another process holds, takes no lock and writes nothing', async () => {
    const dir = await tempDir();
    const writer = await openStoreDirectory(dir);
    const store = await createFileRunStore(writer);
    await store.save(run('parked', 'awaiting_approval', 1));
    await store.save(run('done', 'running', 2));
    await store.save(run('done', 'completed', 3));
    const lock = readFileSync(join(dir, 'lock'), 'utf8');
    const files = readdirSync(dir).sort();
    // The writer's index of finished runs is the writer's: a reader builds its own in memory.
    const index = () => ['runs-finished.heads', 'runs-finished.index.jsonl'].map((name) => readFileSync(join(dir, name)).toString('hex'));
    const indexBefore = index();

    const reader = await openStoreDirectory(dir, { readOnly: true });
    const view = await createFileRunStore(reader);
    expect((await view.list({ tenantId: 'acme' })).map((summary) => [summary.runId, summary.status]).sort()).toEqual([
      ['done', 'completed'],
      ['parked', 'awaiting_approval'],
    ]);
    expect(await view.load('done')).toEqual(run('done', 'completed', 3));
    expect((await view.listActive()).map((active) => active.runId)).toEqual(['parked']);

    expect(index()).toEqual(indexBefore);

    // The writer keeps writing; what the reader read stays readable.
    await store.save(run('later', 'completed', 4));
    expect(await view.load('done')).toEqual(run('done', 'completed', 3));

    const refused = await view.save(run('x', 'running', 5)).catch((error: unknown) => error);
    expect(isRunchartError(refused) && refused.message).toMatch(/is open read-only/);
    reader.close();
    expect(readFileSync(join(dir, 'lock'), 'utf8')).toBe(lock);
    expect(readdirSync(dir).sort()).toEqual(files);
    writer.close();
  });

  it('leaves out a line the writer has not finished, and creates nothing where there is no store', async () => {
    const dir = await tempDir();
    const writer = await openStoreDirectory(dir);
    const store = await createFileRunStore(writer);
    await store.save(run('whole', 'completed', 1));
    writer.close();
    await appendFile(join(dir, 'runs-finished.jsonl'), '{"schemaVersion":2,"runId":"half');
    const warnings: string[] = [];
    const view = await createFileRunStore(await openStoreDirectory(dir, { readOnly: true, onWarning: (message) => void warnings.push(message) }));
    expect((await view.list({ tenantId: 'acme' })).map((summary) => summary.runId)).toEqual(['whole']);
    expect(warnings).toEqual([]);
    expect(readdirSync(dir).some((name) => name.includes('corrupt'))).toBe(false);

    const nowhere = join(dir, 'no-store-here');
    const empty = await createFileRunStore(await openStoreDirectory(nowhere, { readOnly: true }));
    expect(await empty.list({ tenantId: 'acme' })).toEqual([]);
    expect(existsSync(nowhere)).toBe(false);
  });
});
