import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, symlink, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMemoryJournal } from '../../src/execution/gateway.js';
import { isRunchartError } from '../../src/errors.js';
import { openStoreDirectory } from '../../src/store/directory.js';
import { createInMemoryRunStore } from '../../src/store/in-memory.js';
import type { RunStore } from '../../src/store/contract.js';
import { createFileJournal, createFileQueuePersistence, createFileRunStore } from '../../src/store/files.js';
import { openJsonLog, type LinePlace } from '../../src/store/log.js';
import { tempDir } from '../support/temp.js';
import { describeJournalContract, describeRunStoreContract, run } from './store.contract.js';

describeRunStoreContract('in-memory', async () => createInMemoryRunStore());

describe('in-memory run store: what a long-lived process keeps', () => {
  it('keeps the last finished runs only, oldest dropped first, and never drops an unfinished one', async () => {
    const store = createInMemoryRunStore({ keepFinished: 2 });
    await store.save(run({ runId: 'parked', status: 'awaiting_approval' }));
    for (const runId of ['f1', 'f2', 'f3']) {
      await store.save(run({ runId, status: 'running' }));
      await store.save(run({ runId, status: 'completed' }));
    }
    expect((await store.list({ tenantId: 'acme' })).map((stored) => stored.runId).sort()).toEqual(['f2', 'f3', 'parked']);
    expect(await store.load('f1')).toBeUndefined();
    expect(await store.load('f3')).toMatchObject({ status: 'completed' });
    expect((await store.listActive()).map((stored) => stored.runId)).toEqual(['parked']);
  });

  it('refuses a keep count that is not a whole number of runs, naming the option', () => {
    let thrown: unknown;
    try {
      createInMemoryRunStore({ keepFinished: -1 });
    } catch (error) {
      thrown = error;
    }
    expect(isRunchartError(thrown) && thrown.kind).toBe('invalid-input');
    expect((thrown as Error).message).toMatch(/keepFinished must be a whole number of runs, 0 or more \(got -1\)/);
    expect(() => createInMemoryRunStore({ keepFinished: 1.5 })).toThrow(/keepFinished/);
  });
});
describeRunStoreContract('files', async () => createFileRunStore(await openStoreDirectory(await tempDir())));
describeJournalContract('in-memory', async () => createMemoryJournal());
describeJournalContract('files', async () => createFileJournal(await openStoreDirectory(await tempDir())));

const linesOf = async (path: string) => (await readFile(path, 'utf8')).trim().split('\n').filter(Boolean);

describe('store files: journal release', () => {
  it('keeps a released run\'s approval deadline out, also when it arrives late, and after a reopen', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    const journal = await createFileJournal(first);
    await journal.put({ key: 'run-1:c0.0', runId: 'run-1', state: 'completed', attempts: 1, updatedAt: 1 });
    await journal.put({ key: 'run-1:c1.0:approval', runId: 'run-1', state: 'started', attempts: 0, deadline: 10, updatedAt: 1 });
    await journal.release!('run-1');
    await journal.put({ key: 'run-1:c2.0:approval', runId: 'run-1', state: 'started', attempts: 0, deadline: 10, updatedAt: 2 });
    expect(await journal.get('run-1:c1.0:approval')).toBeUndefined();
    expect(await journal.get('run-1:c2.0:approval')).toBeUndefined();
    first.close();
    const again = await createFileJournal(await openStoreDirectory(dir));
    expect(await again.get('run-1:c0.0')).toBeUndefined();
    expect(await again.get('run-1:c1.0:approval')).toBeUndefined();
  });
});

describe('store files: the log', () => {
  it('places a line written after a torn one past the newline that ends the torn one', async () => {
    const dir = await tempDir();
    const path = join(dir, 'log.jsonl');
    await writeFile(path, '{"n":1}\n{"n":2,"cut');
    const read: { n: number }[] = [];
    const log = await openJsonLog<{ n: number }>(path, (entry) => read.push(entry), () => {});
    expect(read).toEqual([{ n: 1 }]);
    let place: LinePlace | undefined;
    await log.append({ n: 3 }, (at) => (place = at));
    expect(place).toEqual({ offset: '{"n":1}\n{"n":2,"cut\n'.length, length: '{"n":3}'.length });
    expect(await log.readAt(place!)).toEqual({ n: 3 });
    log.close();
  });

  it('reads a line of several megabytes that spans many read chunks, and the lines around it', async () => {
    const dir = await tempDir();
    const path = join(dir, 'log.jsonl');
    const big = { text: 'ü'.repeat(2_500_000) };
    await writeFile(path, `${JSON.stringify({ n: 1 })}\n${JSON.stringify(big)}\n${JSON.stringify({ n: 3 })}`);
    const places: LinePlace[] = [];
    const entries: unknown[] = [];
    const log = await openJsonLog<unknown>(path, (entry, place) => (entries.push(entry), places.push(place)), () => {});
    expect(entries).toEqual([{ n: 1 }, big, { n: 3 }]);
    expect(await log.readAt(places[1]!)).toEqual(big);
    expect(await log.readAt(places[2]!)).toEqual({ n: 3 });
    log.close();
  });
});

describe('store files: safety', () => {
  it('appends the saves made together in one write, and a new process reads them all', async () => {
    const dir = await tempDir();
    const directory = await openStoreDirectory(dir);
    const store = await createFileRunStore(directory);
    await Promise.all(Array.from({ length: 50 }, (_, index) => store.save(run({ runId: `r${index}` }))));
    expect(await linesOf(join(dir, 'runs.jsonl'))).toHaveLength(50);
    directory.close();
    const again = await createFileRunStore(await openStoreDirectory(dir));
    expect((await again.listActive()).map((stored) => stored.runId).sort()).toEqual(Array.from({ length: 50 }, (_, index) => `r${index}`).sort());
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

  it('keeps finished runs in an append-only file that wins over the steps before, and skips a torn last line', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    const store = await createFileRunStore(first);
    await store.save(run({ runId: 'a', status: 'running' }));
    await store.save(run({ runId: 'a', status: 'completed', updatedAt: 2 }));
    await store.save(run({ runId: 'b', status: 'awaiting_approval' }));
    // A late save of an earlier step of a finished run changes nothing.
    await store.save(run({ runId: 'a', status: 'running', updatedAt: 3 }));
    expect((await linesOf(join(dir, 'runs-finished.jsonl'))).map((line) => JSON.parse(line).runId)).toEqual(['a']);
    expect((await store.listActive()).map((stored) => stored.runId)).toEqual(['b']);
    first.close();
    await writeFile(join(dir, 'runs-finished.jsonl'), `${await readFile(join(dir, 'runs-finished.jsonl'), 'utf8')}{"runId":"torn","sta`);
    const warnings: string[] = [];
    const again = await createFileRunStore(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
    expect(await again.load('a')).toMatchObject({ status: 'completed', updatedAt: 2 });
    expect((await again.listActive()).map((stored) => stored.runId)).toEqual(['b']);
    expect((await again.list({ tenantId: 'acme' })).map((stored) => stored.runId).sort()).toEqual(['a', 'b']);
    expect(warnings).toEqual([expect.stringMatching(/line 2 of .*runs-finished\.jsonl is not JSON .*skipped; the file as it was is kept as .*runs-finished\.jsonl\.corrupt-\d+/)]);
  });

  it('holds a finished run\'s snapshot in the file, not in memory: what load returns is read from disk', async () => {
    const dir = await tempDir();
    const store = await createFileRunStore(await openStoreDirectory(dir));
    await store.save(run({ runId: 'done', status: 'completed', snapshot: { value: 'completed', context: { note: 'before' } } }));
    const path = join(dir, 'runs-finished.jsonl');
    // The same number of bytes, changed behind the store's back: only a store that reads the file sees it.
    await writeFile(path, (await readFile(path, 'utf8')).replace('"before"', '"edited"'));
    expect((await store.load('done'))!.snapshot).toEqual({ value: 'completed', context: { note: 'edited' } });
    await writeFile(path, (await readFile(path, 'utf8')).replace('"runId":"done"', '"runId":"gone"'));
    await expect(store.load('done')).rejects.toThrow(/the line of run done in runs-finished\.jsonl holds another record/);
  });

  it('finds every finished run after a bad line and a run finished twice (the newest line wins), and reports the bad line once', async () => {
    const dir = await tempDir();
    const line = (runId: string, note: string, updatedAt = 1) => JSON.stringify(run({ runId, status: 'completed', updatedAt, snapshot: { value: 'completed', context: { note } } }));
    await writeFile(join(dir, 'runs-finished.jsonl'), `${line('a', 'first a')}\n${line('b', 'bé')}\n{"runId":"cut","sta\n${line('a', 'second a', 2)}\n${line('c', 'c')}\n`);
    const warnings: string[] = [];
    const first = await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) });
    const store = await createFileRunStore(first);
    expect(await store.load('a')).toMatchObject({ updatedAt: 2, snapshot: { context: { note: 'second a' } } });
    expect(await store.load('b')).toMatchObject({ snapshot: { context: { note: 'bé' } } });
    expect(await store.load('c')).toMatchObject({ snapshot: { context: { note: 'c' } } });
    expect((await store.list({ tenantId: 'acme' })).map((listed) => `${listed.runId}@${listed.updatedAt}`).sort()).toEqual(['a@2', 'b@1', 'c@1']);
    expect(warnings).toEqual([expect.stringMatching(/line 3 of .*runs-finished\.jsonl is not JSON/)]);
    // The file is the record and stays as it is; the index covers it, so the next open reads none of it again.
    expect(await linesOf(join(dir, 'runs-finished.jsonl'))).toHaveLength(5);
    first.close();
    const again = await createFileRunStore(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
    expect(await again.load('a')).toMatchObject({ updatedAt: 2 });
    expect(warnings).toHaveLength(1);
  });

  it('finds each finished line again after a restart, across read chunks, text beyond ASCII and a torn line', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    const store = await createFileRunStore(first);
    // ~1.6 MB of finished runs of different sizes: the reading at open crosses its 1 MB chunks inside lines.
    const noteOf = (index: number) => `${'é日'.repeat(index % 97)}${'x'.repeat(4_000 + ((index * 7919) % 5_000))}`;
    await Promise.all(Array.from({ length: 250 }, (_, index) => store.save(run({ runId: `r${index}`, status: 'completed', snapshot: { value: 'completed', context: { note: noteOf(index) } } }))));
    first.close();
    const path = join(dir, 'runs-finished.jsonl');
    await writeFile(path, `${await readFile(path, 'utf8')}{"runId":"torn","sta`);
    const second = await openStoreDirectory(dir, { onWarning: () => {} });
    const again = await createFileRunStore(second);
    await again.save(run({ runId: 'after', status: 'failed', snapshot: { value: 'failed', context: { note: 'ü' } } }));
    for (let index = 0; index < 250; index++) expect((await again.load(`r${index}`))!.snapshot).toEqual({ value: 'completed', context: { note: noteOf(index) } });
    expect((await again.load('after'))!.snapshot).toEqual({ value: 'failed', context: { note: 'ü' } });
    second.close();
    const third = await createFileRunStore(await openStoreDirectory(dir));
    expect((await third.load('r249'))!.snapshot).toEqual({ value: 'completed', context: { note: noteOf(249) } });
    expect((await third.load('after'))!.snapshot).toEqual({ value: 'failed', context: { note: 'ü' } });
    expect((await third.list({ tenantId: 'acme' })).length).toBe(251);
  });

  // A small compaction is written synchronously, a large one through the thread pool; 0 sends every non-empty one there.
  it.each([
    ['written at once', undefined],
    ['written asynchronously', 0],
  ])('compacts the steps of unfinished runs as they pile up, keeping the last of each (%s)', async (_, syncCompactionChars) => {
    const dir = await tempDir();
    const directory = await openStoreDirectory(dir, syncCompactionChars === undefined ? {} : { syncCompactionChars });
    const store = await createFileRunStore(directory);
    const saves: Promise<void>[] = [];
    for (let step = 0; step < 600; step++) {
      const save = store.save(run({ runId: `r${step % 3}`, updatedAt: step }));
      // Half of the saves are made while a compaction may be under way: none may be lost to it.
      if (step % 2) saves.push(save);
      else await save;
    }
    await Promise.all(saves);
    // Compacted at least once: far fewer lines than saves, the newest of each run kept.
    await expect.poll(async () => (await linesOf(join(dir, 'runs.jsonl'))).length).toBeLessThan(300);
    expect(Object.fromEntries((await store.listActive()).map((stored) => [stored.runId, stored.updatedAt]))).toEqual({ r0: 597, r1: 598, r2: 599 });
    directory.close();
    const again = await createFileRunStore(await openStoreDirectory(dir));
    expect(Object.fromEntries((await again.listActive()).map((stored) => [stored.runId, stored.updatedAt]))).toEqual({ r0: 597, r1: 598, r2: 599 });
  });

  it('moves the runs, the journal and the queue of the earlier lowdb documents into the files, once', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'runs.json'), JSON.stringify({ runs: { old: run({ runId: 'old', status: 'awaiting_approval' }) } }));
    await writeFile(join(dir, 'journal.json'), JSON.stringify({ entries: { 'old:c0.0': { key: 'old:c0.0', state: 'completed', attempts: 1, updatedAt: 1, result: { status: 'ok', output: 5 } } } }));
    const task = { id: 'old:memory.write', kind: 'memory.write', runId: 'old', tenantId: 'acme', principalId: 'u', payload: {} };
    await writeFile(join(dir, 'queue.json'), JSON.stringify({ tasks: { [task.id]: { task, state: 'pending', updatedAt: '2026-01-01T00:00:00.000Z' } } }));
    const directory = await openStoreDirectory(dir);
    const store = await createFileRunStore(directory);
    const journal = await createFileJournal(directory);
    const queue = await createFileQueuePersistence(directory);
    expect((await store.listActive()).map((stored) => stored.runId)).toEqual(['old']);
    expect(await journal.get('old:c0.0')).toMatchObject({ state: 'completed', result: { output: 5 } });
    expect(await queue.pending()).toEqual([task]);
    expect((await readdir(dir)).filter((name) => name.endsWith('.json'))).toEqual([]);
    directory.close();
    const again = await openStoreDirectory(dir);
    expect((await (await createFileRunStore(again)).listActive()).map((stored) => stored.runId)).toEqual(['old']);
    expect(await (await createFileJournal(again)).get('old:c0.0')).toMatchObject({ state: 'completed' });
  });

  it('moves a corrupt earlier document aside and reports it, never silently replacing it', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'runs.json'), '{"runs": {"run-1": {"schemaVer');
    const warnings: string[] = [];
    const store = await createFileRunStore(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/runs\.json could not be read .*moved to .*runs\.json\.corrupt-\d+/);
    const aside = (await readdir(dir)).find((name) => name.startsWith('runs.json.corrupt-'))!;
    expect(await readFile(join(dir, aside), 'utf8')).toBe('{"runs": {"run-1": {"schemaVer');
    expect(await store.listActive()).toEqual([]);
  });

  it('skips a line cut short in the middle of a file, keeps the file as it was, and reads the rest', async () => {
    const dir = await tempDir();
    const good = (runId: string) => JSON.stringify(run({ runId }));
    await writeFile(join(dir, 'runs.jsonl'), `${good('one')}\n{"runId":"cut","sta\n${good('two')}\n`);
    const warnings: string[] = [];
    const store = await createFileRunStore(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
    expect((await store.listActive()).map((stored) => stored.runId).sort()).toEqual(['one', 'two']);
    expect(warnings).toEqual([expect.stringMatching(/line 2 of .*runs\.jsonl is not JSON/)]);
    const aside = (await readdir(dir)).find((name) => name.startsWith('runs.jsonl.corrupt-'))!;
    expect(await readFile(join(dir, aside), 'utf8')).toContain('{"runId":"cut","sta');
  });

  it('starts a new line after a torn one, so what is written after a crash survives the next', async () => {
    const dir = await tempDir();
    const started = JSON.stringify({ put: { key: 'r1:c0.0', state: 'started', attempts: 1, updatedAt: 1 } });
    await writeFile(join(dir, 'journal.jsonl'), `${started}\n{"put":{"key":"r1:c0.0","state":"compl`);
    const warnings: string[] = [];
    const first = await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) });
    const journal = await createFileJournal(first);
    await journal.put({ key: 'r2:c0.0', state: 'completed', attempts: 1, updatedAt: 2, result: { status: 'ok', output: 1 } });
    first.close();
    const again = await createFileJournal(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
    expect(await again.get('r2:c0.0')).toMatchObject({ state: 'completed' });
    expect(await again.get('r1:c0.0')).toMatchObject({ state: 'started' });
    // Reported once: the damaged file was compacted at the first open, so the second finds nothing to copy aside.
    expect(warnings).toHaveLength(1);
    expect((await readdir(dir)).filter((name) => name.includes('.corrupt-'))).toHaveLength(1);
  });

  it('cuts a write that stopped short back off, so neither memory nor the file keeps half of it', async () => {
    const dir = await tempDir();
    const child = spawn('bash', ['-c', `ulimit -f 1 && exec "${process.execPath}" --import tsx test/support/short-write-child.ts "${join(dir, 'log.jsonl')}"`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await new Promise((resolve) => child.on('exit', resolve));
    expect(JSON.parse(output)).toEqual({ outcomes: ['r0:ok', 'r1:EFBIG', 'r2:EFBIG'], applied: ['r0'], read: ['r0'] });
  });

  it('compacts logs that only grow a little per process (one CLI run each)', async () => {
    const dir = await tempDir();
    for (let round = 0; round < 60; round++) {
      const directory = await openStoreDirectory(dir);
      const store = await createFileRunStore(directory);
      const journal = await createFileJournal(directory);
      for (const status of ['running', 'running', 'completed'] as const) await store.save(run({ runId: `p${round}`, status }));
      await journal.put({ key: `p${round}:c0.0`, state: 'completed', attempts: 1, updatedAt: 1 });
      await journal.release!(`p${round}`);
      directory.close();
    }
    expect((await linesOf(join(dir, 'runs.jsonl'))).length).toBeLessThan(300);
    expect((await linesOf(join(dir, 'journal.jsonl'))).length).toBeLessThan(300);
    expect(await linesOf(join(dir, 'runs-finished.jsonl'))).toHaveLength(60);
  });

  it('removes the temp files of compactions cut short, and compacts into a file of its own', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'runs.jsonl'), `${JSON.stringify(run({ runId: 'kept' }))}\n`);
    // Left by a crash in the middle of a compaction (the older name, and the one with a process and number).
    await writeFile(join(dir, 'runs.jsonl.compacting'), 'half a file');
    await writeFile(join(dir, 'runs.jsonl.compacting-123-4'), 'half a file');
    const directory = await openStoreDirectory(dir);
    const store = await createFileRunStore(directory);
    expect((await readdir(dir)).filter((name) => name.includes('.compacting'))).toEqual([]);
    for (let step = 0; step < 300; step++) await store.save(run({ runId: 'busy', updatedAt: step }));
    await directory.settled();
    expect((await linesOf(join(dir, 'runs.jsonl'))).length).toBeLessThan(300); // it did compact
    expect((await readdir(dir)).filter((name) => name.includes('.compacting'))).toEqual([]);
    expect((await store.listActive()).map((stored) => stored.runId).sort()).toEqual(['busy', 'kept']);
  });

  it.each([
    ['written at once', undefined],
    ['written asynchronously', 0],
  ])('leaves no temp file behind when a compaction fails, and keeps the log as it was (%s)', async (_, syncCompactionChars) => {
    const dir = await tempDir();
    const warnings: string[] = [];
    const directory = await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message), ...(syncCompactionChars === undefined ? {} : { syncCompactionChars }) });
    const store = await createFileRunStore(directory);
    await store.save(run({ runId: 'first' }));
    // The log's name now holds a directory: appends still reach the open file, but no rewrite can be renamed over it.
    await rename(join(dir, 'runs.jsonl'), join(dir, 'runs.jsonl.moved'));
    await mkdir(join(dir, 'runs.jsonl'));
    await writeFile(join(dir, 'runs.jsonl', 'keep'), '');
    for (let step = 0; step < 300; step++) await store.save(run({ runId: 'busy', updatedAt: step }));
    await directory.settled();
    expect(warnings.some((message) => /compacting runs\.jsonl failed/.test(message))).toBe(true);
    expect((await readdir(dir)).filter((name) => name.includes('.compacting'))).toEqual([]);
    expect((await store.listActive()).map((stored) => stored.runId).sort()).toEqual(['busy', 'first']);
  });

  it('never lets a compaction that was running at close replace the file of the next owner', async () => {
    const dir = await tempDir();
    // Every compaction asynchronous, as a large one is: only such a one can still be running at close.
    const first = await openStoreDirectory(dir, { syncCompactionChars: 0 });
    const store = await createFileRunStore(first);
    for (let step = 0; step < 300; step++) await store.save(run({ runId: 'busy', updatedAt: step }));
    first.close();
    const second = await openStoreDirectory(dir);
    const next = await createFileRunStore(second);
    await next.save(run({ runId: 'next-owner' }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    second.close();
    const reader = await createFileRunStore(await openStoreDirectory(dir));
    expect((await reader.listActive()).map((stored) => stored.runId).sort()).toEqual(['busy', 'next-owner']);
  });

  it('fails the operation on a full disk, keeps memory and disk consistent, and writes again once there is room', async () => {
    const dir = await tempDir();
    // The active-runs file is /dev/full: the kernel answers every write with ENOSPC.
    await symlink('/dev/full', join(dir, 'runs.jsonl'));
    const directory = await openStoreDirectory(dir);
    const store = await createFileRunStore(directory);
    const error = await store.save(run({ runId: 'lost' })).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(isRunchartError(error) && error.layer).toBe('store');
    expect((error as Error).message).toMatch(/ENOSPC/);
    expect(await store.load('lost')).toBeUndefined();
    await unlink(join(dir, 'runs.jsonl'));
    await store.save(run({ runId: 'later' }));
    expect((await linesOf(join(dir, 'runs.jsonl'))).map((line) => JSON.parse(line).runId)).toEqual(['later']);
    directory.close();
    const again = await createFileRunStore(await openStoreDirectory(dir));
    expect((await again.listActive()).map((stored) => stored.runId)).toEqual(['later']);
  });
});

describe('store files: finished runs through an index on disk', () => {
  const finished = (runId: string, tenantId = 'acme', updatedAt = 1) => run({ runId, tenantId, status: 'completed', updatedAt, snapshot: { value: 'completed', context: { note: `note of ${runId}` } } });
  const ids = async (store: RunStore, tenantId = 'acme') => (await store.list({ tenantId })).map((listed) => listed.runId).sort();

  it('lists and loads finished runs from disk: an entry changed behind the store\'s back shows in the next listing', async () => {
    const dir = await tempDir();
    const store = await createFileRunStore(await openStoreDirectory(dir));
    for (const runId of ['a', 'b', 'c']) await store.save(finished(runId));
    expect(await ids(store)).toEqual(['a', 'b', 'c']);
    const index = join(dir, 'runs-finished.index.jsonl');
    // The same number of bytes, so every place stays right: only a store that reads the index sees it.
    await writeFile(index, (await readFile(index, 'utf8')).replace('"status":"completed"', '"status":"cancelled"'));
    expect((await store.list({ tenantId: 'acme' })).find((listed) => listed.runId === 'a')).toMatchObject({ status: 'cancelled' });
  });

  it('opens without reading the finished runs the index covers, and finds each of them', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    const store = await createFileRunStore(first);
    for (let index = 0; index < 50; index++) await store.save(finished(`r${index}`, index % 2 ? 'acme' : 'globex', index));
    first.close();
    // Damage a line the index covers (same length): an open that read the file would report it.
    const path = join(dir, 'runs-finished.jsonl');
    const text = await readFile(path, 'utf8');
    const line = text.split('\n')[10]!;
    await writeFile(path, text.replace(line, 'x'.repeat(line.length)));
    const warnings: string[] = [];
    const again = await createFileRunStore(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
    expect(warnings).toEqual([]);
    expect((await ids(again, 'acme')).length).toBe(25);
    expect((await ids(again, 'globex')).length).toBe(25);
    expect(await again.load('r49')).toMatchObject({ runId: 'r49', tenantId: 'acme', updatedAt: 49, snapshot: { context: { note: 'note of r49' } } });
    await expect(again.load('r10')).rejects.toThrow(/runs-finished\.jsonl is not JSON any more/);
    expect(await again.load('missing')).toBeUndefined();
  });

  it('indexes a store of the earlier layout (no index yet) once at open, and the lines a crash left past the index', async () => {
    const dir = await tempDir();
    const path = join(dir, 'runs-finished.jsonl');
    await writeFile(path, `${JSON.stringify(finished('old-1'))}\n${JSON.stringify(finished('old-2', 'globex'))}\n`);
    const first = await openStoreDirectory(dir);
    const store = await createFileRunStore(first);
    expect(await ids(store)).toEqual(['old-1']);
    expect(await ids(store, 'globex')).toEqual(['old-2']);
    expect(existsSync(join(dir, 'runs-finished.index.jsonl'))).toBe(true);
    await store.save(finished('new-1'));
    first.close();
    // Written after the index (a process killed between the two writes): found at the next open.
    await writeFile(path, `${JSON.stringify(finished('late'))}\n`, { flag: 'a' });
    const again = await createFileRunStore(await openStoreDirectory(dir));
    expect(await ids(again)).toEqual(['late', 'new-1', 'old-1']);
    expect(await again.load('late')).toMatchObject({ status: 'completed', snapshot: { context: { note: 'note of late' } } });
  });

  it('rebuilds an index that does not match the file (reported), and finds everything again', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    const store = await createFileRunStore(first);
    for (const runId of ['a', 'b']) await store.save(finished(runId));
    first.close();
    // The finished file replaced by a shorter one (restored from a backup): the index covers more than it holds.
    await writeFile(join(dir, 'runs-finished.jsonl'), `${JSON.stringify(finished('only'))}\n`);
    const warnings: string[] = [];
    const again = await createFileRunStore(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
    expect(warnings).toEqual([expect.stringMatching(/index of finished runs .* does not match runs-finished\.jsonl; it is rebuilt/)]);
    expect(await ids(again)).toEqual(['only']);
    expect(await again.load('a')).toBeUndefined();
  });

  it('says where the index is damaged and how to rebuild it', async () => {
    const dir = await tempDir();
    const store = await createFileRunStore(await openStoreDirectory(dir));
    await store.save(finished('a'));
    const index = join(dir, 'runs-finished.index.jsonl');
    await writeFile(index, (await readFile(index, 'utf8')).replace('"runId":"a"', '"runId":7  '));
    await expect(store.list({ tenantId: 'acme' })).rejects.toThrow(/index of finished runs is damaged at byte 0 of .*runs-finished\.index\.jsonl \(not an index entry\); remove it and .*runs-finished\.heads/);
  });

  it('keeps many runs of many tenants apart, the newest save of a run winning, and drops a late save of an earlier step', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    const store = await createFileRunStore(first);
    const tenants = ['acme', 'globex', 'initech'];
    await Promise.all(Array.from({ length: 3_000 }, (_, index) => store.save(finished(`run-${index}`, tenants[index % 3]!, index))));
    await store.save(finished('run-7', 'globex', 99_999));
    await store.save(run({ runId: 'run-2998', tenantId: 'globex', status: 'running' }));
    expect(await store.listActive()).toEqual([]);
    first.close();
    const again = await createFileRunStore(await openStoreDirectory(dir));
    for (const tenantId of tenants) {
      const listed = await again.list({ tenantId });
      expect(listed).toHaveLength(1_000);
      expect(listed.every((summary) => summary.tenantId === tenantId)).toBe(true);
    }
    expect(await again.load('run-7')).toMatchObject({ updatedAt: 99_999 });
    expect((await again.list({ tenantId: 'globex' })).find((summary) => summary.runId === 'run-7')).toMatchObject({ updatedAt: 99_999 });
    expect(await again.load('run-2999')).toMatchObject({ tenantId: 'initech', updatedAt: 2_999 });
    expect(await again.listActive()).toEqual([]);
  });
});
