// Two builds of the project in one process, run for run alternately, so that a busy neighbour's
// noise falls on both alike: `npm run bench:side-by-side -- <build A> <build B> [workload] [runs] [in flight]`;
// with `in flight`, each round starts that many runs at once and runs/s per round is compared instead.
// A build is a copy of bench/.build kept under bench/.builds/ (see bench/README.md, "Side by side").
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { progress, quantile, type Workload } from './measure.js';

const [first, second, workloadName = 'memory', runsText = '3000', inFlightText] = process.argv.slice(2);
const runs = Number(runsText);
const inFlight = inFlightText === undefined ? undefined : Number(inFlightText);
const catalogOf = (build: string) => resolve(build, 'bench', 'catalog.js');
const badInFlight = inFlight !== undefined && (!Number.isInteger(inFlight) || inFlight < 1 || inFlight > runs);
if (!first || !second || !Number.isInteger(runs) || runs < 1 || badInFlight || ![first, second].every((build) => existsSync(catalogOf(build)))) {
  process.stderr.write(
    'usage: bench/side-by-side.ts <build A> <build B> [workload] [runs] [in flight]\n' +
      '  a build is a folder holding a compiled bench (bench/.build, or a copy of it under bench/.builds/<name>)\n' +
      '  in flight: runs started at once per round (1 to runs); each build then runs runs / in flight rounds, after one round of warm-up\n',
  );
  process.exit(2);
}

const builds = [first, second];
const workloads: Workload[] = [];
for (const build of builds) {
  const { workloadsByName } = (await import(pathToFileURL(catalogOf(build)).href)) as { workloadsByName: Record<string, () => Workload> };
  const make = workloadsByName[workloadName];
  if (!make) {
    process.stderr.write(`bench: no workload named "${workloadName}" in ${build} (known: ${Object.keys(workloadsByName).join(', ')})\n`);
    process.exit(2);
  }
  workloads.push(make());
}

if (inFlight !== undefined) {
  await compareInFlight(inFlight);
  process.exit(0);
}

/** Runs/s of each build with `count` runs in flight, round by round alternately; the medians and B / A. */
async function compareInFlight(count: number): Promise<void> {
  const rounds = Math.floor(runs / count);
  const rates: number[][] = builds.map(() => []);
  let next = 0;
  progress(`${workloadName}: one warm-up and ${rounds} measured rounds of ${count} runs in flight for each build, alternately`);
  for (let round = 0; round <= rounds; round++) {
    for (const which of round % 2 === 0 ? [0, 1] : [1, 0]) {
      const started = performance.now();
      await workloads[which]!.runMany(count, next);
      next += count;
      if (round > 0) rates[which]!.push(count / ((performance.now() - started) / 1000));
      await workloads[which]!.settle();
    }
  }
  for (const workload of workloads) await workload.close();
  const medians = rates.map((values) => quantile([...values].sort((a, b) => a - b), 0.5));
  process.stdout.write(
    [
      `| ${workloadName}, ${count} in flight, ${rounds} rounds each | runs/s, median | rounds |`,
      '| --- | ---: | --- |',
      ...builds.map((build, which) => `| ${build} | ${medians[which]!.toFixed(0)} | ${rates[which]!.map((rate) => rate.toFixed(0)).join(', ')} |`),
      `| B / A | ${(medians[1]! / medians[0]!).toFixed(3)}× | |`,
    ].join('\n') + '\n',
  );
}

const samples: number[][] = builds.map(() => []);
let index = 0;
const warmup = Math.min(500, runs);
progress(`${workloadName}: ${warmup} warm-up and ${runs} measured runs of each build, alternately`);
for (let round = 0; round < warmup + runs; round++) {
  // The order flips every round: each build runs as often right after the other as before it.
  const order = round % 2 === 0 ? [0, 1] : [1, 0];
  for (const which of order) {
    const started = performance.now();
    await workloads[which]!.run(index++);
    if (round >= warmup) samples[which]!.push((performance.now() - started) * 1000);
  }
}
for (const workload of workloads) {
  await workload.settle();
  await workload.close();
}

const figures = samples.map((values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), p99: quantile(sorted, 0.99), mean: values.reduce((sum, value) => sum + value, 0) / values.length };
});
const µs = (value: number) => `${value.toFixed(1)} µs`;
const rows = builds.map((build, which) => `| ${build} | ${µs(figures[which]!.p50)} | ${µs(figures[which]!.p90)} | ${µs(figures[which]!.p99)} | ${µs(figures[which]!.mean)} |`);
const ratio = (key: 'p50' | 'p90' | 'p99' | 'mean') => `${(figures[1]![key] / figures[0]![key]).toFixed(3)}×`;
process.stdout.write(
  [
    `| ${workloadName}, ${runs} runs each | p50 | p90 | p99 | mean |`,
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows,
    `| B / A | ${ratio('p50')} | ${ratio('p90')} | ${ratio('p99')} | ${ratio('mean')} |`,
  ].join('\n') + '\n',
);
