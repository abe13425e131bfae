// Where a parked run's heap goes: `npm run bench:heap -- [workload] [runs] [depth] [warmup]`. Parks a
// runchart workload's runs (in-memory unless named) at their second model call, after `warmup` runs
// (an app workload's history), between two heap snapshots and charges every object
// that is new in the second to the path by which it is first reached from a run's handle
// (`actor._snapshot.children.telemetry`, `actor.system`, …), breadth first; what no handle reaches
// (store entries, the runtime's maps, promise chains) is listed by kind.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { workloadsByName } from './catalog.js';
import { commandLine, forceGc, progress } from './measure.js';

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

// runchart's own workloads only: the analysis starts from runchart's run handles.
const runchartWorkloads = Object.fromEntries(Object.entries(workloadsByName).filter(([name]) => ['memory', 'lowdb', 'app-memory', 'app-lowdb'].includes(name)));
const {
  chosen: make,
  counts: [runs = 2000, depth = 4, warmup = 300],
} = commandLine('parked-heap.ts', { runs: 2000, depth: 4, warmup: 300 }, { options: runchartWorkloads, fallback: 'memory' });

const dir = mkdtempSync(join(tmpdir(), 'runchart-heap-'));
const workload = make();
let files: [string, string];
let heapKbPerRun: number;
try {
  // Warm-up runs come first in index order, so an app workload's parked runs find their sessions' history.
  for (let index = 0; index < warmup; index++) await workload.run(index);
  await workload.settle();
  await forceGc();
  const before = process.memoryUsage().heapUsed;
  const first = writeHeapSnapshot(join(dir, 'before.heapsnapshot'));
  const parked = await workload.park(runs, warmup);
  await forceGc();
  heapKbPerRun = (process.memoryUsage().heapUsed - before) / runs / 1024;
  const second = writeHeapSnapshot(join(dir, 'parked.heapsnapshot'));
  files = [first, second];
  if (parked.inFlight() !== runs) throw new Error(`bench: only ${parked.inFlight()} of ${runs} runs are parked`);
  await parked.release();
} finally {
  await workload.close();
}
progress(`${workload.name}: ${runs} runs parked after ${warmup} runs, ${heapKbPerRun.toFixed(2)} KB per run by heapUsed; reading the snapshots`);

const earlier = JSON.parse(readFileSync(files[0], 'utf8')) as HeapSnapshot;
const { meta } = earlier.snapshot;
const nodeFields = meta.node_fields.length;
const field = (name: string) => meta.node_fields.indexOf(name);
const [idAt, typeAt, nameAt, sizeAt, edgeCountAt] = ['id', 'type', 'name', 'self_size', 'edge_count'].map(field) as [number, number, number, number, number];
const oldIds = new Set<number>();
for (let at = 0; at < earlier.nodes.length; at += nodeFields) oldIds.add(earlier.nodes[at + idAt]!);

const heap = JSON.parse(readFileSync(files[1], 'utf8')) as HeapSnapshot;
rmSync(dir, { recursive: true, force: true });
const { nodes, edges, strings } = heap;
const edgeFields = meta.edge_fields.length;
const [edgeTypeAt, edgeNameAt, edgeToAt] = ['type', 'name_or_index', 'to_node'].map((name) => meta.edge_fields.indexOf(name)) as [number, number, number];
const nodeTypes = meta.node_types[0];
const edgeTypes = meta.edge_types[0];
const count = nodes.length / nodeFields;
const firstEdge = new Int32Array(count + 1);
for (let node = 0, edge = 0; node < count; node++) {
  firstEdge[node] = edge;
  edge += nodes[node * nodeFields + edgeCountAt]! * edgeFields;
  firstEdge[node + 1] = edge;
}
const isNew = (node: number) => !oldIds.has(nodes[node * nodeFields + idAt]!);
const typeOf = (node: number) => nodeTypes[nodes[node * nodeFields + typeAt]!]!;
const sizeOf = (node: number) => nodes[node * nodeFields + sizeAt]!;
const propertyNames = (node: number) => {
  const names: string[] = [];
  for (let edge = firstEdge[node]!; edge < firstEdge[node + 1]!; edge += edgeFields) {
    if (edgeTypes[edges[edge + edgeTypeAt]!] === 'property') names.push(strings[edges[edge + edgeNameAt]!]!);
  }
  return names;
};

// A run's handle: { runId, actor, result, cancel, subscribe }.
const handles: number[] = [];
for (let node = 0; node < count; node++) {
  if (typeOf(node) !== 'object' || !isNew(node)) continue;
  const names = propertyNames(node);
  if (names[0] === 'runId' && names[1] === 'actor' && names[2] === 'result') handles.push(node);
}

const reached = new Uint8Array(count);
const byPath = new Map<string, number>();
let queue: [number, string][] = handles.map((node) => [node, 'handle']);
for (const node of handles) reached[node] = 1;
while (queue.length) {
  const next: [number, string][] = [];
  for (const [node, path] of queue) {
    byPath.set(path, (byPath.get(path) ?? 0) + sizeOf(node));
    for (let edge = firstEdge[node]!; edge < firstEdge[node + 1]!; edge += edgeFields) {
      const kind = edgeTypes[edges[edge + edgeTypeAt]!]!;
      if (kind === 'weak' || kind === 'shortcut') continue;
      const target = edges[edge + edgeToAt]! / nodeFields;
      if (reached[target] || !isNew(target)) continue;
      reached[target] = 1;
      const name = kind === 'element' || kind === 'hidden' ? '[]' : kind === 'internal' ? `(${strings[edges[edge + edgeNameAt]!]})` : strings[edges[edge + edgeNameAt]!]!;
      const segments = path.split('.').length;
      next.push([target, segments < depth ? `${path}.${name}` : path]);
    }
  }
  queue = next;
}

let total = 0;
let fromHandles = 0;
const unreached = new Map<string, number>();
for (let node = 0; node < count; node++) {
  if (!isNew(node)) continue;
  total += sizeOf(node);
  if (reached[node]) fromHandles += sizeOf(node);
  else {
    const type = typeOf(node);
    const label = type === 'object' ? `object {${propertyNames(node).slice(0, 6).join(', ')}}` : `${type} ${type.includes('string') ? '' : strings[nodes[node * nodeFields + nameAt]!]!.slice(0, 40)}`;
    unreached.set(label, (unreached.get(label) ?? 0) + sizeOf(node));
  }
}
const perRun = (bytes: number) => `${Math.round(bytes / runs).toLocaleString('en-US').padStart(6)} B`;
process.stdout.write(`${handles.length} run handles; new objects ${perRun(total)} per run, of which ${perRun(fromHandles)} reached from a run's handle\n\n`);
process.stdout.write(`reached from a handle, by path (${depth} steps deep), per run\n`);
for (const [path, bytes] of [...byPath].sort((a, b) => b[1] - a[1]).filter(([, bytes]) => bytes / runs >= 16)) process.stdout.write(`${perRun(bytes)}  ${path}\n`);
process.stdout.write('\nnot reached from a handle, by kind, per run\n');
for (const [label, bytes] of [...unreached].sort((a, b) => b[1] - a[1]).slice(0, 20)) process.stdout.write(`${perRun(bytes)}  ${label}\n`);
