// The benchmark's one-hop run through createRuntime, and the fake model and tool every workload shares.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { z } from 'zod';
import {
  createRuntime,
  defineCapability,
  type Capability,
  type ChatMessage,
  type ModelAdapter,
  type ModelRequest,
  type ModelResponse,
  type PolicyRule,
  type RunHandle,
  type RunResult,
  type Runtime,
} from '../src/index.js';
import { waitUntil, type ParkedRuns, type Workload } from './measure.js';

/** The answer every run must end with: the model repeats the tool's result. */
export const expectedOutput = '2 + 3 = 5';
export const runInput = 'what is 2+3?';

/** Counts of what the fakes were asked to do, across all runs of one workload. */
export interface FakeStats {
  modelCalls: number;
  toolCalls: number;
  /** While true, the model's second call (the one after the tool result) never answers until released. */
  parking: boolean;
  /** Releases of parked second calls; held here as a socket would hold its callback. */
  parked: (() => void)[];
  /** The messages of the latest first call (the one after the user's question): what recall put in front of the model. */
  firstMessages: readonly ChatMessage[];
}

export function newStats(): FakeStats {
  return { modelCalls: 0, toolCalls: 0, parking: false, parked: [], firstMessages: [] };
}

const usage = () => ({ inputTokens: 10, outputTokens: 5 });

/**
 * An instant model that decides by the last message: after the user's question it asks for
 * `math_add` {a:2,b:3}; after a tool result it answers with it. Reusable for any number of runs.
 */
export function instantModel(stats: FakeStats): ModelAdapter {
  return {
    name: 'bench-instant',
    step(request: ModelRequest): Promise<ModelResponse> {
      stats.modelCalls++;
      const last = request.messages[request.messages.length - 1];
      if (last?.role === 'user') {
        stats.firstMessages = request.messages;
        return Promise.resolve({
          text: null,
          toolCalls: [{ id: 'call_1', name: 'math_add', arguments: '{"a":2,"b":3}' }],
          usage: usage(),
          finishReason: 'tool_calls',
        });
      }
      if (last?.role === 'tool') {
        const answer: ModelResponse = { text: `2 + 3 = ${last.content}`, toolCalls: [], usage: usage(), finishReason: 'stop' };
        if (stats.parking) return new Promise((resolve) => stats.parked.push(() => resolve(answer)));
        return Promise.resolve(answer);
      }
      return Promise.reject(new Error(`bench model: unexpected last message (${last?.role ?? 'none'})`));
    },
  };
}

/** `math.add`, counting its executions. */
export function mathAdd(stats: FakeStats): Capability {
  return defineCapability({
    name: 'math.add',
    version: '1.0.0',
    description: 'Add two numbers',
    input: z.object({ a: z.number(), b: z.number() }),
    output: z.number(),
    effects: 'read',
    handler: async ({ a, b }) => {
      stats.toolCalls++;
      return a + b;
    },
  }) as Capability;
}

/** The rules policy of the benchmark: runs may start, answer and remember; `math.*` tools are allowed. */
export const benchRules: PolicyRule[] = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
  { id: 'allow-math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] },
];

/** A fresh request per run; a tenant per run keeps recall's work the same for every run (memory is per tenant). */
export function requestFor(index: number): { input: string; tenantId: string; principalId: string; sessionId?: string } {
  return { input: runInput, tenantId: `tenant-${index}`, principalId: 'user-7' };
}

/** What every workload's run must come back with, in one shape. */
export interface Outcome {
  status: string;
  output: string | null;
  modelCalls: number;
  toolCalls: number;
  toolOutput: unknown;
  detail?: string;
}

/** Throws a clear message when a run's outcome is not the expected one. */
export function checkOutcome(workload: string, index: number, outcome: Outcome): void {
  const problems: string[] = [];
  if (outcome.status !== 'completed') problems.push(`status is "${outcome.status}", expected "completed"${outcome.detail ? ` (${outcome.detail})` : ''}`);
  if (outcome.output !== expectedOutput) problems.push(`output is ${JSON.stringify(outcome.output)}, expected ${JSON.stringify(expectedOutput)}`);
  if (outcome.modelCalls !== 2) problems.push(`${outcome.modelCalls} model calls, expected 2`);
  if (outcome.toolCalls !== 1) problems.push(`${outcome.toolCalls} tool calls, expected 1`);
  if (outcome.toolOutput !== 5) problems.push(`tool output is ${JSON.stringify(outcome.toolOutput)}, expected 5`);
  if (problems.length) throw new Error(`bench: ${workload}, run ${index}: ${problems.join('; ')}`);
}

/** Checks the fakes' counters against the number of runs that finished since `before`. */
export function checkCounts(workload: string, stats: FakeStats, before: { modelCalls: number; toolCalls: number }, runs: number): void {
  const models = stats.modelCalls - before.modelCalls;
  const tools = stats.toolCalls - before.toolCalls;
  if (models !== 2 * runs || tools !== runs) {
    throw new Error(`bench: ${workload}: ${runs} runs made ${models} model calls and executed ${tools} tool calls; expected ${2 * runs} and ${runs}`);
  }
}

/** A run's result in the shape every workload's check takes. */
export function outcomeOf(result: RunResult): Outcome {
  const call = result.toolCalls[0];
  return {
    status: result.status,
    output: result.output,
    modelCalls: result.usage.modelCalls,
    toolCalls: result.toolCalls.length === 1 && result.usage.toolCalls === 1 ? 1 : Math.max(result.toolCalls.length, result.usage.toolCalls),
    toolOutput: call?.outcome.status === 'ok' ? call.outcome.output : call?.outcome,
    ...(result.error ? { detail: `${result.error.layer}: ${result.error.message}` } : {}),
  };
}

export type StoreKind = 'memory' | 'lowdb' | 'postgres';

/** The database a `postgres` workload runs on, each in a schema of its own that its close drops. */
function benchDatabaseUrl(): string {
  const url = process.env.RUNCHART_BENCH_DATABASE_URL ?? process.env.DATABASE_URL;
  if (!url) throw new Error('bench: the postgres workloads need RUNCHART_BENCH_DATABASE_URL (or DATABASE_URL), e.g. postgres://postgres@127.0.0.1:5432/test');
  return url;
}

/** Who asks what: a fresh tenant per run (`requestFor`), or one app's users and sessions (`bench/app.ts`). */
export interface RequestShape {
  /** Added to the workload's name. */
  label: string;
  request(index: number): ReturnType<typeof requestFor>;
  /** Checks what the model was shown for the run (its history, say); throws with a message naming the run. */
  checkPrompt?(index: number, messages: readonly ChatMessage[]): void;
}

/** A tenant of its own for every run: recall always meets an empty memory. */
export const freshTenants: RequestShape = { label: '', request: requestFor };

/**
 * The one-hop run through `createRuntime`: rules policy, the default telemetry (none given: OTel
 * spans to the global tracer, a no-op without an SDK), structured events off; in-memory stores,
 * the lowdb defaults in a fresh temporary directory (`dir` on the workload, for its size), or
 * PostgreSQL in a fresh schema (`RUNCHART_BENCH_DATABASE_URL`), dropped at close.
 */
export function runchartWorkload(store: StoreKind, shape: RequestShape = freshTenants): Workload & { stats: FakeStats; runtime: Runtime; dir: string | undefined } {
  const name = `${store === 'memory' ? 'runchart in-memory' : `runchart ${store}`}${shape.label}`;
  const requestOf = shape.request;
  const stats = newStats();
  const dir = store === 'lowdb' ? mkdtempSync(join(tmpdir(), 'runchart-bench-')) : undefined;
  const database = store === 'postgres' ? { url: benchDatabaseUrl(), schema: `rc_bench_${Math.random().toString(36).slice(2, 10)}` } : undefined;
  const runtime = createRuntime({
    model: instantModel(stats),
    capabilities: [mathAdd(stats)],
    config: {
      store: dir ? { kind: 'lowdb', dir } : database ? { kind: 'postgres', ...database } : { kind: 'memory' },
      telemetry: { emit_structured_events: false },
      policy: { rules: structuredClone(benchRules) },
    },
  });

  function check(index: number, result: RunResult) {
    checkOutcome(name, index, outcomeOf(result));
    if (result.background !== 'queued') throw new Error(`bench: ${name}, run ${index}: background is ${result.background}, expected queued`);
  }

  return {
    name,
    stats,
    runtime,
    dir,
    async run(index) {
      const before = { modelCalls: stats.modelCalls, toolCalls: stats.toolCalls };
      check(index, await runtime.run(requestOf(index)));
      checkCounts(`${name}, run ${index}`, stats, before, 1);
      shape.checkPrompt?.(index, stats.firstMessages);
    },
    async runMany(count, firstIndex) {
      const before = { modelCalls: stats.modelCalls, toolCalls: stats.toolCalls };
      const handles: RunHandle[] = new Array(count);
      for (let i = 0; i < count; i++) handles[i] = runtime.start(requestOf(firstIndex + i));
      const results = await Promise.all(handles.map((handle) => handle.result));
      results.forEach((result, i) => check(firstIndex + i, result));
      checkCounts(`${name}, ${count} runs in flight`, stats, before, count);
    },
    async park(count, firstIndex): Promise<ParkedRuns> {
      const before = { modelCalls: stats.modelCalls, toolCalls: stats.toolCalls };
      stats.parking = true;
      let settled = 0;
      const handles: RunHandle[] = new Array(count);
      for (let i = 0; i < count; i++) {
        const handle = (handles[i] = runtime.start(requestOf(firstIndex + i)));
        handle.result.then(
          () => settled++,
          () => settled++,
        );
      }
      await waitUntil(() => stats.parked.length === count || settled > 0, 300_000, `${count} ${name} runs to park`);
      stats.parking = false;
      if (settled > 0) throw new Error(`bench: ${name}: ${settled} runs finished while they should be parked`);
      return {
        inFlight: () =>
          settled === 0
            ? handles.filter((handle) => {
                const snapshot = handle.actor.getSnapshot();
                return snapshot.status === 'active' && snapshot.value === 'modelStep' && snapshot.context.usage.modelCalls === 1 && snapshot.context.toolCalls.length === 1;
              }).length
            : 0,
        async release() {
          for (const resume of stats.parked.splice(0)) resume();
          const results = await Promise.all(handles.map((handle) => handle.result));
          results.forEach((result, i) => check(firstIndex + i, result));
          checkCounts(`${name}, ${count} parked runs`, stats, before, count);
        },
      };
    },
    settle: () => runtime.drain(),
    async close() {
      await runtime.drain();
      await runtime.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (database) {
        const admin = new pg.Client({ connectionString: database.url });
        await admin.connect();
        await admin.query(`DROP SCHEMA IF EXISTS ${database.schema} CASCADE; DROP SCHEMA IF EXISTS ${database.schema}_queue CASCADE`);
        await admin.end();
      }
    },
  };
}
