import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, symlink, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ExecutionJournal } from '../../src/execution/contract.js';
import { createMemoryJournal } from '../../src/execution/gateway.js';
import { isRunchartError } from '../../src/errors.js';
import { SCHEMA_VERSION, type PersistedRun, type RunStore } from '../../src/store/contract.js';
import { openStoreDirectory } from '../../src/store/directory.js';
import { createInMemoryRunStore } from '../../src/store/in-memory.js';
import { createLowdbJournal, createLowdbRunStore } from '../../src/store/lowdb.js';
import { tempDir } from '../support/temp.js';

const run = (overrides: Partial<PersistedRun> = {}): PersistedRun => ({
  schemaVersion: SCHEMA_VERSION,
  runId: 'run-1',
  tenantId: 'acme',
  principalId: 'u',
  status: 'running',
  updatedAt: 1,
  snapshot: { value: 'policy', context: { note: 'x' } },
  ...overrides,
});

function describeRunStoreContract(name: string, create: () => Promise<RunStore>) {
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
  });
}

function describeJournalContract(name: string, create: () => Promise<ExecutionJournal>) {
  describe(`journal contract: ${name}`, () => {
    it('returns the latest entry per key', async () => {
      const journal = await create();
      await journal.put({ key: 'r:c', state: 'started', attempts: 1, deadline: 10, updatedAt: 1 });
      await journal.put({ key: 'r:c', state: 'completed', attempts: 1, deadline: 10, result: { status: 'ok', output: 5 }, updatedAt: 2 });
      expect(await journal.get('r:c')).toEqual({ key: 'r:c', state: 'completed', attempts: 1, deadline: 10, result: { status: 'ok', output: 5 }, updatedAt: 2 });
      expect(await journal.get('r:other')).toBeUndefined();
    });
  });
}

describeRunStoreContract('in-memory', async () => createInMemoryRunStore());
describeRunStoreContract('lowdb', async () => createLowdbRunStore(await openStoreDirectory(await tempDir())));
describeJournalContract('in-memory', async () => createMemoryJournal());
describeJournalContract('lowdb', async () => createLowdbJournal(await openStoreDirectory(await tempDir())));

describe('lowdb store safety', () => {
  it('writes once for many saves in one tick, and the file holds them all', async () => {
    const dir = await tempDir();
    const store = await createLowdbRunStore(await openStoreDirectory(dir));
    await Promise.all(Array.from({ length: 50 }, (_, index) => store.save(run({ runId: `r${index}` }))));
    const onDisk = JSON.parse(await readFile(join(dir, 'runs.json'), 'utf8'));
    expect(Object.keys(onDisk.runs)).toHaveLength(50);
  });

  it('refuses a second writer while the holder lives, naming the lock and the holder', async () => {
    const dir = await tempDir();
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    try {
      await writeFile(join(dir, 'lock'), JSON.stringify({ pid: holder.pid, host: hostname(), since: '2026-01-01T00:00:00.000Z' }));
      const error = await openStoreDirectory(dir).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(isRunchartError(error)).toBe(true);
      expect((error as Error).message).toContain(join(dir, 'lock'));
      expect((error as Error).message).toContain(`process ${holder.pid}`);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('refuses a second writer in the same process, and frees the lock on close', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    await expect(openStoreDirectory(dir)).rejects.toThrow(/held by process/);
    first.close();
    const second = await openStoreDirectory(dir);
    second.close();
    expect(existsSync(join(dir, 'lock'))).toBe(false);
  });

  it('takes over the lock of a process that is gone (killed holder)', async () => {
    const dir = await tempDir();
    const gone = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await new Promise((resolve) => gone.on('exit', resolve));
    await writeFile(join(dir, 'lock'), JSON.stringify({ pid: gone.pid, host: hostname(), since: '2026-01-01T00:00:00.000Z' }));
    const directory = await openStoreDirectory(dir);
    expect(JSON.parse(await readFile(join(dir, 'lock'), 'utf8')).pid).toBe(process.pid);
    directory.close();
  });

  it('keeps finished runs in an append-only file, reads them back in a new process, and skips a torn last line', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    const store = await createLowdbRunStore(first);
    await store.save(run({ runId: 'a', status: 'running' }));
    await store.save(run({ runId: 'a', status: 'completed', updatedAt: 2 }));
    await store.save(run({ runId: 'b', status: 'awaiting_approval' }));
    expect(Object.keys(JSON.parse(await readFile(join(dir, 'runs.json'), 'utf8')).runs)).toEqual(['b']);
    first.close();
    await writeFile(join(dir, 'runs-finished.jsonl'), `${await readFile(join(dir, 'runs-finished.jsonl'), 'utf8')}{"runId":"torn","sta`);
    const warnings: string[] = [];
    const again = await createLowdbRunStore(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
    expect(await again.load('a')).toMatchObject({ status: 'completed', updatedAt: 2 });
    expect((await again.listActive()).map((stored) => stored.runId)).toEqual(['b']);
    expect((await again.list({ tenantId: 'acme' })).map((stored) => stored.runId).sort()).toEqual(['a', 'b']);
    expect(warnings).toEqual([expect.stringMatching(/line 2 of .*runs-finished\.jsonl is not JSON/)]);
  });

  it('answers a finished save once its line is appended; flush() waits for its removal from runs.json', async () => {
    const dir = await tempDir();
    const directory = await openStoreDirectory(dir);
    const store = await createLowdbRunStore(directory);
    await store.save(run({ runId: 'a', status: 'running' }));
    await store.save(run({ runId: 'a', status: 'completed', updatedAt: 2 }));
    // Durable as finished already: a new process would read the line and let it win.
    expect((await readFile(join(dir, 'runs-finished.jsonl'), 'utf8')).trim().split('\n').map((line) => JSON.parse(line).runId)).toEqual(['a']);
    expect(await store.listActive()).toEqual([]);
    await store.flush!();
    expect(JSON.parse(await readFile(join(dir, 'runs.json'), 'utf8')).runs).toEqual({});
    directory.close();
  });

  it('moves a corrupt or truncated file aside and reports it, never silently replacing it', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'runs.json'), '{"runs": {"run-1": {"schemaVer');
    const warnings: string[] = [];
    const store = await createLowdbRunStore(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/runs\.json could not be read .*moved to .*runs\.json\.corrupt-\d+/);
    const aside = (await readdir(dir)).find((name) => name.startsWith('runs.json.corrupt-'))!;
    expect(await readFile(join(dir, aside), 'utf8')).toBe('{"runs": {"run-1": {"schemaVer');
    expect(await store.listActive()).toEqual([]);
  });

  it('fails the operation on a full disk and keeps memory and disk consistent', async () => {
    const dir = await tempDir();
    const store = await createLowdbRunStore(await openStoreDirectory(dir));
    await store.save(run({ runId: 'kept' }));
    // lowdb writes through a temp file beside the target; pointing it at /dev/full makes the kernel answer ENOSPC.
    await symlink('/dev/full', join(dir, '.runs.json.tmp'));
    const error = await store.save(run({ runId: 'lost' })).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(isRunchartError(error) && error.layer).toBe('store');
    expect((error as Error).message).toMatch(/ENOSPC/);
    expect(await store.load('lost')).toBeUndefined();
    expect(await store.load('kept')).toBeDefined();
    expect(Object.keys(JSON.parse(await readFile(join(dir, 'runs.json'), 'utf8')).runs)).toEqual(['kept']);
    await unlink(join(dir, '.runs.json.tmp'));
    await store.save(run({ runId: 'later' }));
    expect(Object.keys(JSON.parse(await readFile(join(dir, 'runs.json'), 'utf8')).runs).sort()).toEqual(['kept', 'later']);
  });
});
