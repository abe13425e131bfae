// Runs on PostgreSQL across processes: `npm run bench:cluster` (needs RUNCHART_BENCH_DATABASE_URL or
// DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test). Measured in one process run:
//  - runs/s with 1, 2 and 4 `runchart worker` processes: a server runtime in this process submits
//    the runs (dispatched through the job queue) and waits until all are finished;
//  - p50 of the one-hop run (`what is 2+3?` on the offline demo model, math.add behind policy) run
//    in this process on PostgreSQL, against the same run on the file store.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { mathCapabilities } from '../src/catalog/math.js';
import type { RunchartConfigInput } from '../src/config.js';
import { createRuntime } from '../src/runtime.js';
import { commandLine, median, nowMicros, progress, quantile } from './measure.js';

const url = process.env.RUNCHART_BENCH_DATABASE_URL ?? process.env.DATABASE_URL;
if (!url) {
  console.error('bench:cluster needs PostgreSQL: set RUNCHART_BENCH_DATABASE_URL (or DATABASE_URL), e.g. postgres://postgres@127.0.0.1:5432/test');
  process.exit(2);
}
const { counts } = commandLine('cluster.js', { runs: 600, latencyRuns: 300, concurrency: 8 });
const options = { runs: counts[0]!, latencyRuns: counts[1]!, concurrency: counts[2]!, workers: '1,2,4' };
const admin = new pg.Pool({ connectionString: url, max: 2 });
const child = fileURLToPath(new URL('./cluster-child.js', import.meta.url));

const rules = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
  { id: 'allow-math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] },
];
const configOn = (schema: string): RunchartConfigInput =>
  ({ store: { kind: 'postgres', url, schema, max_connections: 6 }, policy: { rules }, telemetry: { emit_structured_events: false, record_runs: false } }) as RunchartConfigInput;
const request = (index: number) => ({ input: 'what is 2+3?', tenantId: 'bench', principalId: `u${index % 100}`, sessionId: `s${index % 1000}` });

async function freshSchema(): Promise<string> {
  const schema = `rc_bench_${Math.random().toString(36).slice(2, 10)}`;
  await admin.query(`CREATE SCHEMA ${schema}`);
  return schema;
}
async function dropSchema(schema: string) {
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.query(`DROP SCHEMA IF EXISTS ${schema}_queue CASCADE`);
}

function startWorker(config: string): Promise<ChildProcess> {
  const worker = spawn(process.execPath, [child, 'worker', '--concurrency', String(options.concurrency), '--config', config], {
    env: { ...process.env, OPENAI_API_KEY: '', OPENAI_BASE_URL: '', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    worker.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('taking runs')) resolve(worker);
    });
    worker.once('exit', (code) => reject(new Error(`worker exited (${code}) before it started: ${out}`)));
  });
}

/** Runs/s of `count` dispatched runs on `workers` worker processes. */
async function throughput(workers: number, count: number): Promise<number> {
  const schema = await freshSchema();
  const dir = await mkdtemp(join(tmpdir(), 'runchart-bench-'));
  const config = join(dir, 'runchart.yaml');
  await writeFile(config, JSON.stringify(configOn(schema)));
  const server = createRuntime({ config: configOn(schema), capabilities: mathCapabilities, onWarning: () => {} });
  const processes = await Promise.all(Array.from({ length: workers }, () => startWorker(config)));
  try {
    // A few runs first, so every worker has connected and compiled what a run needs.
    for (let index = 0; index < workers * 2; index++) await server.submit(request(index));
    await finished(schema, workers * 2);
    const started = nowMicros();
    await Promise.all(Array.from({ length: count }, (_, index) => server.submit(request(index))));
    await finished(schema, workers * 2 + count);
    return (count / (nowMicros() - started)) * 1e6;
  } finally {
    for (const worker of processes) worker.kill('SIGTERM');
    await Promise.all(processes.map((worker) => new Promise((resolve) => (worker.exitCode !== null ? resolve(undefined) : worker.once('exit', resolve)))));
    await server.close();
    await dropSchema(schema);
    await rm(dir, { recursive: true, force: true });
  }
}

async function finished(schema: string, count: number) {
  for (;;) {
    const { rows } = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.runs WHERE status IN ('completed', 'denied', 'failed', 'cancelled')`);
    if (rows[0]!.n >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** p50/p99 (µs) of one-hop runs one after another in this process. */
async function latency(config: RunchartConfigInput, count: number): Promise<{ p50: number; p99: number }> {
  const runtime = createRuntime({ config, capabilities: mathCapabilities, onWarning: () => {} });
  const samples: number[] = [];
  try {
    for (let index = 0; index < count + 30; index++) {
      const started = nowMicros();
      const result = await runtime.run(request(index));
      if (result.status !== 'completed') throw new Error(`run ${index} ended ${result.status}: ${JSON.stringify(result.error)}`);
      if (index >= 30) samples.push(nowMicros() - started);
    }
    await runtime.drain();
  } finally {
    await runtime.close();
  }
  samples.sort((a, b) => a - b);
  return { p50: quantile(samples, 0.5), p99: quantile(samples, 0.99) };
}

const rows: string[] = [];
const results: Record<string, unknown> = { runs: options.runs, concurrency: options.concurrency };
for (const workers of String(options.workers).split(',').map(Number)) {
  progress(`throughput: ${options.runs} runs on ${workers} worker process(es)`);
  const rates = [];
  for (let round = 0; round < 2; round++) rates.push(await throughput(workers, Number(options.runs)));
  const rate = median(rates);
  results[`workers${workers}`] = Math.round(rate);
  rows.push(`| ${workers} worker process${workers > 1 ? 'es' : ''} (concurrency ${options.concurrency} each) | ${Math.round(rate)} runs/s |`);
}
progress('latency: one-hop runs on PostgreSQL and on the file store, alternating');
const schema = await freshSchema();
const dir = await mkdtemp(join(tmpdir(), 'runchart-bench-'));
const onPostgres: number[] = [];
const onFiles: number[] = [];
for (let round = 0; round < 3; round++) {
  onPostgres.push((await latency(configOn(schema), Number(options.latencyRuns))).p50);
  onFiles.push((await latency({ store: { kind: 'lowdb', dir: join(dir, `files-${round}`) }, policy: { rules }, telemetry: { emit_structured_events: false, record_runs: false } } as RunchartConfigInput, Number(options.latencyRuns))).p50);
}
await dropSchema(schema);
await rm(dir, { recursive: true, force: true });
results.p50PostgresMicros = Math.round(median(onPostgres));
results.p50FileMicros = Math.round(median(onFiles));
rows.push(`| one-hop run, p50, PostgreSQL | ${Math.round(median(onPostgres)).toLocaleString('en-US')} µs |`);
rows.push(`| one-hop run, p50, file store | ${Math.round(median(onFiles)).toLocaleString('en-US')} µs (PostgreSQL ${(median(onPostgres) / median(onFiles)).toFixed(2)}×) |`);
await admin.end();
console.log(['| cluster workload | result |', '| --- | --- |', ...rows].join('\n'));
console.log(JSON.stringify(results));
