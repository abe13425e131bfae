// Summarizes a V8 .cpuprofile: the functions and files with the most self time, time by layer, and the project's functions by inclusive time. `node bench/.build/bench/top-self-time.js <file> [rows] [runs]` (after `npx tsc -p bench/tsconfig.json`); with runs, time by layer is also given in µs per run.
import { readFileSync } from 'node:fs';
import { isXState, layerOf, xstateLayer } from './layers.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const [file, rowsArgument, runsArgument] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: bench/top-self-time.ts <file.cpuprofile> [rows] [runs]\n');
  process.exit(2);
}
const rows = Number(rowsArgument ?? '40');
const runs = runsArgument ? Number(runsArgument) : undefined;
const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));

// Self time per node: each sample's time delta goes to the node it hit.
const selfMicros = new Map<number, number>();
profile.samples.forEach((id, index) => selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
const total = [...selfMicros.values()].reduce((sum, value) => sum + value, 0);

const short = (url: string) => url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '~/').replace(/^.*\/work\/main\//, '');
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
for (const [id, micros] of selfMicros) {
  const frame = byId.get(id)!.callFrame;
  const where = frame.url ? `${short(frame.url)}:${frame.lineNumber + 1}` : '(native)';
  const name = `${frame.functionName || '(anonymous)'}  ${where}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
  const module = frame.url ? short(frame.url).replace(/^~\/([^/]+(?:\/[^/]+)?)\/.*$/, (_, pkg: string) => `~/${pkg.startsWith('@') ? pkg : pkg.split('/')[0]}`) : frame.functionName;
  byFile.set(module, (byFile.get(module) ?? 0) + micros);
}

// Inclusive time: each sample counts once for every distinct function on its stack.
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
const ownCode = (url: string) => /\/(src|machines|actors)\//.test(url) && !url.includes('node_modules');
const inclusive = new Map<string, number>();
profile.samples.forEach((id, index) => {
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const frame = byId.get(at)!.callFrame;
    if (!ownCode(frame.url)) continue;
    const name = `${frame.functionName || '(anonymous)'}  ${short(frame.url)}:${frame.lineNumber + 1}`;
    if (seen.has(name)) continue;
    seen.add(name);
    inclusive.set(name, (inclusive.get(name) ?? 0) + (profile.timeDeltas[index] ?? 0));
  }
});

// Time by layer: a sample in project code counts for that code's layer; one in XState or the
// garbage collector for those; one in anything else (zod, Node's internals, the OTel API) for
// the layer of the nearest project function below it on the stack, i.e. the layer that asked.
const byLayer = new Map<string, number>();
profile.samples.forEach((id, index) => {
  const leaf = byId.get(id)!.callFrame;
  let layer: string;
  const engine: Record<string, string> = { '(garbage collector)': 'garbage collection', '(program)': '(program: V8 outside JS)', '(idle)': '(idle)' };
  if (!leaf.url && engine[leaf.functionName]) layer = engine[leaf.functionName]!;
  else if (isXState(leaf.url)) layer = xstateLayer;
  else {
    layer = 'outside any run (start-up, module loading)';
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const found = layerOf(byId.get(at)!.callFrame.url);
      if (found) {
        layer = found;
        break;
      }
    }
  }
  byLayer.set(layer, (byLayer.get(layer) ?? 0) + (profile.timeDeltas[index] ?? 0));
});

const print = (title: string, entries: Map<string, number>) => {
  process.stdout.write(`\n${title}\n`);
  for (const [name, micros] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, rows)) {
    process.stdout.write(`${((micros / total) * 100).toFixed(1).padStart(5)}%  ${(micros / 1000).toFixed(0).padStart(6)} ms  ${name}\n`);
  }
};
process.stdout.write(`${file}: ${(total / 1000).toFixed(0)} ms sampled\n`);
print('top self time by function', byFunction);
print('time by layer (a library or Node counts for the layer that called it)', byLayer);
if (runs) {
  process.stdout.write(`\nper run (${runs} runs; a profiled run is slower than an unprofiled one)\n`);
  for (const [name, micros] of [...byLayer].sort((a, b) => b[1] - a[1])) process.stdout.write(`${(micros / runs).toFixed(1).padStart(7)} µs  ${name}\n`);
}
print('self time by file or package', byFile);
print('inclusive time of project functions (src/, machines/, actors/)', inclusive);
