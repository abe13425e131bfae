import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/temp.js';

const child = fileURLToPath(new URL('../support/crash-child.ts', import.meta.url));

/** Starts the child runtime; resolves with the first line starting with `waitFor` and the process. */
function startChild(args: string[], waitFor: string) {
  const process_ = spawn(process.execPath, ['--import', 'tsx', child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  process_.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const line = new Promise<string>((resolve, reject) => {
    process_.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const found = out.split('\n').find((candidate) => candidate.startsWith(waitFor));
      if (found) resolve(found);
    });
    process_.on('exit', (code) => reject(new Error(`child exited (${code}) before "${waitFor}"\nstdout:\n${out}\nstderr:\n${err}`)));
  });
  return { process: process_, line, output: () => ({ out, err }) };
}

async function killAt(dir: string, point: string): Promise<string> {
  const started = startChild([dir, 'start', point], `PAUSE ${point}`);
  const line = await started.line;
  started.process.kill('SIGKILL');
  await new Promise((resolve) => started.process.on('exit', resolve));
  return line;
}

async function finish(dir: string, args: string[]): Promise<{ runId: string; status: string; output: string | null }[]> {
  const again = startChild([dir, ...args], 'RESULT ');
  const line = await again.line;
  await new Promise((resolve) => again.process.on('exit', resolve));
  return JSON.parse(line.slice('RESULT '.length));
}

const lines = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : []);
/** Every run in the store: the last line of each in runs.jsonl, then the finished ones in runs-finished.jsonl (which win). */
const stored = (dir: string) => {
  const runs: Record<string, { status: string }> = {};
  for (const file of ['runs.jsonl', 'runs-finished.jsonl']) for (const line of lines(join(dir, file))) {
    const run = JSON.parse(line) as { runId: string; status: string };
    runs[run.runId] = run;
  }
  return runs;
};

describe('a process killed with SIGKILL loses no run', () => {
  it('before the model call: the restored run calls the model again and completes', async () => {
    const dir = await tempDir('runchart-crash-');
    await killAt(dir, 'before-model');
    expect(Object.values(stored(dir)).map((run) => run.status)).toEqual(['running']);
    const results = await finish(dir, ['recover']);
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ status: 'completed', output: 'done: {"written":true}' });
    expect(lines(join(dir, 'effects.log'))).toHaveLength(1);
    expect(Object.values(stored(dir)).map((run) => run.status)).toEqual(['completed']);
  });

  it('mid-tool: the call runs again with the same idempotency key and the effect happens once', async () => {
    const dir = await tempDir('runchart-crash-');
    await killAt(dir, 'mid-tool');
    const results = await finish(dir, ['recover']);
    expect(results[0]!.status).toBe('completed');
    const executions = lines(join(dir, 'executions.log'));
    expect(executions).toHaveLength(2);
    expect(new Set(executions).size).toBe(1);
    expect(lines(join(dir, 'effects.log'))).toEqual([`${executions[0]} paid`]);
  });

  it('after the tool, before the snapshot: the journaled result is used, the tool is not run again', async () => {
    const dir = await tempDir('runchart-crash-');
    await killAt(dir, 'after-tool');
    const results = await finish(dir, ['recover']);
    expect(results[0]).toMatchObject({ status: 'completed', output: 'done: {"written":true}' });
    expect(lines(join(dir, 'executions.log'))).toHaveLength(1);
    expect(lines(join(dir, 'effects.log'))).toHaveLength(1);
  });

  it('in approval: the parked run is approved from a new process and its tool runs once', async () => {
    const dir = await tempDir('runchart-crash-');
    const [, , runId, callId] = (await killAt(dir, 'in-approval')).split(' ') as [string, string, string, string];
    expect(stored(dir)[runId]!.status).toBe('awaiting_approval');
    expect(lines(join(dir, 'executions.log'))).toHaveLength(0);
    const results = await finish(dir, ['approve', runId, callId]);
    expect(results[0]).toMatchObject({ runId, status: 'completed' });
    expect(lines(join(dir, 'effects.log'))).toHaveLength(1);
  });

  it('in background: the queued hook is finished by the next process', async () => {
    const dir = await tempDir('runchart-crash-');
    await killAt(dir, 'in-background');
    const runs = stored(dir);
    expect(Object.values(runs).map((run) => run.status)).toEqual(['completed']);
    expect(lines(join(dir, 'hooks.log'))).toHaveLength(0);
    const results = await finish(dir, ['recover']);
    expect(results).toEqual([]);
    expect(lines(join(dir, 'hooks.log'))).toEqual(Object.keys(runs));
    // The memory write-back is done once: one item in the tenant's memory file.
    const [file, ...others] = readdirSync(join(dir, 'memory'));
    expect(others).toEqual([]);
    const [header, ...items] = lines(join(dir, 'memory', file!)).map((line) => JSON.parse(line) as { tenantId?: string; key?: string });
    expect(header!.tenantId).toBe('acme');
    expect(items.map((item) => item.key)).toEqual([`${Object.keys(runs)[0]}:memory.write`]);
  });
});
