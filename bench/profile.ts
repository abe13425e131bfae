// A workload alone, for profiling: `npx tsc -p bench/tsconfig.json`, then `node --cpu-prof --cpu-prof-dir=bench/profiles bench/.build/bench/profile.js [memory|lowdb|loop|xstate] [runs]`.
import { asyncLoopWorkload, plainXStateWorkload } from './baselines.js';
import { measureLatency, progress, type Workload } from './measure.js';
import { runchartWorkload } from './workloads.js';

const kinds: Record<string, () => Workload> = {
  memory: () => runchartWorkload('memory'),
  lowdb: () => runchartWorkload('lowdb'),
  loop: asyncLoopWorkload,
  xstate: plainXStateWorkload,
};

const kind = process.argv[2] ?? 'memory';
const runs = Number(process.argv[3] ?? '3000');
const make = kinds[kind];
if (!make || !Number.isInteger(runs) || runs < 1) {
  process.stderr.write(`usage: bench/profile.ts [${Object.keys(kinds).join('|')}] [runs]\n`);
  process.exit(2);
}
const workload = make();
try {
  const latency = await measureLatency(workload, { warmup: Math.min(500, runs), measured: runs, startIndex: 0 });
  progress(`${workload.name}: ${runs} sequential runs, p50 ${latency.p50.toFixed(1)} µs, p99 ${latency.p99.toFixed(1)} µs, mean ${latency.mean.toFixed(1)} µs`);
} finally {
  await workload.close();
}
