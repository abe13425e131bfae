// `npm run bench`: runchart against three baselines on the one-hop run, and the app-shaped workload block by block; prints markdown tables, writes bench/results.json.
import { writeFileSync } from 'node:fs';
import { checkPolicyCoverage } from '../src/index.js';
import { aiSdkWorkload } from './ai-sdk.js';
import { benchFile, measureApp, type Alternating, type AppBlock, type AppPeer } from './app.js';
import { asyncLoopWorkload, maxToolHops, plainXStateWorkload } from './baselines.js';
import { appPeople } from './catalog.js';
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
  /** One tenant, its users and sessions (a session always has one user), varied questions: sequential runs, measured per block. */
  app: {
    people: { principals: scaled(appPeople.principals), sessions: scaled(appPeople.principals) * (appPeople.sessions / appPeople.principals) },
    blocks: 10,
    runsPerBlock: scaled(10_000, 10),
    alternating: scaled(2_000, 10),
    /** The AI SDK on the same requests with the same history, after the blocks. */
    peer: { runs: scaled(2_000, 10), inFlight: scaled(1_000, 10), rounds: 5, parked: scaled(1_000, 10) },
  },
};

type Column = 'memory' | 'lowdb' | 'loop' | 'xstate' | 'aiSdk';
const columns: { key: Column; title: string; make: () => Workload }[] = [
  { key: 'loop', title: 'async loop', make: asyncLoopWorkload },
  { key: 'xstate', title: 'plain XState', make: plainXStateWorkload },
  { key: 'aiSdk', title: 'AI SDK', make: aiSdkWorkload },
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

  const app: Record<'memory' | 'lowdb', AppBlock[]> = { memory: [], lowdb: [] };
  const alternating = {} as Record<'memory' | 'lowdb', Alternating>;
  const appPeer = {} as Record<'memory' | 'lowdb', AppPeer>;
  for (const store of ['memory', 'lowdb'] as const) {
    const { people, blocks, runsPerBlock } = protocol.app;
    progress(`app workload, ${store === 'memory' ? 'in-memory' : 'file store'}: ${blocks} blocks of ${runsPerBlock.toLocaleString('en-US')} sequential runs, one tenant, ${people.principals} principals, ${people.sessions} sessions`);
    const measured = await measureApp(store, protocol.app, (block) =>
      progress(
        `  runs ${block.firstRun.toLocaleString('en-US')}–${(block.firstRun + block.runs - 1).toLocaleString('en-US')}: p50 ${format(block.p50)} µs, p99 ${format(block.p99)} µs, RSS ${format(block.rssMB)} MB, heap ${format(block.heapMB)} MB${block.diskMB === undefined ? '' : `, disk ${format(block.diskMB)} MB`} (${block.seconds.toFixed(1)} s)`,
      ),
    );
    app[store] = measured.blocks;
    alternating[store] = measured.alternating!;
    const check = measured.alternating!;
    progress(`  alternately with a new store, ${check.runs.toLocaleString('en-US')} runs each: p50 ${format(check.oldP50)} µs with ${check.history.toLocaleString('en-US')} runs of history, ${format(check.newP50)} µs new (${formatRatio(check.ratio)})`);
    const peer = (appPeer[store] = measured.peer!);
    progress(
      `  against the AI SDK with the same ${peer.history.toLocaleString('en-US')} runs of history: p50 ${format(peer.p50.runchart)} / ${format(peer.p50.aiSdk)} µs (${formatRatio(peer.p50.ratio)}), ` +
        `${format(peer.throughput.runchartMedian)} / ${format(peer.throughput.aiSdkMedian)} runs/s (${formatRatio(peer.throughput.ratio)}), ${format(peer.heap.runchart)} / ${format(peer.heap.aiSdk)} KB per parked run (${formatRatio(peer.heap.ratio)})`,
    );
    await forceGc();
  }

  const { memory, lowdb, loop, xstate, aiSdk } = figures;
  const against = (pick: (figures: Figures) => number) => ({
    memoryOverXState: ratio(pick(memory), pick(xstate)),
    memoryOverLoop: ratio(pick(memory), pick(loop)),
    memoryOverAiSdk: ratio(pick(memory), pick(aiSdk)),
    lowdbOverAiSdk: ratio(pick(lowdb), pick(aiSdk)),
    lowdbOverMemory: ratio(pick(lowdb), pick(memory)),
  });
  const ratios = {
    p50: against((f) => f.latency.p50),
    p99: against((f) => f.latency.p99),
    throughput: against((f) => f.throughput.median),
    allocation: against((f) => f.allocation.meanKbPerRun),
    heap: against((f) => f.heap.kbPerRun),
  };
  const flatness = (blocks: AppBlock[]) => ratio(blocks.at(-1)!.p50, blocks[0]!.p50);
  const appFigures = {
    memoryP50LastOverFirst: flatness(app.memory),
    lowdbP50LastOverFirst: flatness(app.lowdb),
    lowdbRssGrowthMB: app.lowdb.at(-1)!.rssMB - app.lowdb[0]!.rssMB,
  };

  const goals = [
    { goal: 'in-memory p50 ≤ 1.0× the AI SDK (fresh tenant)', value: formatRatio(ratios.p50.memoryOverAiSdk), pass: ratios.p50.memoryOverAiSdk <= 1 },
    { goal: 'in-memory throughput ≥ 1.0× the AI SDK', value: formatRatio(ratios.throughput.memoryOverAiSdk), pass: ratios.throughput.memoryOverAiSdk >= 1 },
    { goal: 'in-memory heap per parked run ≤ 1.0× the AI SDK', value: formatRatio(ratios.heap.memoryOverAiSdk), pass: ratios.heap.memoryOverAiSdk <= 1 },
    { goal: 'file store p50 ≤ 2.0× the AI SDK (fresh tenant)', value: formatRatio(ratios.p50.lowdbOverAiSdk), pass: ratios.p50.lowdbOverAiSdk <= 2 },
    { goal: `app workload, in-memory: p50 of block ${app.memory.length} / block 1 ≤ 1.25`, value: formatRatio(appFigures.memoryP50LastOverFirst), pass: appFigures.memoryP50LastOverFirst <= 1.25 },
    { goal: `app workload, file store: p50 of block ${app.lowdb.length} / block 1 ≤ 1.25`, value: formatRatio(appFigures.lowdbP50LastOverFirst), pass: appFigures.lowdbP50LastOverFirst <= 1.25 },
    {
      goal: `app workload, in-memory: p50 with ${alternating.memory.history.toLocaleString('en-US')} runs of history / a new store's, run by run alternately ≤ 1.25`,
      value: formatRatio(alternating.memory.ratio),
      pass: alternating.memory.ratio <= 1.25,
    },
    {
      goal: `app workload, file store: p50 with ${alternating.lowdb.history.toLocaleString('en-US')} runs of history / a new store's, run by run alternately ≤ 1.25`,
      value: formatRatio(alternating.lowdb.ratio),
      pass: alternating.lowdb.ratio <= 1.25,
    },
    { goal: 'app workload, in-memory: p50 ≤ 1.0× the AI SDK with the same history', value: formatRatio(appPeer.memory.p50.ratio), pass: appPeer.memory.p50.ratio <= 1 },
    { goal: 'app workload, in-memory: throughput ≥ 1.0× the AI SDK', value: formatRatio(appPeer.memory.throughput.ratio), pass: appPeer.memory.throughput.ratio >= 1 },
    { goal: 'app workload, in-memory: heap per parked run ≤ 1.0× the AI SDK', value: formatRatio(appPeer.memory.heap.ratio), pass: appPeer.memory.heap.ratio <= 1 },
    { goal: 'app workload, file store: p50 ≤ 2.0× the AI SDK with the same history', value: formatRatio(appPeer.lowdb.p50.ratio), pass: appPeer.lowdb.p50.ratio <= 2 },
    { goal: `app workload, file store: RSS after block ${app.lowdb.length} ≤ after block 1 + 64 MB`, value: `${appFigures.lowdbRssGrowthMB >= 0 ? '+' : ''}${format(appFigures.lowdbRssGrowthMB)} MB`, pass: appFigures.lowdbRssGrowthMB <= 64 },
    { goal: 'paths + check < 1 s (max_tool_hops 3)', value: `${format(coverage.medianMs)} ms`, pass: coverage.medianMs < 1_000 },
  ];

  const parkedCell = (heap: HeapSummary) => `${heap.held.toLocaleString('en-US')} / ${heap.parked.toLocaleString('en-US')}`;
  const order = [memory, lowdb, aiSdk, loop, xstate];
  const ratioCells = (of: ReturnType<typeof against>) => [of.memoryOverAiSdk, of.lowdbOverAiSdk, of.memoryOverXState, of.memoryOverLoop, of.lowdbOverMemory].map(formatRatio);
  const rows: string[][] = [
    ['p50 latency, sequential (µs)', ...order.map((f) => format(f.latency.p50)), ...ratioCells(ratios.p50)],
    ['p99 latency, sequential (µs)', ...order.map((f) => format(f.latency.p99)), ...ratioCells(ratios.p99)],
    ['JS heap allocated per run, garbage included (KB)', ...order.map((f) => format(f.allocation.meanKbPerRun)), ...ratioCells(ratios.allocation)],
    [`throughput, ${protocol.throughput.inFlight.toLocaleString('en-US')} in flight (runs/s)`, ...order.map((f) => format(f.throughput.median)), ...ratioCells(ratios.throughput)],
    [`heap per parked in-flight run (KB)`, ...order.map((f) => format(f.heap.kbPerRun)), ...ratioCells(ratios.heap)],
    ['parked runs held in flight', ...order.map((f) => parkedCell(f.heap)), '', '', '', '', ''],
    [`paths + coverage check, max_tool_hops 3 (ms, ${coverage.paths.toLocaleString('en-US')} paths)`, format(coverage.medianMs), '—', '—', '—', '—', '', '', '', '', ''],
  ];
  const header = ['figure', 'runchart in-memory', 'runchart lowdb', 'AI SDK', 'async loop', 'plain XState', 'in-memory / AI SDK', 'lowdb / AI SDK', 'in-memory / plain XState', 'in-memory / async loop', 'lowdb / in-memory'];
  const markdown = (cells: string[][]) => cells.map((row) => `| ${row.join(' | ')} |`).join('\n');
  const table = markdown([header, header.map((_, index) => (index === 0 ? '---' : '---:')), ...rows]);

  const appHeader = ['block', 'runs', 'in-memory p50 (µs)', 'p99 (µs)', 'RSS (MB)', 'JS heap (MB)', 'file store p50 (µs)', 'p99 (µs)', 'RSS (MB)', 'JS heap (MB)', 'on disk (MB)', 'of it memory (MB)'];
  const appRows = app.memory.map((block, index) => {
    const file = app.lowdb[index]!;
    return [
      String(index + 1),
      `${(block.firstRun + 1).toLocaleString('en-US')}–${(block.firstRun + block.runs).toLocaleString('en-US')}`,
      format(block.p50),
      format(block.p99),
      format(block.rssMB),
      format(block.heapMB),
      format(file.p50),
      format(file.p99),
      format(file.rssMB),
      format(file.heapMB),
      format(file.diskMB ?? Number.NaN),
      format(file.memoryDiskMB ?? Number.NaN),
    ];
  });
  const appTable = markdown([appHeader, appHeader.map((_, index) => (index < 2 ? '---' : '---:')), ...appRows]);
  const peerHeader = ['after the blocks, the same requests and history', 'runchart in-memory', 'AI SDK', 'ratio', 'runchart file store', 'AI SDK', 'ratio'];
  const peerRow = (figure: string, pick: (peer: AppPeer) => { runchart: number; aiSdk: number; ratio: number }) => [
    figure,
    ...(['memory', 'lowdb'] as const).flatMap((store) => {
      const { runchart, aiSdk, ratio } = pick(appPeer[store]);
      return [format(runchart), format(aiSdk), formatRatio(ratio)];
    }),
  ];
  const peerTable = markdown([
    peerHeader,
    peerHeader.map((_, index) => (index === 0 ? '---' : '---:')),
    peerRow(`p50 latency, run by run alternately (µs, ${protocol.app.peer.runs.toLocaleString('en-US')} runs each)`, (peer) => peer.p50),
    peerRow(`throughput, ${protocol.app.peer.inFlight.toLocaleString('en-US')} in flight (runs/s, median of ${protocol.app.peer.rounds} rounds each, alternately)`, (peer) => ({
      runchart: peer.throughput.runchartMedian,
      aiSdk: peer.throughput.aiSdkMedian,
      ratio: peer.throughput.ratio,
    })),
    peerRow(`heap per parked in-flight run (KB, ${protocol.app.peer.parked.toLocaleString('en-US')} parked)`, (peer) => peer.heap),
  ]);
  const goalTable = markdown([['goal', 'measured', ''], ['---', '---:', ':---:'], ...goals.map((goal) => [goal.goal, goal.value, goal.pass ? '✓' : '✗'])]);

  const notes = [
    `One-hop run: an instant fake model asks for \`math_add\` {a:2,b:3}, then answers "2 + 3 = 5"; \`math.add\` from \`defineCapability\`; rules policy; the default telemetry (OTel spans to the global tracer; no SDK registered, so a no-op tracer); structured events off; a fresh request (own tenant) per run.`,
    `Every run is checked: status completed, output "2 + 3 = 5", one tool execution (handler calls counted), two model calls.`,
    `Sequential latency: ${protocol.latency.warmup} warm-up + ${protocol.latency.measured} measured runs; lowdb ${protocol.latencyLowdb.warmup} + ${protocol.latencyLowdb.measured}, in a fresh store that grows as it runs (lowdb p50 of the first tenth ${format(lowdb.latency.firstTenthP50)} µs, of the last tenth ${format(lowdb.latency.lastTenthP50)} µs).`,
    `Allocation: V8's used heap before and after each of ${protocol.allocation.measured.toLocaleString('en-US')} more sequential runs (lowdb ${protocol.allocationLowdb.measured.toLocaleString('en-US')}) after the latency runs, the mean over the runs during which no collection ran (about one in fifty: heavier runs are a little likelier to be dropped, so the figure leans low); what the garbage collector has to clear per run. Buffer contents (the bytes of a file append) live outside the JS heap and are not counted. By layer, sampled by V8 with collected objects included: \`npm run bench:alloc\`.`,
    `Throughput: ${protocol.throughput.inFlight.toLocaleString('en-US')} runs started at once, timed until every result is in and background work and store writes are drained; median of ${protocol.throughput.rounds} rounds after a warm-up round (lowdb: ${protocol.throughputLowdb.rounds} rounds, each in a fresh store after ${protocol.throughputLowdb.warmup} warm-up runs).`,
    `Heap: forced GC before and after parking ${protocol.heap.parked.toLocaleString('en-US')} runs at their second model call (lowdb: only ${protocol.heapLowdb.parked.toLocaleString('en-US')}, each run leaving a memory file and lines behind), heapUsed difference / runs; then released and checked.`,
    `Baselines make the same calls as a runchart run: the same model decisions and tool (the arguments JSON- and zod-parsed), the rules policy at precheck, tool, output and memory.write, in-memory recall, and the memory write-back started once the result is out (awaited before a throughput round ends, as runchart's background queue is drained); the async loop makes one AbortController per run; plain XState invokes one fresh fromPromise per step (9 per one-hop run); the AI SDK (ai@6) runs \`generateText\` with its \`MockLanguageModelV3\`, one \`tool()\` whose \`execute\` takes the tool-stage decision and calls the handler, and \`stopWhen: stepCountIs(${maxToolHops + 1})\`, the policy and memory calls around it.`,
    `App workload: one tenant, ${protocol.app.people.principals} principals (\`u<i % ${protocol.app.people.principals}>\`), ${protocol.app.people.sessions} sessions (\`s<i % ${protocol.app.people.sessions}>\`), the input drawn from the ${'`bench/questions.txt`'} list by a fixed scramble of the run number; ${protocol.app.blocks} blocks of ${protocol.app.runsPerBlock.toLocaleString('en-US')} sequential runs in one runtime and store; RSS and JS heap after a forced GC at the end of each block; on disk: every file of the store directory. Each run is checked as above, and once its session has had two turns, the history in its prompt must be the session's turns in order. Then, alternately run by run, ${protocol.app.alternating.toLocaleString('en-US')} more runs of the old store and the last ${protocol.app.alternating.toLocaleString('en-US')} of a new store's first block (in-memory: ${format(alternating.memory.oldP50)} against ${format(alternating.memory.newP50)} µs; file store: ${format(alternating.lowdb.oldP50)} against ${format(alternating.lowdb.newP50)} µs): the machine's noise falls on both alike, where blocks minutes apart can meet different loads. Share of runs shown recalled items, block 1 / last: in-memory ${format(100 * app.memory[0]!.recalledShare)}% / ${format(100 * app.memory.at(-1)!.recalledShare)}%, file store ${format(100 * app.lowdb[0]!.recalledShare)}% / ${format(100 * app.lowdb.at(-1)!.recalledShare)}%.`,
    `Against the AI SDK on the app workload: after the blocks and that check, the AI SDK baseline is given the same requests and the same history (its in-memory memory is first given every turn the store remembered, under the same user and session, so its recall ranks as many items and its prompt carries the session's turns, checked as runchart's is); then, with the store's runtime, p50 over ${protocol.app.peer.runs.toLocaleString('en-US')} runs each run by run alternately (the order flipped every pair, each side's background work and store writes settled after its run, untimed), ${protocol.app.peer.rounds} rounds each of ${protocol.app.peer.inFlight.toLocaleString('en-US')} runs at once alternately after a warm-up round (timed until drained, as above), and heap per parked run over ${protocol.app.peer.parked.toLocaleString('en-US')} runs each.`,
  ];

  const output = [
    `## runchart benchmark — ${new Date().toISOString()}`,
    '',
    `node ${machine.node}${v8Flags.length ? ` ${v8Flags.join(' ')}` : ''} · ${machine.cpus} × ${machine.cpuModel} · ${machine.platform}/${machine.arch}${scale < 1 ? ` · **scale ${scale}: a smoke run, not a measurement**` : ''}`,
    '',
    '### Fresh tenant per run',
    '',
    table,
    '',
    '### App workload (one tenant, per block of sequential runs)',
    '',
    appTable,
    '',
    peerTable,
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
    app,
    alternating,
    appPeer,
    coverage,
    ratios,
    appFigures,
    goals: goals.map(({ goal, value, pass }) => ({ goal, value, pass })),
  };
  // Compiled, this file runs from bench/.build/bench/; the results belong beside the sources.
  const file = benchFile(resultsName);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  progress(`wrote ${file}; ${((nowMicros() - began) / 1e6).toFixed(1)} s in all`);
}

main().catch((error: unknown) => {
  process.stderr.write(`\nbench: FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
