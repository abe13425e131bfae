// The app workload alone, block by block, for two builds side by side: `npx tsc -p bench/tsconfig.json`, then
// `node --expose-gc bench/.build/bench/app-blocks.js [memory|lowdb] [blocks] [runs per block] [principals] [alternating runs]`
// (sessions: ten per principal; the alternating check as in `npm run bench`).
import { measureApp } from './app.js';
import { commandLine, progress } from './measure.js';

const {
  chosen: store,
  counts: [blocks = 10, runsPerBlock = 10_000, principals = 100, alternating = 2_000],
} = commandLine('app-blocks.ts', { blocks: 10, runsPerBlock: 10_000, principals: 100, alternating: 2_000 }, { options: { memory: 'memory', lowdb: 'lowdb' } as const, fallback: 'lowdb' });
const measured = await measureApp(store, { people: { principals, sessions: principals * 10 }, blocks, runsPerBlock, alternating }, (block) =>
  progress(
    `runs ${block.firstRun}–${block.firstRun + block.runs - 1}: p50 ${block.p50.toFixed(0)} µs, p99 ${block.p99.toFixed(0)} µs, mean ${block.mean.toFixed(0)} µs, RSS ${block.rssMB.toFixed(1)} MB, heap ${block.heapMB.toFixed(1)} MB${block.diskMB === undefined ? '' : `, disk ${block.diskMB.toFixed(1)} MB (memory ${block.memoryDiskMB!.toFixed(1)} MB)`}, recalled ${(100 * block.recalledShare).toFixed(0)}% (${block.seconds.toFixed(1)} s)`,
  ),
);
const check = measured.alternating!;
progress(`${measured.name}: alternately with a new store, ${check.runs} runs each: p50 ${check.oldP50.toFixed(0)} µs with ${check.history} runs of history, ${check.newP50.toFixed(0)} µs new (${check.ratio.toFixed(2)}×)`);
