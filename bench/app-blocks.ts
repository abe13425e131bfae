// The app workload alone, block by block, for two builds side by side: `npx tsc -p bench/tsconfig.json`, then
// `node --expose-gc bench/.build/bench/app-blocks.js [memory|lowdb] [blocks] [runs per block] [principals]` (sessions: ten per principal).
import { measureApp } from './app.js';
import { commandLine, progress } from './measure.js';

const {
  chosen: store,
  counts: [blocks = 10, runsPerBlock = 10_000, principals = 100],
} = commandLine('app-blocks.ts', { blocks: 10, runsPerBlock: 10_000, principals: 100 }, { options: { memory: 'memory', lowdb: 'lowdb' } as const, fallback: 'lowdb' });
const { name } = await measureApp(store, { people: { principals, sessions: principals * 10 }, blocks, runsPerBlock }, (block) =>
  progress(
    `runs ${block.firstRun}–${block.firstRun + block.runs - 1}: p50 ${block.p50.toFixed(0)} µs, p99 ${block.p99.toFixed(0)} µs, mean ${block.mean.toFixed(0)} µs, RSS ${block.rssMB.toFixed(1)} MB, heap ${block.heapMB.toFixed(1)} MB${block.diskMB === undefined ? '' : `, disk ${block.diskMB.toFixed(1)} MB (memory ${block.memoryDiskMB!.toFixed(1)} MB)`}, recalled ${(100 * block.recalledShare).toFixed(0)}% (${block.seconds.toFixed(1)} s)`,
  ),
);
progress(`${name}: done`);
