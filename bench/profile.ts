// A workload alone, for profiling or for two builds side by side: `npx tsc -p bench/tsconfig.json`, then `node --cpu-prof --cpu-prof-dir=bench/profiles bench/.build/bench/profile.js [memory|lowdb|app-memory|app-lowdb|loop|xstate|ai-sdk] [runs]`.
import { workloadsByName as kinds } from './catalog.js';
import { commandLine, measureLatency, progress, quantile } from './measure.js';

const {
  chosen: make,
  counts: [runs = 3000],
} = commandLine('profile.ts', { runs: 3000 }, { options: kinds, fallback: 'memory' });
const workload = make();
try {
  const latency = await measureLatency(workload, { warmup: Math.min(500, runs), measured: runs, startIndex: 0 });
  const sorted = [...latency.samples].sort((a, b) => a - b);
  const over2ms = sorted.filter((sample) => sample > 2_000).length;
  progress(
    `${workload.name}: ${runs} sequential runs, p50 ${latency.p50.toFixed(1)} µs, p95 ${quantile(sorted, 0.95).toFixed(0)} µs, p99 ${latency.p99.toFixed(1)} µs, slowest ${latency.max.toFixed(0)} µs, mean ${latency.mean.toFixed(1)} µs, ${over2ms} over 2 ms`,
  );
} finally {
  await workload.close();
}
