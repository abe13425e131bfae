import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createInMemoryMemory } from '../../src/memory/in-memory.js';
import { createLowdbMemory } from '../../src/memory/lowdb.js';
import type { MemoryLayer, MemoryRecord } from '../../src/memory/contract.js';
import { openStoreDirectory, type StoreDirectory } from '../../src/store/directory.js';
import type { JsonLog, LinePlace, OneLogOptions } from '../../src/store/log.js';
import { tempDir } from '../support/temp.js';
import { describeMemoryContract } from './memory.contract.js';

describeMemoryContract('in-memory', async () => createInMemoryMemory());
describeMemoryContract('lowdb', async () => createLowdbMemory(await openStoreDirectory(await tempDir())));

/** A tenant's memory file: a hash of the tenant id, so any id is a safe name. */
const fileOf = (dir: string, tenantId: string) => join(dir, 'memory', `${createHash('sha256').update(tenantId).digest('hex').slice(0, 32)}.jsonl`);
const linesOf = async (path: string) => (await readFile(path, 'utf8')).split('\n').filter(Boolean);

describe('lowdb memory on disk', () => {
  const signal = new AbortController().signal;

  it('finds what an earlier process remembered', async () => {
    const dir = await tempDir();
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

  it('appends one line per write-back to the tenant\'s own file, after a header naming the tenant', async () => {
    const dir = await tempDir();
    const memory = await createLowdbMemory(await openStoreDirectory(dir));
    const turn = (runId: string): MemoryRecord => ({ tenantId: 'acme', principalId: 'u', sessionId: 's', runId, input: `question ${runId}`, output: 'ok', createdAt: new Date().toISOString() });
    await memory.remember(turn('r1'), { idempotencyKey: 'r1:memory.write', signal });
    await memory.remember(turn('r2'), { idempotencyKey: 'r2:memory.write', signal });
    await memory.remember(turn('r2'), { idempotencyKey: 'r2:memory.write', signal });
    const lines = (await linesOf(fileOf(dir, 'acme'))).map((line) => JSON.parse(line));
    expect(lines).toEqual([
      { schemaVersion: 2, tenantId: 'acme' },
      expect.objectContaining({ key: 'r1:memory.write', runId: 'r1', input: 'question r1' }),
      expect.objectContaining({ key: 'r2:memory.write', runId: 'r2', input: 'question r2' }),
    ]);
    expect(await readdir(join(dir, 'memory'))).toEqual([fileOf(dir, 'acme').split('/').at(-1)]);
  });

  it('keeps a session\'s turns right when a recall runs while a write-back is on its way, and when a write-back fails', async () => {
    const dir = await tempDir();
    const memory = await createLowdbMemory(await openStoreDirectory(dir));
    const turn = (runId: string, second: number, tenantId = 'acme') => ({ tenantId, principalId: 'u', sessionId: 's', runId, input: runId, output: 'ok', createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString() });
    const inputs = async (tenantId = 'acme') =>
      (await memory.recall({ tenantId, principalId: 'u', sessionId: 's', query: 'x', limit: 1 }, { signal })).history.filter((entry) => entry.role === 'user').map((entry) => entry.content);
    await memory.remember(turn('one', 1), { idempotencyKey: 'one', signal });
    // A recall while the write-back is on its way sees the turn once it is on disk, never before, never twice.
    const writing = memory.remember(turn('two', 2), { idempotencyKey: 'two', signal });
    expect([['one'], ['one', 'two']]).toContainEqual(await inputs());
    await writing;
    expect(await inputs()).toEqual(['one', 'two']);
    // A write that fails (a full disk stands in for a new tenant's file): the turn it carried is not recalled, no header is left behind, and the next write adds one.
    const globex = fileOf(dir, 'globex');
    await symlink('/dev/full', globex);
    await expect(memory.remember(turn('g-one', 1, 'globex'), { idempotencyKey: 'g-one', signal })).rejects.toThrow(/writing .* failed \(ENOSPC\)/);
    expect(await inputs('globex')).toEqual([]);
    await unlink(globex);
    await memory.remember(turn('g-two', 2, 'globex'), { idempotencyKey: 'g-two', signal });
    expect(await inputs('globex')).toEqual(['g-two']);
    expect((await linesOf(globex)).map((line) => JSON.parse(line).tenantId ?? JSON.parse(line).key)).toEqual(['globex', 'g-two']);
  });

  it('removes the temp files that compactions cut short left beside the tenant files, once at open', async () => {
    const dir = await tempDir();
    await mkdir(join(dir, 'memory'));
    const leftover = `${fileOf(dir, 'acme')}.compacting-123-0-abcdef`;
    await writeFile(leftover, 'half a file');
    await createLowdbMemory(await openStoreDirectory(dir));
    expect(existsSync(leftover)).toBe(false);
  });

  it('never reads a file that names another tenant as this one\'s, and refuses to write to it', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    const seed = await createLowdbMemory(first);
    await seed.remember({ tenantId: 'globex', principalId: 'u', sessionId: 's', runId: 'r', input: 'globex secret plans', output: 'ok', createdAt: new Date().toISOString() }, { idempotencyKey: 'g', signal });
    first.close();
    // Copied by hand under acme's name.
    await writeFile(fileOf(dir, 'acme'), await readFile(fileOf(dir, 'globex'), 'utf8'));
    const memory = await createLowdbMemory(await openStoreDirectory(dir));
    expect(await memory.recall({ tenantId: 'acme', principalId: 'u', sessionId: 's', query: 'secret plans', limit: 5 }, { signal })).toEqual({ items: [], history: [] });
    await expect(memory.remember({ tenantId: 'acme', principalId: 'u', runId: 'r2', input: 'x', output: 'y', createdAt: new Date().toISOString() }, { idempotencyKey: 'a', signal })).rejects.toThrow(
      /the file for tenant "acme" belongs to another tenant; move it away/,
    );
  });

  it('skips a line that is JSON but not a memory record (null, a number, a field missing), reports it with the file and line, keeps it aside and rewrites the file without it', async () => {
    const dir = await tempDir();
    const first = await openStoreDirectory(dir);
    const seed = await createLowdbMemory(first);
    const turn = (runId: string): MemoryRecord => ({ tenantId: 'acme', principalId: 'u', sessionId: 's', runId, input: `pricing ${runId}`, output: 'ok', createdAt: new Date().toISOString() });
    await seed.remember(turn('r1'), { idempotencyKey: 'k1', signal });
    first.close();
    const file = fileOf(dir, 'acme');
    await appendFile(file, `null\n7\n{"key":"k-bad","principalId":"u"}\n`);
    const warnings: string[] = [];
    const second = await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) });
    const memory = await createLowdbMemory(second);
    await memory.remember(turn('r2'), { idempotencyKey: 'k2', signal });
    const found = await memory.recall({ tenantId: 'acme', principalId: 'u', sessionId: 's', query: 'pricing', limit: 5 }, { signal });
    expect(found.items.map((item) => item.id).sort()).toEqual(['k1', 'k2']);
    expect(found.history.filter((entry) => entry.role === 'user').map((entry) => entry.content)).toEqual(['pricing r1', 'pricing r2']);
    expect(warnings).toEqual([
      expect.stringMatching(
        /line 3 of .*\.jsonl is not a valid record \(got null\); line 4 of .*\.jsonl is not a valid record \(got a number\); line 5 of .*\.jsonl is not a valid record \(.*sessionId: .*\); they were skipped; the file as it was is kept as .*\.jsonl\.corrupt-\d+/,
      ),
    ]);
    const aside = (await readdir(join(dir, 'memory'))).filter((name) => name.includes('.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(await readFile(join(dir, 'memory', aside[0]!), 'utf8')).toContain('{"key":"k-bad","principalId":"u"}');
    // Rewritten without the bad lines (and with the turn written since): a later load reports nothing and reads the same.
    expect((await linesOf(file)).map((line) => JSON.parse(line).key ?? 'header')).toEqual(['header', 'k1', 'k2']);
    second.close();
    const quiet: string[] = [];
    const again = await createLowdbMemory(await openStoreDirectory(dir, { onWarning: (message) => quiet.push(message) }));
    expect((await again.recall({ tenantId: 'acme', principalId: 'u', sessionId: 's', query: 'pricing', limit: 5 }, { signal })).items).toHaveLength(2);
    expect(quiet).toEqual([]);
  });

  describe('loaded tenants (keepLoadedTenants)', () => {
    const turn = (tenantId: string, runId: string) => ({ tenantId, principalId: 'u', sessionId: 's', runId, input: `${tenantId} ${runId}`, output: 'ok', createdAt: new Date().toISOString() });
    /** The session's turns (the sessions index) and what a search finds (the search index). */
    const recalled = async (memory: MemoryLayer, tenantId: string) => {
      const result = await memory.recall({ tenantId, principalId: 'u', sessionId: 's', query: `${tenantId} r1 r2 hand`, limit: 10 }, { signal });
      return { turns: result.history.filter((entry) => entry.role === 'user').map((entry) => entry.content), found: result.items.map((item) => item.id).sort() };
    };
    /** Adds a turn to a tenant's file behind the memory's back: seen only by a memory that reads the file again. */
    const addByHand = async (dir: string, tenantId: string) =>
      appendFile(fileOf(dir, tenantId), `${JSON.stringify({ key: 'by-hand', principalId: 'u', sessionId: 's', runId: 'by-hand', input: `${tenantId} by hand`, output: 'ok', createdAt: new Date().toISOString() })}\n`);
    /**
     * The store directory, with the first open of tenant `slow.open`'s file or the writes to tenant
     * `slow.write`'s held until `release` (a slow disk), so calls of other tenants run meanwhile.
     */
    const slowDirectory = (dir: string, real: StoreDirectory, slow: { open?: string; write?: string }) => {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let opened = false;
      let released = false;
      void held.then(() => (released = true));
      const isFile = (name: string, tenantId: string | undefined) => tenantId !== undefined && join(dir, name) === fileOf(dir, tenantId);
      const directory: StoreDirectory = {
        ...real,
        async openLog<Entry>(name: string, read: (entry: Entry, place: LinePlace) => void, options?: OneLogOptions<Entry>) {
          const log: JsonLog<Entry> = await real.openLog(name, read, options);
          if (!opened && isFile(name, slow.open)) {
            opened = true;
            await held;
          }
          if (!isFile(name, slow.write)) return log;
          const append = log.append.bind(log);
          log.append = (entry, applied) => (released ? append(entry, applied) : held.then(() => append(entry, applied)));
          return log;
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

    it('never drops a tenant while a write of its is under way: its file would be read again without the line on its way', async () => {
      const dir = await tempDir();
      const real = await openStoreDirectory(dir);
      const { directory, release } = slowDirectory(dir, real, { write: 'a' });
      const memory = await createLowdbMemory(directory, { keepLoadedTenants: 1 });
      const first = memory.remember(turn('a', 'r1'), { idempotencyKey: 'a:r1', signal });
      await memory.remember(turn('b', 'r1'), { idempotencyKey: 'b:r1', signal }); // over the bound: only b may be dropped
      const second = memory.remember(turn('a', 'r2'), { idempotencyKey: 'a:r2', signal });
      release();
      await Promise.all([first, second]);
      expect((await recalled(memory, 'a')).turns.sort()).toEqual(['a r1', 'a r2']);
      real.close();
      const again = await createLowdbMemory(await openStoreDirectory(dir));
      expect((await recalled(again, 'a')).turns.sort()).toEqual(['a r1', 'a r2']);
      expect((await recalled(again, 'b')).turns).toEqual(['b r1']);
    });

    it('never drops a tenant while a recall of its is under way: its indexes would outlive its file', async () => {
      const dir = await tempDir();
      const real = await openStoreDirectory(dir);
      const seed = await createLowdbMemory(real);
      await seed.remember(turn('a', 'r1'), { idempotencyKey: 'a:r1', signal });
      const { directory, release } = slowDirectory(dir, real, { open: 'a' });
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

  describe('files of earlier layouts, moved in once at open', () => {
    const item = (key: string, input: string) => ({ key, principalId: 'u', sessionId: 's', runId: key, input, output: 'ok', createdAt: '2026-01-01T00:00:00.000Z' });
    const found = async (memory: MemoryLayer, tenantId: string) => (await memory.recall({ tenantId, principalId: 'u', sessionId: 's', query: 'pricing', limit: 5 }, { signal })).items.map((hit) => hit.id).sort();

    it('moves each tenant\'s lowdb document (memory/<name>.json) into its file, skipping items that are not records and keeping those aside', async () => {
      const dir = await tempDir();
      await mkdir(join(dir, 'memory'));
      const documentOf = (tenantId: string) => fileOf(dir, tenantId).replace(/\.jsonl$/, '.json');
      await writeFile(documentOf('acme'), JSON.stringify({ schemaVersion: 1, tenantId: 'acme', items: { a1: item('a1', 'acme pricing'), a2: item('a2', 'acme pricing again') } }));
      await writeFile(documentOf('globex'), JSON.stringify({ schemaVersion: 1, tenantId: 'globex', items: { g1: item('g1', 'globex pricing'), bad: null, worse: { key: 'worse' } } }));
      const warnings: string[] = [];
      const memory = await createLowdbMemory(await openStoreDirectory(dir, { onWarning: (message) => warnings.push(message) }));
      expect(await found(memory, 'acme')).toEqual(['a1', 'a2']);
      expect(await found(memory, 'globex')).toEqual(['g1']);
      expect((await memory.recall({ tenantId: 'acme', principalId: 'u', sessionId: 's', query: 'x', limit: 1 }, { signal })).history).toHaveLength(4);
      expect(existsSync(documentOf('acme'))).toBe(false);
      expect(existsSync(documentOf('globex'))).toBe(false);
      expect(warnings).toEqual([expect.stringMatching(/memory: .*\.json holds 2 items that are not records; the rest was moved .* kept as .*\.json\.corrupt-\d+/)]);
      // Moved once: a second open finds the files of the current layout only, and reads the same.
      const names = (await readdir(join(dir, 'memory'))).filter((name) => !name.includes('.corrupt-')).sort();
      expect(names).toEqual([fileOf(dir, 'acme'), fileOf(dir, 'globex')].map((path) => path.split('/').at(-1)).sort());
      expect((await linesOf(fileOf(dir, 'acme'))).map((line) => JSON.parse(line).key ?? 'header')).toEqual(['header', 'a1', 'a2']);
    });

    it('finishes a move that was cut short without writing an item twice', async () => {
      const dir = await tempDir();
      await mkdir(join(dir, 'memory'));
      await writeFile(fileOf(dir, 'acme'), `${JSON.stringify({ schemaVersion: 2, tenantId: 'acme' })}\n${JSON.stringify(item('a1', 'acme pricing'))}\n`);
      await writeFile(fileOf(dir, 'acme').replace(/\.jsonl$/, '.json'), JSON.stringify({ schemaVersion: 1, tenantId: 'acme', items: { a1: item('a1', 'acme pricing'), a2: item('a2', 'acme pricing too') } }));
      const memory = await createLowdbMemory(await openStoreDirectory(dir));
      expect(await found(memory, 'acme')).toEqual(['a1', 'a2']);
      expect(await linesOf(fileOf(dir, 'acme'))).toHaveLength(3);
    });

    it('splits the single memory.json of the layout before into tenant files, holding the bound on loaded tenants', async () => {
      const dir = await tempDir();
      await writeFile(join(dir, 'memory.json'), JSON.stringify({ schemaVersion: 1, tenants: { acme: { items: { a1: item('a1', 'acme pricing') } }, globex: { items: { g1: item('g1', 'globex pricing') } } } }));
      const memory = await createLowdbMemory(await openStoreDirectory(dir), { keepLoadedTenants: 1 });
      expect(await found(memory, 'acme')).toEqual(['a1']);
      expect(await found(memory, 'globex')).toEqual(['g1']);
      expect(await found(memory, 'initech')).toEqual([]);
      expect(existsSync(join(dir, 'memory.json'))).toBe(false);
      expect(await readdir(join(dir, 'memory'))).toHaveLength(2);
    });
  });
});

describe('memory costs do not grow with history', () => {
  const signal = new AbortController().signal;
  const record = (index: number, input: string, sessionId = `s${index % 10}`): MemoryRecord => ({
    tenantId: 'acme',
    principalId: 'u',
    sessionId,
    runId: `r${String(index).padStart(6, '0')}`,
    input,
    output: 'ok',
    createdAt: new Date(Date.UTC(2026, 0, 1) + index * 1000).toISOString(),
  });
  /** A tenant with `unrelated` turns about something else and three about orchids; then one recall about orchids. */
  const costOf = async <Stats extends { scored: number }>(memory: MemoryLayer & { stats(): Stats }, unrelated: number) => {
    const writes: Promise<void>[] = [];
    for (let index = 0; index < unrelated; index++) writes.push(memory.remember(record(index, `weather report ${index} for the coast`), { idempotencyKey: `w${index}`, signal }));
    for (let index = 0; index < 3; index++) writes.push(memory.remember(record(unrelated + index, `how do I repot an orchid, take ${index}`, 'plants'), { idempotencyKey: `o${index}`, signal }));
    await Promise.all(writes);
    const before = memory.stats();
    const result = await memory.recall({ tenantId: 'acme', principalId: 'u', sessionId: 'plants', query: 'repot my orchid', limit: 5 }, { signal });
    const after = memory.stats();
    const spent = Object.fromEntries(Object.keys(after).map((key) => [key, after[key as keyof Stats] as number - (before[key as keyof Stats] as number)]));
    return { items: result.items.length, history: result.history.length, spent };
  };

  it('in-memory: a recall scores the items that share its rarest terms, and no other', async () => {
    const small = await costOf(createInMemoryMemory(), 20);
    const large = await costOf(createInMemoryMemory(), 5_000);
    expect(small).toMatchObject({ items: 3, history: 6, spent: { recalls: 1, scored: 3 } });
    expect(large).toEqual(small);
  });

  it('lowdb: a recall scores those items and reads back only what it returns (the items found and the session\'s turns)', async () => {
    const small = await costOf(await createLowdbMemory(await openStoreDirectory(await tempDir())), 20);
    const large = await costOf(await createLowdbMemory(await openStoreDirectory(await tempDir())), 5_000);
    expect(small).toMatchObject({ items: 3, history: 6, spent: { recalls: 1, scored: 3, itemsRead: 3 + 3, bytesWritten: 0 } });
    expect(large).toEqual(small);
  });

  it('lowdb: a write-back appends its own line only, as many bytes with 5,000 items on disk as with 10', async () => {
    const dir = await tempDir();
    const memory = await createLowdbMemory(await openStoreDirectory(dir));
    const writeBack = async (index: number) => {
      const written = memory.stats().bytesWritten;
      const onDisk = (await readFile(fileOf(dir, 'acme'), 'utf8').catch(() => '')).length;
      await memory.remember(record(index, `question number ${String(index).padStart(5, '0')}`), { idempotencyKey: `k${String(index).padStart(5, '0')}`, signal });
      return { written: memory.stats().bytesWritten - written, grown: (await readFile(fileOf(dir, 'acme'), 'utf8')).length - onDisk };
    };
    await writeBack(0);
    for (let index = 1; index < 10; index++) await memory.remember(record(index, `filler ${index}`), { idempotencyKey: `f${index}`, signal });
    const early = await writeBack(10);
    await Promise.all(Array.from({ length: 5_000 }, (_, index) => memory.remember(record(20 + index, `filler ${index}`), { idempotencyKey: `g${index}`, signal })));
    const late = await writeBack(20_000);
    expect(early.written).toBe(early.grown);
    expect(late).toEqual(early);
    expect(early.written).toBeLessThan(300);
  });
});
