// What a run allocates, garbage included, by layer: `npm run bench:alloc -- [memory|lowdb|xstate|loop] [runs]`
// (with V8 flags: `npx tsc -p bench/tsconfig.json && node --expose-gc <flags> bench/.build/bench/allocations.js …`).
// V8's sampling heap profiler (through the inspector) with collected objects kept in the profile,
// so what is counted is what the garbage collector has to clear, not what survives.
import { Session } from 'node:inspector/promises';
import { getHeapSpaceStatistics } from 'node:v8';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { workloadsByName as kinds } from './catalog.js';
import { isXState, layerOf, xstateLayer } from './layers.js';
import { commandLine, progress, type Workload } from './measure.js';

interface SamplingNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: SamplingNode[];
}

const {
  chosen: make,
  counts: [runs = 2000, rows = 25],
} = commandLine('allocations.ts', { runs: 2000, rows: 25 }, { options: kinds, fallback: 'memory' });

const short = (url: string) => url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '~/').replace(/^.*\/\.build\//, '');

/**
 * The layer a sample is charged to: walking from the allocating frame towards the root, the first
 * frame in XState or in project code decides. A built-in (`new Set`, `Object.assign`) or a library
 * (zod, the OTel API) counts for whoever called it.
 */
function charge(stack: readonly SamplingNode[]): string {
  for (let at = stack.length - 1; at >= 0; at--) {
    const url = stack[at]!.callFrame.url;
    if (isXState(url)) return xstateLayer;
    const layer = layerOf(url);
    if (layer) return layer;
  }
  return 'outside any run';
}

/**
 * What of finished runs is still alive at the next scavenge (and so is copied, and promoted):
 * young-generation use after a minor collection, before and after 40 runs, three times.
 * Everything it counts is garbage a full collection frees; what keeps it alive through a
 * scavenge is an old object pointing at it, live or already dead.
 */
async function youngSurvivors(workload: Workload, firstIndex: number) {
  const collect = (globalThis as { gc?: (options: { type: 'minor' }) => void }).gc;
  if (!collect) return void process.stdout.write('(run with --expose-gc, as npm run bench:alloc does, to see what outlives a scavenge)\n');
  const young = () => getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')!.space_used_size;
  const perRun: string[] = [];
  let index = firstIndex;
  for (let round = 0; round < 3; round++) {
    collect({ type: 'minor' });
    collect({ type: 'minor' });
    const before = young();
    for (let run = 0; run < 40; run++) await workload.run(index++);
    collect({ type: 'minor' });
    perRun.push(((young() - before) / 40 / 1024).toFixed(1));
  }
  process.stdout.write(`alive at the next scavenge, per finished run: ${perRun.join(', ')} KB (three rounds of 40 runs)\n`);
}

/** Garbage collection while `runs` runs go one after another, unprofiled: what the allocations cost. */
async function timeCollections(workload: Workload, firstIndex: number) {
  const pauses = { minor: [] as number[], major: [] as number[] };
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as { detail?: { kind?: number } }).detail?.kind;
      (kind === constants.NODE_PERFORMANCE_GC_MINOR ? pauses.minor : pauses.major).push(entry.duration);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  for (let index = 0; index < runs; index++) await workload.run(firstIndex + index);
  await workload.settle();
  await new Promise((resolve) => setTimeout(resolve, 20)); // the observer hears of the last collections on a later turn
  observer.disconnect();
  const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
  const mean = (values: number[]) => (values.length ? sum(values) / values.length : 0);
  process.stdout.write(
    `garbage collection over ${runs} unprofiled runs: ${pauses.minor.length} scavenges (${mean(pauses.minor).toFixed(2)} ms each), ${pauses.major.length} other collections (${mean(pauses.major).toFixed(2)} ms each): ${(((sum(pauses.minor) + sum(pauses.major)) * 1000) / runs).toFixed(1)} µs per run\n`,
  );
}

const workload = make();
try {
  for (let index = 0; index < Math.min(1_000, runs); index++) await workload.run(index);
  await workload.settle();
  await timeCollections(workload, 2_000_000);
  await youngSurvivors(workload, 3_000_000);
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  await session.post('HeapProfiler.startSampling', { samplingInterval: 512, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  for (let index = 0; index < runs; index++) await workload.run(1_000_000 + index);
  await workload.settle();
  const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: SamplingNode } };
  session.disconnect();

  const byLayer = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  const walk = (node: SamplingNode, stack: SamplingNode[]) => {
    stack.push(node);
    if (node.selfSize > 0) {
      total += node.selfSize;
      const layer = charge(stack);
      byLayer.set(layer, (byLayer.get(layer) ?? 0) + node.selfSize);
      // A built-in is named with the nearest frame that has a script: `Set <- enterStates ~/xstate/…`.
      const frame = node.callFrame;
      const owner = frame.url ? undefined : [...stack].reverse().find((entry) => entry.callFrame.url);
      const name = frame.url
        ? `${frame.functionName || '(anonymous)'}  ${short(frame.url)}:${frame.lineNumber + 1}`
        : `${frame.functionName || '(native)'} <- ${owner ? `${owner.callFrame.functionName || '(anonymous)'}  ${short(owner.callFrame.url)}:${owner.callFrame.lineNumber + 1}` : '(root)'}`;
      byFunction.set(name, (byFunction.get(name) ?? 0) + node.selfSize);
    }
    for (const child of node.children) walk(child, stack);
    stack.pop();
  };
  walk(profile.head, []);

  const kb = (bytes: number) => (bytes / 1024 / runs).toFixed(1).padStart(7);
  const share = (bytes: number) => `${((bytes / total) * 100).toFixed(1).padStart(5)}%`;
  process.stdout.write(`${workload.name}: ${runs} sequential runs, ${(total / 1024 / runs).toFixed(1)} KB allocated per run (sampled every 512 bytes, collected objects included)\n`);
  process.stdout.write('\nallocated by layer (a built-in or library counts for the layer that called it), KB per run\n');
  for (const [layer, bytes] of [...byLayer].sort((a, b) => b[1] - a[1])) process.stdout.write(`${kb(bytes)}  ${share(bytes)}  ${layer}\n`);
  process.stdout.write(`\ntop ${rows} allocating functions, KB per run\n`);
  for (const [name, bytes] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, rows)) process.stdout.write(`${kb(bytes)}  ${share(bytes)}  ${name}\n`);
} finally {
  await workload.close();
}
progress('done');
