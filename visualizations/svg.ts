import dagre from '@dagrejs/dagre';
import { chartOf, type Chart, type ChartState } from './chart.js';

/**
 * Advance widths of Helvetica (Arial and Liberation Sans share them), in thousandths of the font
 * size, for the printable ASCII characters from space (32) to tilde (126). With them the boxes
 * are sized in-process, with no browser and no font files.
 */
const helvetica = [
  278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584,
  584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667,
  611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500,
  722, 500, 500, 500, 334, 260, 334, 584,
];

/** Width of `text` in pixels at `size`; bold text runs about 7% wider. */
export function textWidth(text: string, size: number, bold = false): number {
  let units = 0;
  for (const character of text) units += helvetica[character.charCodeAt(0) - 32] ?? 1000;
  return (units / 1000) * size * (bold ? 1.07 : 1);
}

const font = {
  family: "Helvetica, Arial, 'Liberation Sans', sans-serif",
  state: 14,
  cluster: 13,
  label: 11.5,
  lineHeight: 15,
};

/** Numbers print with at most one decimal, so the output is the same on every machine. */
const n = (value: number) => {
  const rounded = Math.round(value * 10) / 10;
  return String(Object.is(rounded, -0) ? 0 : rounded);
};

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

interface Point {
  x: number;
  y: number;
}

interface Edge {
  from: string;
  to: string;
  lines: { event: string; guard: string | null }[];
}

/** Parallel transitions (same source, same target) share one edge with one label line each. */
function edgesOf(chart: Chart): Edge[] {
  const byKey = new Map<string, ChartState>(chart.states.map((state) => [state.key, state]));
  const edges = new Map<string, Edge>();
  for (const transition of chart.transitions) {
    const source = byKey.get(transition.source)!;
    if (source.kind === 'compound') throw new Error(`svg: a transition from the compound state "${source.key}" cannot be drawn; move it to a child state`);
    // Entering a compound state enters its initial child: dagre draws edges between leaves only.
    let target = byKey.get(transition.target)!;
    while (target.kind === 'compound') target = byKey.get(target.initial!)!;
    const key = `${source.key}\u0000${target.key}`;
    const match = /^(.*?)(?: \[(.+)\])?$/.exec(transition.label)!;
    const line = { event: match[1]!, guard: match[2] ?? null };
    const edge = edges.get(key);
    if (edge) edge.lines.push(line);
    else edges.set(key, { from: source.key, to: target.key, lines: [line] });
  }
  return [...edges.values()];
}

const lineText = (line: Edge['lines'][number]) => (line.guard ? `${line.event} [${line.guard}]` : line.event);

/** A smooth path through dagre's points that ends in a straight segment, so the arrowhead points the right way. */
function pathThrough(points: Point[]): string {
  const [first, ...rest] = points;
  if (!first || rest.length === 0) return '';
  let d = `M${n(first.x)},${n(first.y)}`;
  for (let index = 0; index < rest.length - 1; index++) {
    const control = rest[index]!;
    const next = rest[index + 1]!;
    d += ` Q${n(control.x)},${n(control.y)} ${n((control.x + next.x) / 2)},${n((control.y + next.y) / 2)}`;
  }
  const last = rest[rest.length - 1]!;
  return `${d} L${n(last.x)},${n(last.y)}`;
}

const style = `
    .diagram { font-family: ${font.family}; }
    .state > rect.box { fill: #ffffff; stroke: #475569; stroke-width: 1.5; }
    .state.transient > rect.box { fill: #f8fafc; stroke-dasharray: 4 3; }
    .state.final > rect.box { fill: #f1f5f9; }
    .state.final > rect.ring { fill: none; stroke: #475569; stroke-width: 1.2; }
    .state > text { font-size: ${font.state}px; font-weight: 600; fill: #0f172a; }
    .state.transient > text { font-weight: 400; font-style: italic; fill: #334155; }
    .state.compound > rect.box { fill: #f8fafc; stroke: #94a3b8; stroke-width: 1.2; }
    .state.compound > text { font-size: ${font.cluster}px; font-weight: 700; fill: #475569; }
    .initial { fill: #0f172a; }
    .transition > path { fill: none; stroke: #64748b; stroke-width: 1.3; }
    .transition > .label > rect { fill: #ffffff; fill-opacity: 0.92; }
    .transition > .label > text { font-size: ${font.label}px; fill: #334155; }
    .transition > .label .guard { fill: #6d28d9; }
    .transition.everywhere > path { stroke-dasharray: 5 4; }
    .anywhere > rect { fill: none; stroke: #94a3b8; stroke-dasharray: 3 3; }
    .anywhere > text { font-size: ${font.label}px; font-style: italic; fill: #475569; }
    .note { font-size: 12px; fill: #64748b; }
    #arrowhead path { fill: #64748b; }
    #arrowhead-taken path { fill: #2563eb; }`;

/**
 * Renders the run machine as an SVG: dagre lays out a compound graph (compound states are
 * clusters around their children), the boxes are sized from font metrics, and every number is
 * rounded, so the same chart gives the same bytes. Each state is a `<g class="state" data-state="…">`
 * and each edge a `<g class="transition" data-from="…" data-to="…">`, which the run viewer highlights.
 */
export function renderSvg(chart: Chart = chartOf()): string {
  const graph = new dagre.graphlib.Graph({ compound: true, multigraph: false });
  graph.setGraph({ rankdir: 'TB', nodesep: 34, ranksep: 40, edgesep: 14, marginx: 24, marginy: 24 });
  graph.setDefaultEdgeLabel(() => ({}));
  graph.setNode('__initial', { width: 14, height: 14 });
  for (const state of chart.states) {
    if (state.kind === 'compound') graph.setNode(state.key, {});
    else graph.setNode(state.key, { width: Math.max(96, textWidth(state.name, font.state, true) + 36), height: state.kind === 'final' ? 44 : 38 });
    if (state.parent) graph.setParent(state.key, state.parent);
  }
  const edges = edgesOf(chart);
  graph.setEdge('__initial', chart.initial, { width: 0, height: 0, minlen: 1 });
  // The root's own transitions (run.cancel) apply in every state: one edge from an "any state" marker each.
  const anywhere = 'any state';
  if (chart.everywhere.length) graph.setNode('__anywhere', { width: textWidth(anywhere, font.label) + 24, height: 26 });
  for (const transition of chart.everywhere) {
    graph.setEdge('__anywhere', transition.target, { width: textWidth(transition.label, font.label) + 12, height: font.lineHeight + 6, labelpos: 'c' });
  }
  for (const edge of edges) {
    const width = Math.max(...edge.lines.map((line) => textWidth(lineText(line), font.label))) + 12;
    graph.setEdge(edge.from, edge.to, { width, height: edge.lines.length * font.lineHeight + 6, labelpos: 'c' });
  }
  dagre.layout(graph);

  const node = (key: string) => graph.node(key) as { x: number; y: number; width: number; height: number };
  const noteText = 'Generated from machines/run by runchart viz. Double border: final state. Dashed, italic: transient state (left at once by an eventless transition).';
  const layout = graph.graph() as { width: number; height: number };
  const width = layout.width;
  const height = layout.height + (noteText ? 28 : 0);
  const out: string[] = [];
  // No fixed size: the drawing scales to its container (its viewBox keeps the proportions).
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" class="diagram" viewBox="0 0 ${n(width)} ${n(height)}" width="100%" role="img" aria-labelledby="diagram-title">`);
  out.push('  <title id="diagram-title">The run chart (machines/run): states and transitions, generated by runchart viz</title>');
  out.push(`  <style>${style}\n  </style>`);
  out.push('  <defs>');
  out.push('    <marker id="arrowhead" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>');
  out.push('    <marker id="arrowhead-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>');
  out.push('  </defs>');

  const box = (key: string, inset = 0) => {
    const { x, y, width: w, height: h } = node(key);
    return `x="${n(x - w / 2 + inset)}" y="${n(y - h / 2 + inset)}" width="${n(w - inset * 2)}" height="${n(h - inset * 2)}"`;
  };

  out.push('  <g class="clusters">');
  for (const state of chart.states.filter((entry) => entry.kind === 'compound')) {
    const { x, y, width: w, height: h } = node(state.key);
    out.push(`    <g class="state compound" data-state="${escape(state.key)}" id="state-${escape(state.key)}">`);
    out.push(`      <rect class="box" ${box(state.key)} rx="12" ry="12"/>`);
    out.push(`      <text x="${n(x - w / 2 + 12)}" y="${n(y - h / 2 + 18)}">${escape(state.name)}</text>`);
    out.push('    </g>');
  }
  out.push('  </g>');

  out.push('  <g class="transitions">');
  const start = graph.edge('__initial', chart.initial) as { points: Point[] };
  out.push(`    <g class="transition initial-transition" data-from="" data-to="${escape(chart.initial)}"><path d="${pathThrough(start.points)}" marker-end="url(#arrowhead)"/></g>`);
  for (const edge of edges) {
    const laid = graph.edge(edge.from, edge.to) as { points: Point[]; x: number; y: number; width: number; height: number };
    const events = edge.lines.map(lineText).join('; ');
    out.push(`    <g class="transition" data-from="${escape(edge.from)}" data-to="${escape(edge.to)}" data-events="${escape(events)}">`);
    out.push(`      <path d="${pathThrough(laid.points)}" marker-end="url(#arrowhead)"/>`);
    const top = laid.y - laid.height / 2 + 3;
    out.push(`      <g class="label">`);
    out.push(`        <rect x="${n(laid.x - laid.width / 2)}" y="${n(laid.y - laid.height / 2)}" width="${n(laid.width)}" height="${n(laid.height)}" rx="4" ry="4"/>`);
    out.push(`        <text text-anchor="middle">`);
    edge.lines.forEach((line, index) => {
      const guard = line.guard ? ` <tspan class="guard">[${escape(line.guard)}]</tspan>` : '';
      out.push(`          <tspan x="${n(laid.x)}" y="${n(top + (index + 1) * font.lineHeight - 3.5)}">${escape(line.event)}${guard}</tspan>`);
    });
    out.push('        </text>');
    out.push('      </g>');
    out.push('    </g>');
  }
  for (const transition of chart.everywhere) {
    const laid = graph.edge('__anywhere', transition.target) as { points: Point[]; x: number; y: number; width: number; height: number };
    out.push(`    <g class="transition everywhere" data-from="*" data-to="${escape(transition.target)}" data-events="${escape(transition.label)}">`);
    out.push(`      <path d="${pathThrough(laid.points)}" marker-end="url(#arrowhead)"/>`);
    out.push('      <g class="label">');
    out.push(`        <rect x="${n(laid.x - laid.width / 2)}" y="${n(laid.y - laid.height / 2)}" width="${n(laid.width)}" height="${n(laid.height)}" rx="4" ry="4"/>`);
    out.push(`        <text text-anchor="middle"><tspan x="${n(laid.x)}" y="${n(laid.y + 4)}">${escape(transition.label)}</tspan></text>`);
    out.push('      </g>');
    out.push('    </g>');
  }
  out.push('  </g>');

  out.push('  <g class="states">');
  if (chart.everywhere.length) {
    const marker = node('__anywhere');
    out.push(`    <g class="anywhere"><rect ${box('__anywhere')} rx="13" ry="13"/><text x="${n(marker.x)}" y="${n(marker.y + 4)}" text-anchor="middle">${anywhere}</text></g>`);
  }
  const dot = node('__initial');
  out.push(`    <circle class="initial" cx="${n(dot.x)}" cy="${n(dot.y)}" r="7"/>`);
  for (const state of chart.states.filter((entry) => entry.kind !== 'compound')) {
    const { x, y } = node(state.key);
    const classes = ['state', state.kind, ...(state.transient ? ['transient'] : [])].join(' ');
    out.push(`    <g class="${classes}" data-state="${escape(state.key)}" id="state-${escape(state.key)}">`);
    out.push(`      <rect class="box" ${box(state.key)} rx="9" ry="9"/>`);
    if (state.kind === 'final') out.push(`      <rect class="ring" ${box(state.key, 4)} rx="6" ry="6"/>`);
    out.push(`      <text x="${n(x)}" y="${n(y + font.state * 0.35)}" text-anchor="middle">${escape(state.name)}</text>`);
    out.push('    </g>');
  }
  out.push('  </g>');
  if (noteText) out.push(`  <text class="note" x="24" y="${n(height - 14)}">${escape(noteText)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
