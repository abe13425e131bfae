// Timing, percentiles and heap measurement for the benchmark; knows nothing about runchart.
import { cpus, totalmem } from 'node:os';
import { getHeapStatistics } from 'node:v8';

/** Something the benchmark can drive: one checked run at a time, many at once, or many parked. */
export interface Workload {
  readonly name: string;
  /** One run; throws (with a message naming the workload) when its result is not the expected one. */
  run(index: number): Promise<void>;
  /** Starts `count` runs at once and resolves when all are finished and checked. */
  runMany(count: number, firstIndex: number): Promise<void>;
  /** Starts `count` runs that stop at the second model call and stay in flight until released. */
  park(count: number, firstIndex: number): Promise<ParkedRuns>;
  /** Drains what the runs left behind (background work, store writes); untimed unless a phase says so. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

/** Runs held in flight by the benchmark. */
export interface ParkedRuns {
  /** How many runs are really waiting at the parking point right now (checked one by one). */
  inFlight(): number;
  /** Lets every parked run finish; resolves once all are finished and checked. */
  release(): Promise<void>;
}

/**
 * A bench script's command line: an optional name out of `choices` first, then whole numbers of 1
 * or more, each with its default. Anything else prints the usage and exits with code 2.
 * @example
 * const { chosen: make, counts: [runs] } = commandLine('profile.ts', { runs: 3000 }, { options: workloadsByName, fallback: 'memory' });
 */
export function commandLine<Choice = undefined>(
  script: string,
  defaults: Record<string, number>,
  choices?: { options: Record<string, Choice>; fallback: string },
): { chosen: Choice; counts: number[] } {
  const words = process.argv.slice(2);
  const name = choices ? (words.shift() ?? choices.fallback) : undefined;
  const chosen = (choices && name !== undefined ? choices.options[name] : undefined) as Choice;
  const counts = Object.values(defaults).map((fallback, index) => Number(words[index] ?? fallback));
  if ((choices && chosen === undefined) || counts.some((count) => !Number.isInteger(count) || count < 1)) {
    const names = [...(choices ? [Object.keys(choices.options).join('|')] : []), ...Object.keys(defaults)];
    process.stderr.write(`usage: bench/${script} ${names.map((word) => `[${word}]`).join(' ')}\n`);
    process.exit(2);
  }
  return { chosen, counts };
}

/** Writes one progress line to stderr. */
export function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Monotonic time in microseconds. */
export function nowMicros(): number {
  return Number(process.hrtime.bigint()) / 1_000;
}

/** The value at quantile `q` (0..1) of an ascending array, nearest-rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(values: readonly number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5);
}

/** Percentiles of a latency sample, in microseconds. */
export interface LatencySummary {
  warmup: number;
  measured: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
  /** p50 of the first and last tenth of the measured runs, to show a drift (a store that grows). */
  firstTenthP50: number;
  lastTenthP50: number;
  samples: number[];
}

export function summarize(samples: readonly number[], warmup: number): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const tenth = Math.max(1, Math.floor(samples.length / 10));
  return {
    warmup,
    measured: samples.length,
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
    mean: samples.reduce((sum, value) => sum + value, 0) / samples.length,
    min: sorted[0]!,
    max: sorted.at(-1)!,
    firstTenthP50: median(samples.slice(0, tenth)),
    lastTenthP50: median(samples.slice(-tenth)),
    samples: samples.map((value) => Math.round(value * 10) / 10),
  };
}

/** Sequential latency: `warmup` runs untimed, then `measured` runs timed one by one. */
export async function measureLatency(workload: Workload, options: { warmup: number; measured: number; startIndex: number }): Promise<LatencySummary> {
  let index = options.startIndex;
  for (let i = 0; i < options.warmup; i++) await workload.run(index++);
  const samples: number[] = new Array(options.measured);
  for (let i = 0; i < options.measured; i++) {
    const start = nowMicros();
    await workload.run(index++);
    samples[i] = nowMicros() - start;
  }
  return summarize(samples, options.warmup);
}

/** Bytes a run allocates, garbage included: what the garbage collector has to deal with. */
export interface AllocationSummary {
  /** Runs whose heap growth was kept (no collection ran during them). */
  kept: number;
  /** Runs during which the heap shrank, i.e. a collection ran: their growth says nothing. */
  dropped: number;
  p50KbPerRun: number;
  meanKbPerRun: number;
}

/**
 * Allocation per run: the growth of V8's used heap across each of `measured` sequential runs (the
 * workload is warm; it follows the latency runs). A run during which a collection ran shows a
 * shrinking heap and is dropped; with runs of a few hundred KB and a young generation of several
 * MB, that is one run in fifty or so (a heavier run is a little likelier to meet one, so the mean
 * leans low). Buffer contents live outside the JS heap and are not counted. For the in-memory
 * runs and the baselines this agrees within ~2% with V8's sampling heap profiler with collected
 * objects included (`npm run bench:alloc`), which is ~8% higher for the file store.
 */
export async function measureAllocation(workload: Workload, options: { measured: number; startIndex: number }): Promise<AllocationSummary> {
  const grown: number[] = [];
  let dropped = 0;
  let index = options.startIndex;
  for (let i = 0; i < options.measured; i++) {
    const before = getHeapStatistics().used_heap_size;
    await workload.run(index++);
    const after = getHeapStatistics().used_heap_size;
    if (after < before) dropped++;
    else grown.push(after - before);
  }
  if (grown.length < options.measured / 2) throw new Error(`bench: ${workload.name}: a collection ran during ${dropped} of ${options.measured} runs; allocation per run cannot be read`);
  const sorted = grown.sort((a, b) => a - b);
  return {
    kept: sorted.length,
    dropped,
    p50KbPerRun: quantile(sorted, 0.5) / 1024,
    meanKbPerRun: sorted.reduce((sum, value) => sum + value, 0) / sorted.length / 1024,
  };
}

/** Throughput with `inFlight` runs started at once: an untimed warm-up round, then the median of `rounds`. */
export interface ThroughputSummary {
  inFlight: number;
  rounds: number;
  /** Runs per second per round: start of the round until every result is in and the workload has settled. */
  runsPerSecond: number[];
  /** Milliseconds per round until every result is in (before settling). */
  resultsMs: number[];
  /** Milliseconds per round spent settling (background work, store writes) after the results. */
  settleMs: number[];
  median: number;
}

export interface ThroughputPlan {
  inFlight: number;
  rounds: number;
  /** Runs in the untimed warm-up round. */
  warmup: number;
  /** A fresh workload for every round (a store that grows would make later rounds slower). */
  freshPerRound: boolean;
}

export async function measureThroughput(make: () => Workload, plan: ThroughputPlan, onRound?: (runsPerSecond: number) => void): Promise<ThroughputSummary> {
  const runsPerSecond: number[] = [];
  const resultsMs: number[] = [];
  const settleMs: number[] = [];
  let workload: Workload | undefined;
  let index = 0;
  try {
    for (let round = 0; round < plan.rounds; round++) {
      if (!workload || plan.freshPerRound) {
        await workload?.close();
        workload = make();
        index = 0;
        if (plan.warmup > 0) {
          await workload.runMany(plan.warmup, index);
          await workload.settle();
          index += plan.warmup;
        }
      }
      await forceGc();
      const start = nowMicros();
      await workload.runMany(plan.inFlight, index);
      const results = nowMicros();
      await workload.settle();
      const end = nowMicros();
      index += plan.inFlight;
      runsPerSecond.push(plan.inFlight / ((end - start) / 1e6));
      resultsMs.push((results - start) / 1e3);
      settleMs.push((end - results) / 1e3);
      onRound?.(runsPerSecond.at(-1)!);
    }
  } finally {
    await workload?.close();
  }
  return { inFlight: plan.inFlight, rounds: plan.rounds, runsPerSecond, resultsMs, settleMs, median: median(runsPerSecond) };
}

/** Full garbage collections with turns of the event loop between them, so finalizers and weak refs settle. */
export async function forceGc(times = 4): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('bench: run with node --expose-gc (npm run bench does)');
  for (let i = 0; i < times; i++) {
    gc();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await new Promise<void>((resolve) => setTimeout(resolve, 20));
  gc();
}

export interface HeapSummary {
  parked: number;
  /** Runs that were really waiting at the parking point when the heap was read. */
  held: number;
  heapBeforeBytes: number;
  heapAfterBytes: number;
  kbPerRun: number;
  parkMs: number;
  releaseMs: number;
}

/**
 * Heap per parked in-flight run: forced GC, heap used, park `count` runs, forced GC, heap used;
 * the difference over `count`. The runs are then released and checked.
 */
export async function measureParkedHeap(workload: Workload, options: { count: number; startIndex: number }): Promise<HeapSummary> {
  await workload.settle();
  await forceGc();
  const heapBeforeBytes = process.memoryUsage().heapUsed;
  const start = nowMicros();
  const parked = await workload.park(options.count, options.startIndex);
  const parkMs = (nowMicros() - start) / 1e3;
  await forceGc();
  const heapAfterBytes = process.memoryUsage().heapUsed;
  const held = parked.inFlight();
  if (held !== options.count) throw new Error(`bench: ${workload.name}: only ${held} of ${options.count} parked runs are in flight after GC`);
  const released = nowMicros();
  await parked.release();
  const releaseMs = (nowMicros() - released) / 1e3;
  await workload.settle();
  return {
    parked: options.count,
    held,
    heapBeforeBytes,
    heapAfterBytes,
    kbPerRun: (heapAfterBytes - heapBeforeBytes) / options.count / 1024,
    parkMs,
    releaseMs,
  };
}

/** Waits (polling between event-loop turns) until `condition` holds; throws after `timeoutMs`. */
export async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 2));
  }
}

/** Median wall time of `times` calls of a synchronous function, in ms. */
export function timeSync<T>(times: number, body: () => T): { runsMs: number[]; medianMs: number; last: T } {
  const runsMs: number[] = [];
  let last!: T;
  for (let i = 0; i < times; i++) {
    const start = nowMicros();
    last = body();
    runsMs.push((nowMicros() - start) / 1e3);
  }
  return { runsMs, medianMs: median(runsMs), last };
}

/** What the results file says about the machine. */
export function machineInfo() {
  const list = cpus();
  return {
    node: process.version,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
    cpus: list.length,
    cpuModel: list[0]?.model ?? 'unknown',
    cpuSpeedMHz: list[0]?.speed ?? 0,
    totalMemoryMB: Math.round(totalmem() / 1024 / 1024),
  };
}
