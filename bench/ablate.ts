// What one layer costs a run: the one-hop run with that layer swapped for one that answers at once.
// `npm run bench:ablate -- [none|gateway|background|memory|policy|telemetry] [runs]`; compare with `none`
// in the same sitting (the machine is shared: expect ±10 µs between runs of one variant).
import { createRuntime, type BackgroundQueue, type MemoryLayer, type RuntimeOptions, type TelemetryLayer } from '../src/index.js';
import { commandLine, progress, quantile } from './measure.js';
import { benchRules, checkOutcome, instantModel, mathAdd, newStats, outcomeOf, requestFor, type FakeStats } from './workloads.js';

const instant: Record<string, (stats: FakeStats) => Partial<RuntimeOptions>> = {
  none: () => ({}),
  gateway: (stats) => ({
    gateway: {
      execute: async () => {
        stats.toolCalls++;
        return { status: 'ok' as const, output: 5 };
      },
    },
  }),
  background: () => ({ background: { enqueue: async () => {}, drain: async () => {} } satisfies BackgroundQueue }),
  memory: () => ({ memory: { recall: async () => ({ items: [], history: [] }), remember: async () => {} } satisfies MemoryLayer }),
  policy: () => ({ policy: { evaluate: async () => ({ verdict: 'allow' as const, ruleId: 'allow', reason: 'allowed' }) } }),
  telemetry: () => ({ telemetry: { startRun: () => ({ record() {}, end() {} }) } satisfies TelemetryLayer }),
};

const variant = process.argv[2] ?? 'none';
const {
  chosen: swap,
  counts: [runs = 5000],
} = commandLine('ablate.ts', { runs: 5000 }, { options: instant, fallback: 'none' });
const stats = newStats();
const runtime = createRuntime({
  model: instantModel(stats),
  capabilities: [mathAdd(stats)],
  config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules: structuredClone(benchRules) } },
  ...swap(stats),
});
const warmup = Math.min(1_000, runs);
const samples: number[] = [];
for (let index = 0; index < warmup + runs; index++) {
  const started = performance.now();
  const result = await runtime.run(requestFor(index));
  const elapsed = (performance.now() - started) * 1000;
  checkOutcome(`ablate ${variant}`, index, outcomeOf(result));
  if (index >= warmup) samples.push(elapsed);
}
samples.sort((a, b) => a - b);
progress(`instant ${variant}: ${runs} sequential runs, p50 ${quantile(samples, 0.5).toFixed(1)} µs, p90 ${quantile(samples, 0.9).toFixed(1)} µs`);
await runtime.drain();
await runtime.close();
