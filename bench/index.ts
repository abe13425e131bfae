// `npm run bench`: runchart against two baselines on the one-hop run; prints a markdown table, writes bench/results.json.
import { writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkPolicyCoverage } from '../src/index.js';
import { asyncLoopWorkload, plainXStateWorkload } from './baselines.js';
import {
  forceGc,
  machineInfo,
  measureAllocation,
  measureLatency,
  measureParkedHeap,
  measureThroughput,
  nowMicros,
  progress,
  timeSync,
  type AllocationSummary,
  type HeapSummary,
  type LatencySummary,
  type ThroughputSummary,
  type Workload,
} from './measure.js';
import { runchartWorkload } from './workloads.js';

/**
 * Node and V8 flags the bench runs under besides `--expose-gc` (e.g. `--no-allocation-site-pretenuring`),
 * and NODE_OPTIONS: named in the table, and the results go to a file of their own, so
 * `results.json` is always the default configuration a user gets.
 */
const v8Flags = [...process.execArgv.filter((flag) => flag !== '--expose-gc'), ...(process.env.NODE_OPTIONS ? [`NODE_OPTIONS=${process.env.NODE_OPTIONS}`] : [])];
const resultsName = v8Flags.length ? `results${v8Flags.map((flag) => `-${flag.replace(/^-+/, '').replace(/[^a-z0-9-]/gi, '_')}`).join('')}.json` : 'results.json';

/** BENCH_SCALE shrinks every count (e.g. 0.1 for a smoke run); the goals are judged on the full run only. */
const scale = Math.min(1, Math.max(0.01, Number(process.env.BENCH_SCALE ?? '1') || 1));
const scaled = (count: number, least = 1) => Math.max(least, Math.round(count * scale));

/** How much each figure measures; the file store gets fewer parked runs (each leaves files behind). */
const protocol = {
  scale,
  latency: { warmup: scaled(500), measured: scaled(3_000, 10) },
  latencyLowdb: { warmup: scaled(200), measured: scaled(2_000, 10) },
  /** Run right after the latency runs, in the same (warm) workload. */
  allocation: { measured: scaled(2_000, 10) },
  allocationLowdb: { measured: scaled(1_000, 10) },
  throughput: { inFlight: scaled(1_000, 10), rounds: 5, warmup: scaled(1_000, 10), freshPerRound: false },
  throughputLowdb: { inFlight: scaled(1_000, 10), rounds: 3, warmup: scaled(50), freshPerRound: true },
  heap: { parked: scaled(10_000, 10), warmup: scaled(200) },
  heapLowdb: { parked: scaled(1_000, 10), warmup: scaled(20) },
  coverage: { maxToolHops: 3, warmup: 1, runs: 5 },
};

type Column = 'memory' | 'lowdb' | 'loop' | 'xstate';
const columns: { key: Column; title: string; make: () => Workload }[] = [
  { key: 'loop', title: 'async loop', make: asyncLoopWorkload },
  { key: 'xstate', title: 'plain XState', make: plainXStateWorkload },
  { key: 'memory', title: 'runchart in-memory', make: () => runchartWorkload('memory') },
  { key: 'lowdb', title: 'runchart lowdb', make: () => runchartWorkload('lowdb') },
];

interface Figures {
  latency: LatencySummary;
  allocation: AllocationSummary;
  throughput: ThroughputSummary;
  heap: HeapSummary;
}

/** One workload instance per figure, closed afterwards, so no figure inherits another's garbage or store. */
async function withWorkload<T>(make: () => Workload, body: (workload: Workload) => Promise<T>): Promise<T> {
  const workload = make();
  try {
    return await body(workload);
  } finally {
    await workload.close();
    await forceGc();
  }
}

async function measureColumn(column: (typeof columns)[number]): Promise<Figures> {
  const lowdb = column.key === 'lowdb';
  const latencyPlan = lowdb ? protocol.latencyLowdb : protocol.latency;
  const allocationPlan = lowdb ? protocol.allocationLowdb : protocol.allocation;
  const throughputPlan = lowdb ? protocol.throughputLowdb : protocol.throughput;
  const heapPlan = lowdb ? protocol.heapLowdb : protocol.heap;

  progress(`${column.title}: sequential latency, ${latencyPlan.warmup} warm-up + ${latencyPlan.measured} measured runs`);
  let started = nowMicros();
  const { latency, allocation } = await withWorkload(column.make, async (workload) => {
    const latency = await measureLatency(workload, { ...latencyPlan, startIndex: 0 });
    progress(`${column.title}: p50 ${format(latency.p50)} µs, p99 ${format(latency.p99)} µs (${seconds(started)}); allocation, ${allocationPlan.measured} more runs`);
    return { latency, allocation: await measureAllocation(workload, { ...allocationPlan, startIndex: latencyPlan.warmup + latencyPlan.measured }) };
  });
  progress(`${column.title}: ${format(allocation.meanKbPerRun)} KB allocated per run (mean of ${allocation.kept}; ${allocation.dropped} runs with a collection dropped)`);

  progress(
    `${column.title}: throughput, ${throughputPlan.inFlight} in flight, ${throughputPlan.rounds} rounds after ${throughputPlan.warmup} warm-up runs${throughputPlan.freshPerRound ? ', a fresh store per round' : ''}`,
  );
  started = nowMicros();
  const throughput = await measureThroughput(column.make, throughputPlan, (runsPerSecond) => progress(`${column.title}:   round: ${Math.round(runsPerSecond)} runs/s`));
  await forceGc();
  progress(`${column.title}: ${throughput.runsPerSecond.map((value) => Math.round(value)).join(', ')} runs/s (${seconds(started)})`);

  progress(`${column.title}: heap with ${heapPlan.parked} parked runs (after ${heapPlan.warmup} warm-up runs)`);
  started = nowMicros();
  const heap = await withWorkload(column.make, async (workload) => {
    for (let index = 0; index < heapPlan.warmup; index++) await workload.run(1_000_000 + index);
    return measureParkedHeap(workload, { count: heapPlan.parked, startIndex: 0 });
  });
  progress(`${column.title}: ${heap.kbPerRun.toFixed(2)} KB per parked run, ${heap.held} held; parked in ${Math.round(heap.parkMs)} ms (${seconds(started)})`);
  return { latency, allocation, throughput, heap };
}

function seconds(startMicros: number): string {
  return `${((nowMicros() - startMicros) / 1e6).toFixed(1)} s`;
}

function format(value: number): string {
  if (!Number.isFinite(value)) return '—';
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

const ratio = (numerator: number, denominator: number) => numerator / denominator;
const formatRatio = (value: number) => (Number.isFinite(value) ? `${value.toFixed(value >= 10 ? 1 : 2)}×` : '—');

async function main() {
  const began = nowMicros();
  const machine = machineInfo();
  progress(`node ${machine.node}, ${machine.cpus} × ${machine.cpuModel}; scale ${scale}`);

  const figures = {} as Record<Column, Figures>;
  for (const column of columns) figures[column.key] = await measureColumn(column);

  progress(`paths + coverage check at max_tool_hops ${protocol.coverage.maxToolHops}, ${protocol.coverage.warmup} warm-up + ${protocol.coverage.runs} runs`);
  timeSync(protocol.coverage.warmup, () => checkPolicyCoverage({ maxToolHops: protocol.coverage.maxToolHops }));
  const coverageTiming = timeSync(protocol.coverage.runs, () => checkPolicyCoverage({ maxToolHops: protocol.coverage.maxToolHops }));
  const report = coverageTiming.last;
  if (!report.ok || report.paths === 0) {
    throw new Error(`bench: checkPolicyCoverage reported ${report.violations.length} violations over ${report.paths} paths; the chart must pass its own check`);
  }
  const coverage = { maxToolHops: protocol.coverage.maxToolHops, paths: report.paths, ok: report.ok, runsMs: coverageTiming.runsMs, medianMs: coverageTiming.medianMs };
  progress(`coverage: ${report.paths} paths, ok, median ${coverage.medianMs.toFixed(1)} ms`);

  const { memory, lowdb, loop, xstate } = figures;
  const ratios = {
    p50: { memoryOverXState: ratio(memory.latency.p50, xstate.latency.p50), memoryOverLoop: ratio(memory.latency.p50, loop.latency.p50), lowdbOverMemory: ratio(lowdb.latency.p50, memory.latency.p50) },
    p99: { memoryOverXState: ratio(memory.latency.p99, xstate.latency.p99), memoryOverLoop: ratio(memory.latency.p99, loop.latency.p99), lowdbOverMemory: ratio(lowdb.latency.p99, memory.latency.p99) },
    throughput: {
      memoryOverXState: ratio(memory.throughput.median, xstate.throughput.median),
      memoryOverLoop: ratio(memory.throughput.median, loop.throughput.median),
      lowdbOverMemory: ratio(lowdb.throughput.median, memory.throughput.median),
    },
    allocation: {
      memoryOverXState: ratio(memory.allocation.meanKbPerRun, xstate.allocation.meanKbPerRun),
      memoryOverLoop: ratio(memory.allocation.meanKbPerRun, loop.allocation.meanKbPerRun),
      lowdbOverMemory: ratio(lowdb.allocation.meanKbPerRun, memory.allocation.meanKbPerRun),
    },
    heap: { memoryOverXState: ratio(memory.heap.kbPerRun, xstate.heap.kbPerRun), memoryOverLoop: ratio(memory.heap.kbPerRun, loop.heap.kbPerRun), lowdbOverMemory: ratio(lowdb.heap.kbPerRun, memory.heap.kbPerRun) },
  };

  const goals = [
    { goal: 'p50 ≤ 0.5× plain XState (in-memory)', value: formatRatio(ratios.p50.memoryOverXState), pass: ratios.p50.memoryOverXState <= 0.5 },
    { goal: 'throughput ≥ 2× plain XState (in-memory)', value: formatRatio(ratios.throughput.memoryOverXState), pass: ratios.throughput.memoryOverXState >= 2 },
    { goal: 'heap per parked run ≤ 1.0× plain XState (in-memory)', value: formatRatio(ratios.heap.memoryOverXState), pass: ratios.heap.memoryOverXState <= 1 },
    {
      goal: '10,000 parked runs held (in-memory)',
      value: `${memory.heap.held.toLocaleString('en-US')} / ${memory.heap.parked.toLocaleString('en-US')}`,
      pass: memory.heap.held === 10_000 && memory.heap.parked === 10_000,
    },
    { goal: 'paths + check < 1 s (max_tool_hops 3)', value: `${format(coverage.medianMs)} ms`, pass: coverage.medianMs < 1_000 },
    { goal: 'lowdb p50 ≤ 3× in-memory p50', value: formatRatio(ratios.p50.lowdbOverMemory), pass: ratios.p50.lowdbOverMemory <= 3 },
  ];

  const parkedCell = (heap: HeapSummary) => `${heap.held.toLocaleString('en-US')} / ${heap.parked.toLocaleString('en-US')}`;
  const rows: string[][] = [
    ['p50 latency, sequential (µs)', ...[memory, lowdb, loop, xstate].map((f) => format(f.latency.p50)), formatRatio(ratios.p50.memoryOverXState), formatRatio(ratios.p50.memoryOverLoop), formatRatio(ratios.p50.lowdbOverMemory)],
    ['p99 latency, sequential (µs)', ...[memory, lowdb, loop, xstate].map((f) => format(f.latency.p99)), formatRatio(ratios.p99.memoryOverXState), formatRatio(ratios.p99.memoryOverLoop), formatRatio(ratios.p99.lowdbOverMemory)],
    [
      'JS heap allocated per run, garbage included (KB)',
      ...[memory, lowdb, loop, xstate].map((f) => format(f.allocation.meanKbPerRun)),
      formatRatio(ratios.allocation.memoryOverXState),
      formatRatio(ratios.allocation.memoryOverLoop),
      formatRatio(ratios.allocation.lowdbOverMemory),
    ],
    [
      `throughput, ${protocol.throughput.inFlight.toLocaleString('en-US')} in flight (runs/s)`,
      ...[memory, lowdb, loop, xstate].map((f) => format(f.throughput.median)),
      formatRatio(ratios.throughput.memoryOverXState),
      formatRatio(ratios.throughput.memoryOverLoop),
      formatRatio(ratios.throughput.lowdbOverMemory),
    ],
    [
      `heap per parked in-flight run (KB)`,
      ...[memory, lowdb, loop, xstate].map((f) => format(f.heap.kbPerRun)),
      formatRatio(ratios.heap.memoryOverXState),
      formatRatio(ratios.heap.memoryOverLoop),
      formatRatio(ratios.heap.lowdbOverMemory),
    ],
    ['parked runs held in flight', ...[memory, lowdb, loop, xstate].map((f) => parkedCell(f.heap)), '', '', ''],
    [`paths + coverage check, max_tool_hops 3 (ms, ${coverage.paths.toLocaleString('en-US')} paths)`, format(coverage.medianMs), '—', '—', '—', '', '', ''],
  ];
  const header = ['figure', 'runchart in-memory', 'runchart lowdb', 'async loop', 'plain XState', 'in-memory / plain XState', 'in-memory / async loop', 'lowdb / in-memory'];
  const table = [header, header.map((_, index) => (index === 0 ? '---' : '---:')), ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
  const goalTable = [
    '| goal | measured | |',
    '| --- | ---: | :---: |',
    ...goals.map((goal) => `| ${goal.goal} | ${goal.value} | ${goal.pass ? '✓' : '✗'} |`),
  ].join('\n');

  const notes = [
    `One-hop run: an instant fake model asks for \`math_add\` {a:2,b:3}, then answers "2 + 3 = 5"; \`math.add\` from \`defineCapability\`; rules policy; the default telemetry (OTel spans to the global tracer; no SDK registered, so a no-op tracer); structured events off; a fresh request (own tenant) per run.`,
    `Every run is checked: status completed, output "2 + 3 = 5", one tool execution (handler calls counted), two model calls.`,
    `Sequential latency: ${protocol.latency.warmup} warm-up + ${protocol.latency.measured} measured runs; lowdb ${protocol.latencyLowdb.warmup} + ${protocol.latencyLowdb.measured}, in a fresh store that grows as it runs (lowdb p50 of the first tenth ${format(lowdb.latency.firstTenthP50)} µs, of the last tenth ${format(lowdb.latency.lastTenthP50)} µs).`,
    `Allocation: V8's used heap before and after each of ${protocol.allocation.measured.toLocaleString('en-US')} more sequential runs (lowdb ${protocol.allocationLowdb.measured.toLocaleString('en-US')}) after the latency runs, the mean over the runs during which no collection ran (about one in fifty: heavier runs are a little likelier to be dropped, so the figure leans low); what the garbage collector has to clear per run. Buffer contents (the bytes of a file append) live outside the JS heap and are not counted. By layer, sampled by V8 with collected objects included: \`npm run bench:alloc\`.`,
    `Throughput: ${protocol.throughput.inFlight.toLocaleString('en-US')} runs started at once, timed until every result is in and background work and store writes are drained; median of ${protocol.throughput.rounds} rounds after a warm-up round (lowdb: ${protocol.throughputLowdb.rounds} rounds, each in a fresh store after ${protocol.throughputLowdb.warmup} warm-up runs).`,
    `Heap: forced GC before and after parking ${protocol.heap.parked.toLocaleString('en-US')} runs at their second model call (lowdb: only ${protocol.heapLowdb.parked.toLocaleString('en-US')}, each run leaving a memory file and lines behind), heapUsed difference / runs; then released and checked.`,
    `Baselines make the same calls as a runchart run: the same model and tool (JSON and zod parse of the arguments), the rules policy at precheck, tool, output and memory.write, in-memory recall, and the memory write-back started once the result is out (awaited before a throughput round ends, as runchart's background queue is drained); the async loop makes one AbortController per run; plain XState invokes one fresh fromPromise per step (9 per one-hop run).`,
  ];

  const output = [
    `## runchart benchmark — ${new Date().toISOString()}`,
    '',
    `node ${machine.node}${v8Flags.length ? ` ${v8Flags.join(' ')}` : ''} · ${machine.cpus} × ${machine.cpuModel} · ${machine.platform}/${machine.arch}${scale < 1 ? ` · **scale ${scale}: a smoke run, not a measurement**` : ''}`,
    '',
    table,
    '',
    goalTable,
    '',
    ...notes.map((note) => `- ${note}`),
    '',
  ].join('\n');
  process.stdout.write(`${output}\n`);

  const results = {
    timestamp: new Date().toISOString(),
    durationSeconds: (nowMicros() - began) / 1e6,
    machine,
    v8Flags,
    protocol,
    workloads: Object.fromEntries(columns.map((column) => [column.title, figures[column.key]])),
    coverage,
    ratios,
    goals: goals.map(({ goal, value, pass }) => ({ goal, value, pass })),
  };
  // Compiled, this file runs from bench/.build/bench/; the results belong beside the sources.
  const here = dirname(fileURLToPath(import.meta.url));
  const file = join(basename(dirname(here)) === '.build' ? join(here, '..', '..') : here, resultsName);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  progress(`wrote ${file}; ${((nowMicros() - began) / 1e6).toFixed(1)} s in all`);
}

main().catch((error: unknown) => {
  process.stderr.write(`\nbench: FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
