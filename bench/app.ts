// The app-shaped workload: one tenant, its users and sessions, varied questions, a long history; measured block by block.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChatMessage } from '../src/index.js';
import { aiSdkWorkload } from './ai-sdk.js';
import { forceGc, measureParkedHeap, median, nowMicros, summarize, type Workload } from './measure.js';
import { expectedOutput, runchartWorkload, type RequestShape, type StoreKind } from './workloads.js';

/** A file beside the bench's sources (the compiled bench runs from bench/.build/bench/). */
export function benchFile(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // Compiled to bench/.build/bench/, or a copy of that build under bench/.builds/<name>/bench/: the file stays in bench/.
  const compiled = /^(.*[\\/]bench)[\\/]\.build(?:s[\\/][^\\/]+)?[\\/]bench$/.exec(here);
  return join(compiled ? compiled[1]! : here, name);
}

/** The questions users ask, one a line in `bench/questions.txt`: a fixed list, so every bench run sees the same inputs. */
export const questions: readonly string[] = readFileSync(benchFile('questions.txt'), 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter(Boolean);

/** Which question run `index` asks: a fixed scramble of the run number (the same every bench run). */
export function questionFor(index: number): string {
  let hash = Math.imul(index ^ 0x9e3779b9, 0x85ebca6b);
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  return questions[((hash ^ (hash >>> 16)) >>> 0) % questions.length]!;
}

/** How many users and sessions the app has: `sessions` is a multiple of `principals`, so a session always has one user. */
export interface AppPeople {
  principals: number;
  sessions: number;
}

/**
 * One tenant (`app`), `principal = u<i % principals>`, `session = s<i % sessions>`, a question from
 * the list. Each run's prompt is checked: once its session has had two turns, the history the model
 * is shown is the session's turns in order (runs `i - sessions`, `i - 2 × sessions`, …, each with
 * its answer), up to the turn before or (its write-back still under way) the one before that.
 */
export function appShape(people: AppPeople): RequestShape {
  const request = (index: number) => ({ input: questionFor(index), tenantId: 'app', principalId: `u${index % people.principals}`, sessionId: `s${index % people.sessions}` });
  return {
    label: ', app',
    request,
    checkPrompt(index, messages) {
      const problem = promptProblem(index, messages, people);
      if (problem) throw new Error(`bench: app workload, run ${index}: ${problem}`);
    },
  };
}

function promptProblem(index: number, messages: readonly ChatMessage[], people: AppPeople): string | undefined {
  const last = messages.at(-1);
  if (last?.role !== 'user' || last.content !== questionFor(index)) return `the model's last message is not the run's question`;
  const history = messages.slice(1, -1);
  // The session's turns, newest first: runs index - sessions, index - 2 × sessions, …
  const earlier = (turn: number) => index - turn * people.sessions;
  const endsWith = (lag: number) =>
    history.length > 0 &&
    history.length % 2 === 0 &&
    Array.from({ length: history.length / 2 }, (_, turn) => history.length - 2 - 2 * turn).every((at, turn) => {
      const [question, answer] = [history[at]!, history[at + 1]!];
      return earlier(turn + lag) >= 0 && question.role === 'user' && question.content === questionFor(earlier(turn + lag)) && answer.role === 'assistant' && answer.content === expectedOutput;
    });
  // The turn just before may still be on its way (a write-back is background work); the one before it must be in.
  if (earlier(2) >= 0 && !endsWith(1) && !endsWith(2)) {
    return `the history is not the session's turns up to run ${earlier(1)} or ${earlier(2)}, oldest first (${history.length} messages)`;
  }
  return undefined;
}

/** One block of sequential runs, and the process and store after it. */
export interface AppBlock {
  /** Runs before the block, and in it. */
  firstRun: number;
  runs: number;
  p50: number;
  p99: number;
  mean: number;
  /** After a forced GC at the end of the block. */
  rssMB: number;
  heapMB: number;
  /** Bytes of the store directory (file store only), and of its memory folder among them. */
  diskMB?: number;
  memoryDiskMB?: number;
  /** Share of the block's runs whose model was shown recalled items (not only history). */
  recalledShare: number;
  seconds: number;
}

export interface AppPlan {
  people: AppPeople;
  blocks: number;
  runsPerBlock: number;
  /** Runs of the side-by-side check after the blocks (0: none). */
  alternating?: number;
  /** The AI SDK on the same requests with the same history, after the check (none: not measured). */
  peer?: { runs: number; inFlight: number; rounds: number; parked: number };
}

/**
 * The store after its blocks against the AI SDK given the same history (its in-memory memory
 * holds a record of every turn the store has remembered): p50 run by run alternately, runs/s of
 * rounds of `inFlight` runs at once (alternately, after a warm-up round each), heap per parked run.
 */
export interface AppPeer {
  history: number;
  runs: number;
  p50: { runchart: number; aiSdk: number; ratio: number };
  throughput: { inFlight: number; runchart: number[]; aiSdk: number[]; runchartMedian: number; aiSdkMedian: number; ratio: number };
  heap: { parked: number; runchart: number; aiSdk: number; ratio: number };
}

/**
 * The store after its blocks against a new one, run by run alternately in one process: the new
 * store's last `runs` of its first block against as many more of the old store's. The machine's
 * noise (other work on a shared box) falls on both alike, so the ratio says what the history costs.
 */
export interface Alternating {
  runs: number;
  /** The old store's history when the check began. */
  history: number;
  oldP50: number;
  newP50: number;
  ratio: number;
}

/** The size of everything under `path`, in bytes. */
export function bytesUnder(path: string): number {
  let total = 0;
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const full = join(path, entry.name);
    total += entry.isDirectory() ? bytesUnder(full) : statSync(full).size;
  }
  return total;
}

/**
 * The app workload on one store: `blocks × runsPerBlock` sequential checked runs, timed one by one,
 * with the process's RSS and JS heap (after a forced GC) and the store's size after each block.
 */
export async function measureApp(
  store: StoreKind,
  plan: AppPlan,
  onBlock: (block: AppBlock) => void,
): Promise<{ name: string; blocks: AppBlock[]; alternating?: Alternating; peer?: AppPeer }> {
  const workload = runchartWorkload(store, appShape(plan.people));
  const blocks: AppBlock[] = [];
  let alternating: Alternating | undefined;
  let peer: AppPeer | undefined;
  try {
    let index = 0;
    for (let block = 0; block < plan.blocks; block++) {
      const began = nowMicros();
      const samples: number[] = new Array(plan.runsPerBlock);
      let recalled = 0;
      for (let i = 0; i < plan.runsPerBlock; i++) {
        const start = nowMicros();
        await workload.run(index++);
        samples[i] = nowMicros() - start;
        if (workload.stats.firstMessages[0]?.content?.includes('earlier conversations')) recalled++;
      }
      await workload.settle();
      await forceGc();
      const latency = summarize(samples, 0);
      const memory = process.memoryUsage();
      const result: AppBlock = {
        firstRun: index - plan.runsPerBlock,
        runs: plan.runsPerBlock,
        p50: latency.p50,
        p99: latency.p99,
        mean: latency.mean,
        rssMB: memory.rss / 2 ** 20,
        heapMB: memory.heapUsed / 2 ** 20,
        ...(workload.dir ? { diskMB: bytesUnder(workload.dir) / 2 ** 20, memoryDiskMB: bytesUnder(join(workload.dir, 'memory')) / 2 ** 20 } : {}),
        recalledShare: recalled / plan.runsPerBlock,
        seconds: (nowMicros() - began) / 1e6,
      };
      blocks.push(result);
      onBlock(result);
    }
    if (plan.alternating) {
      alternating = await alternate(store, plan, workload, index);
      index += alternating.runs;
    }
    if (plan.peer) peer = await againstAiSdk(plan, workload, index);
  } finally {
    await (workload as Workload).close();
  }
  return { name: workload.name, blocks, ...(alternating ? { alternating } : {}), ...(peer ? { peer } : {}) };
}

/**
 * The AI SDK's memory as the store's is after `history` runs: every turn remembered in order,
 * under the same user and session, with the answer every run gives.
 */
async function seedHistory(workload: ReturnType<typeof aiSdkWorkload>, people: AppPeople, history: number): Promise<void> {
  const shape = appShape(people);
  const signal = new AbortController().signal;
  const from = Date.parse('2026-01-01T00:00:00.000Z');
  for (let index = 0; index < history; index++) {
    const request = shape.request(index);
    await workload.deps.memory.remember(
      { tenantId: request.tenantId, principalId: request.principalId, sessionId: request.sessionId!, runId: `run-${index}`, input: request.input, output: expectedOutput, createdAt: new Date(from + index).toISOString() },
      { idempotencyKey: `run-${index}:memory.write`, signal },
    );
  }
}

async function againstAiSdk(plan: AppPlan, old: Workload, history: number): Promise<AppPeer> {
  const { runs, inFlight, rounds, parked } = plan.peer!;
  const peer = aiSdkWorkload(appShape(plan.people));
  await seedHistory(peer, plan.people, history);
  let index = history;
  try {
    const mine: number[] = [];
    const theirs: number[] = [];
    // Each timed run starts with the other's leftovers (background write-back, store writes) done,
    // and the order flips every pair, so neither pays for the other.
    const timed = async (workload: Workload, at: number, into: number[]) => {
      const start = nowMicros();
      await workload.run(at);
      into.push(nowMicros() - start);
      await workload.settle();
    };
    for (let i = 0; i < runs; i++, index++) {
      if (i % 2 === 0) {
        await timed(old, index, mine);
        await timed(peer, index, theirs);
      } else {
        await timed(peer, index, theirs);
        await timed(old, index, mine);
      }
    }
    const round = async (workload: Workload, first: number) => {
      await forceGc();
      const start = nowMicros();
      await workload.runMany(inFlight, first);
      await workload.settle();
      return inFlight / ((nowMicros() - start) / 1e6);
    };
    const throughput = { runchart: [] as number[], aiSdk: [] as number[] };
    // The first round of each is a warm-up; the order flips every round.
    for (let i = 0; i <= rounds; i++, index += inFlight) {
      const first = i % 2 === 0 ? old : peer;
      const firstRate = await round(first, index);
      const secondRate = await round(first === old ? peer : old, index);
      if (i === 0) continue;
      throughput.runchart.push(first === old ? firstRate : secondRate);
      throughput.aiSdk.push(first === old ? secondRate : firstRate);
    }
    const heapOld = await measureParkedHeap(old, { count: parked, startIndex: index });
    const heapPeer = await measureParkedHeap(peer, { count: parked, startIndex: index });
    const p50 = { runchart: summarize(mine, 0).p50, aiSdk: summarize(theirs, 0).p50 };
    const medians = { runchart: median(throughput.runchart), aiSdk: median(throughput.aiSdk) };
    return {
      history,
      runs,
      p50: { ...p50, ratio: p50.runchart / p50.aiSdk },
      throughput: { inFlight, ...throughput, runchartMedian: medians.runchart, aiSdkMedian: medians.aiSdk, ratio: medians.runchart / medians.aiSdk },
      heap: { parked, runchart: heapOld.kbPerRun, aiSdk: heapPeer.kbPerRun, ratio: heapOld.kbPerRun / heapPeer.kbPerRun },
    };
  } finally {
    await peer.close();
  }
}

async function alternate(store: StoreKind, plan: AppPlan, old: Workload, history: number): Promise<Alternating> {
  const runs = Math.min(plan.alternating!, plan.runsPerBlock);
  const young = runchartWorkload(store, appShape(plan.people));
  try {
    let index = 0;
    while (index < plan.runsPerBlock - runs) await young.run(index++);
    const oldSamples: number[] = [];
    const newSamples: number[] = [];
    for (let i = 0; i < runs; i++) {
      let start = nowMicros();
      await old.run(history + i);
      oldSamples.push(nowMicros() - start);
      start = nowMicros();
      await young.run(index++);
      newSamples.push(nowMicros() - start);
    }
    const oldP50 = summarize(oldSamples, 0).p50;
    const newP50 = summarize(newSamples, 0).p50;
    return { runs, history, oldP50, newP50, ratio: oldP50 / newP50 };
  } finally {
    await young.close();
  }
}
