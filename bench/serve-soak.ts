// A busy `runchart serve`: `npx tsx bench/serve-soak.ts [waves] [concurrency] [idle seconds] [--no-record] [--no-gc]`.
// Starts the server as a child process on a temporary store with the default config (plus an API
// key), sends `waves` waves of `concurrency` concurrent `POST /v1/runs`, and prints the child's
// resident set (VmRSS of /proc/<pid>/status) after each wave and after the idle time. Before each
// measurement a full garbage collection runs in the child (through its inspector, `--inspect`),
// so what is measured is what the server holds, not garbage V8 has not collected yet (`--no-gc`
// measures without it, as an operator watching the process sees it).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WebSocket } from 'ws';
import { generateApiKey } from '../src/ingress/http.js';

const cliChild = fileURLToPath(new URL('../test/support/cli-child.ts', import.meta.url));

/** What a soak measures. */
export interface SoakOptions {
  waves: number;
  concurrency: number;
  /** How long the server sits idle after the last wave before the last measurement. */
  idleMs: number;
  /** `telemetry.record_runs`; the default config records every run. */
  recordRuns?: boolean;
  /** False: measure without a full collection first (RSS as an operator sees it, garbage included). */
  collectGarbage?: boolean;
  /** Told after each measurement (the benchmark prints it). */
  onMeasure?: (label: string, rssMb: number, heapMb: number, failed: number) => void;
}

/** The figures of one soak: RSS in MB after each wave and after idling, and requests that did not answer 200. */
export interface SoakResult {
  afterWave: number[];
  /** The child's V8 heap in use (MB) after each wave, after the same collection. */
  heapAfterWave: number[];
  afterIdle: number;
  failed: number;
  /** The requests that did not complete, by reason (`HTTP 503`, `ECONNRESET`, …). */
  failures: Record<string, number>;
  /** How many runs answered 200 with status completed. */
  completed: number;
  /** The warnings the server printed (`runchart: warning: …` on stderr), such as recording lines dropped. */
  warnings: string[];
}

/** The resident set of a process in MB, from `/proc/<pid>/status`. */
export function residentMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`bench: no VmRSS in /proc/${pid}/status (is this Linux, and is the process alive?)`);
  return Number(match[1]) / 1024;
}

/** The child's inspector: a full collection on demand, and the heap in use after it. */
interface ChildInspector {
  collect(): Promise<number>;
  close(): void;
}

async function connectChildInspector(url: string, collectGarbage: boolean): Promise<ChildInspector> {
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  let next = 0;
  const call = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve, reject) => {
      const id = ++next;
      const answer = (data: Buffer) => {
        const message = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string } };
        if (message.id !== id) return;
        socket.off('message', answer);
        if (message.error) reject(new Error(`bench: the child's inspector refused ${method}: ${message.error.message}`));
        else resolve(message.result);
      };
      socket.on('message', answer);
      socket.send(JSON.stringify({ id, method, params }));
    });
  return {
    async collect() {
      if (collectGarbage) await call('HeapProfiler.collectGarbage');
      const result = (await call('Runtime.evaluate', { expression: 'process.memoryUsage().heapUsed', returnByValue: true })) as { result: { value: number } };
      return result.result.value / 2 ** 20;
    },
    close: () => socket.close(),
  };
}

async function startServe(dir: string, recordRuns: boolean, collectGarbage: boolean): Promise<{ child: ChildProcess; url: string; key: string; inspector: ChildInspector; stderr: () => string }> {
  const { key, sha256 } = generateApiKey();
  const config = join(dir, 'runchart.yaml');
  await writeFile(
    config,
    [
      'telemetry:',
      '  emit_structured_events: false',
      ...(recordRuns ? [] : ['  record_runs: false']),
      'http:',
      `  api_keys: [{ sha256: "${sha256}", tenant: acme, principal: ops }]`,
      '',
    ].join('\n'),
  );
  const child = spawn(process.execPath, ['--inspect=127.0.0.1:0', '--import', 'tsx', cliChild, 'serve', '--port', '0', '--config', config, '--store', join(dir, 'store')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, OPENAI_API_KEY: '', OPENAI_BASE_URL: '', NO_COLOR: '1' },
  });
  let out = '';
  let err = '';
  const inspectorUrl = new Promise<string>((resolve) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      const match = /Debugger listening on (ws:\/\/\S+)/.exec(err);
      if (match) resolve(match[1]!);
    });
  });
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /serving on (http:\/\/\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.on('exit', (code) => reject(new Error(`bench: serve exited (${code}) before serving:\n${out}\n${err}`)));
  });
  return { child, url, key, inspector: await connectChildInspector(await inspectorUrl, collectGarbage), stderr: () => err };
}

/** One `POST /v1/runs` over `agent`: the HTTP status and the run's status. */
function postRun(url: string, key: string, agent: Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ input: 'what is 2+3?' });
    const sent = request(`${url}/v1/runs`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${key}` } }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => void (text += chunk));
      response.on('end', () => {
        if (response.statusCode !== 200) return resolve(`HTTP ${response.statusCode}`);
        const status = (JSON.parse(text) as { status?: string }).status;
        resolve(status === 'completed' ? 'completed' : `status ${status}`);
      });
      response.on('error', reject);
    });
    sent.on('error', reject);
    sent.end(body);
  });
}

/**
 * One wave of concurrent runs, each on a connection of its own; the connections are closed after
 * the wave, so none sits idle through a measurement and is reset by the server's keep-alive
 * timeout just as the next wave picks it up.
 */
async function wave(url: string, key: string, concurrency: number): Promise<{ completed: number; reasons: Map<string, number> }> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const answers = await Promise.allSettled(Array.from({ length: concurrency }, () => postRun(url, key, agent)));
  agent.destroy();
  const reasons = new Map<string, number>();
  for (const answer of answers) {
    const reason = answer.status === 'fulfilled' ? answer.value : ((answer.reason as NodeJS.ErrnoException).code ?? String(answer.reason));
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
  const completed = reasons.get('completed') ?? 0;
  reasons.delete('completed');
  return { completed, reasons };
}

/**
 * Starts `runchart serve` in a child process on a temporary store, sends waves of concurrent runs
 * and measures the child's RSS after each wave and after idling; stops the child and removes the store.
 * @example
 * const { afterWave } = await soakServe({ waves: 4, concurrency: 200, idleMs: 1000 });
 */
export async function soakServe(options: SoakOptions): Promise<SoakResult> {
  const dir = await mkdtemp(join(tmpdir(), 'runchart-soak-'));
  const { child, url, key, inspector, stderr } = await startServe(dir, options.recordRuns ?? true, options.collectGarbage ?? true);
  const afterWave: number[] = [];
  const heapAfterWave: number[] = [];
  let failed = 0;
  let completed = 0;
  const failures = new Map<string, number>();
  try {
    options.onMeasure?.('started', residentMb(child.pid!), await inspector.collect(), 0);
    for (let index = 0; index < options.waves; index++) {
      const answered = await wave(url, key, options.concurrency);
      completed += answered.completed;
      for (const [reason, count] of answered.reasons) {
        failed += count;
        failures.set(reason, (failures.get(reason) ?? 0) + count);
      }
      heapAfterWave.push(await inspector.collect());
      afterWave.push(residentMb(child.pid!));
      options.onMeasure?.(`after wave ${index + 1}`, afterWave[index]!, heapAfterWave[index]!, failed);
    }
    await new Promise((resolve) => setTimeout(resolve, options.idleMs));
    const heap = await inspector.collect();
    const afterIdle = residentMb(child.pid!);
    options.onMeasure?.(`after ${options.idleMs / 1000} s idle`, afterIdle, heap, failed);
    const warnings = stderr().split('\n').filter((line) => line.startsWith('runchart: warning:') && !line.includes('no rule allows it'));
    return { afterWave, heapAfterWave, afterIdle, failed, failures: Object.fromEntries(failures), completed, warnings };
  } finally {
    inspector.close();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const words = process.argv.slice(2);
  const recordRuns = !words.includes('--no-record');
  const collectGarbage = !words.includes('--no-gc');
  const [waves = 5, concurrency = 1000, idleSeconds = 60] = words.filter((word) => !word.startsWith('--')).map(Number);
  console.log(`serve soak: ${waves} waves of ${concurrency} concurrent runs, then ${idleSeconds} s idle; record_runs: ${recordRuns}; ${collectGarbage ? 'measured after a full collection' : 'measured without collecting first'}`);
  const { warnings, failures } = await soakServe({
    waves,
    concurrency,
    idleMs: idleSeconds * 1000,
    recordRuns,
    collectGarbage,
    onMeasure: (label, rssMb, heapMb, failedSoFar) =>
      console.log(`${label.padEnd(18)} RSS ${rssMb.toFixed(0).padStart(5)} MB   heap ${heapMb.toFixed(0).padStart(5)} MB   requests not completed: ${failedSoFar}`),
  });
  for (const [reason, count] of Object.entries(failures)) console.log(`not completed: ${count} × ${reason}`);
  for (const warning of warnings) console.log(warning);
}
