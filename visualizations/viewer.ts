import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRecording } from '../src/inspect/recorder.js';
import { renderSvg } from './svg.js';

/**
 * The viewer's hand-written assets: `viewer/` beside this module when run from the sources,
 * the package's `visualizations/viewer/` when run from `dist/visualizations/`.
 */
function assetFolder(): string {
  const candidates = [new URL('./viewer/', import.meta.url), new URL('../../visualizations/viewer/', import.meta.url)];
  const found = candidates.find((candidate) => existsSync(new URL('viewer.js', candidate)));
  if (!found) throw new Error(`viewer: cannot find viewer.js and viewer.css in ${candidates.map((candidate) => fileURLToPath(candidate)).join(' or ')}`);
  return fileURLToPath(found);
}

/** The viewer's script and style sheet, as committed in `visualizations/viewer/`. */
export function viewerAssets(): { 'viewer.js': string; 'viewer.css': string } {
  const folder = assetFolder();
  return { 'viewer.js': readFileSync(`${folder}viewer.js`, 'utf8'), 'viewer.css': readFileSync(`${folder}viewer.css`, 'utf8') };
}

const hint =
  'Pick a recording or drop one on the page: <code>&lt;store dir&gt;/inspect/&lt;runId&gt;.jsonl</code>, written when the runtime runs with ' +
  '<code>createRunRecorder</code>. <code>runchart runs show &lt;runId&gt; --html</code> writes this page with the run in it.';

interface PageParts {
  head: string;
  tail: string;
  recording: string;
}

function page({ head, tail, recording }: PageParts): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${head}
<title>runchart run viewer</title>
</head>
<body>
<header class="bar">
  <h1 id="run-title">runchart run viewer</h1>
  <span id="run-status" class="pill status">no run loaded</span>
  <span class="brand">the run chart, with one recorded run on it</span>
  <label>open a recording: <input type="file" id="file" accept=".jsonl,.ndjson,application/x-ndjson"></label>
  <span id="load-note"></span>
</header>
<section id="summary" hidden>
  <dl>
    <div class="wide"><dt>input</dt><dd id="summary-input"></dd></div>
    <div><dt>tenant</dt><dd id="summary-tenant"></dd></div>
    <div><dt>principal</dt><dd id="summary-principal"></dd></div>
    <div><dt>status</dt><dd id="summary-status"></dd></div>
    <div class="wide"><dt>output</dt><dd id="summary-output"></dd></div>
  </dl>
</section>
<main>
<figure id="diagram">
${renderSvg().trimEnd()}
</figure>
<div id="run"><p class="hint">${hint}</p></div>
</main>
${recording}${tail}
</body>
</html>
`;
}

/** The static viewer page, `visualizations/viewer/index.html`: the diagram inline, the script and styles beside it. */
export function renderViewerIndex(): string {
  return page({
    // Served over HTTP, the page may fetch ?recording=<url> from its own origin; nothing else.
    head: `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'">\n<link rel="stylesheet" href="viewer.css">`,
    tail: '<script src="viewer.js"></script>',
    recording: '',
  });
}

/**
 * One self-contained HTML page for one recorded run: styles, script, diagram and the recording
 * inline; no network (a Content-Security-Policy forbids it).
 */
export function renderViewerPage(recording: string, source = 'recording'): string {
  parseRecording(recording, source); // refuse anything that is not a recording, before it is embedded
  const assets = viewerAssets();
  const script = `\n${assets['viewer.js']}`;
  const hash = createHash('sha256').update(script).digest('base64');
  const policy = `default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-${hash}'; img-src data:; base-uri 'none'; form-action 'none'`;
  // JSON escapes `<` as \u003c, so no line can close the script element it sits in.
  const embedded = recording.replace(/</g, '\\u003c');
  const label = source.replace(/[&"<>]/g, (character) => `&#${character.charCodeAt(0)};`);
  return page({
    head: `<meta http-equiv="Content-Security-Policy" content="${policy}">\n<style>\n${assets['viewer.css']}</style>`,
    tail: `<script>${script}</script>`,
    recording: `<script type="application/x-ndjson" id="recording" data-source="${label}">\n${embedded}</script>\n`,
  });
}

/** What `writeViewerPage` takes: the recording's JSONL text and where the page goes. */
export interface ViewerPageOptions {
  /** A run's recording, as `createRunRecorder` writes it (`<store dir>/inspect/<runId>.jsonl`). */
  recording: string;
  /** The HTML file to write; its folder is created. */
  out: string;
  /** Names the recording on the page; defaults to the run id. */
  source?: string;
}

/**
 * Writes ONE self-contained HTML file showing a recorded run on the run chart: its path
 * highlighted, time per state, policy decisions, tool calls, approvals and the result.
 * @example
 * await writeViewerPage({ recording: await readFile('.runchart/inspect/<runId>.jsonl', 'utf8'), out: 'run.html' });
 */
export async function writeViewerPage(options: ViewerPageOptions): Promise<void> {
  const runId = parseRecording(options.recording, options.source ?? 'recording')[0]?.runId;
  await mkdir(dirname(options.out), { recursive: true });
  await writeFile(options.out, renderViewerPage(options.recording, options.source ?? (runId ? `${runId}.jsonl` : 'recording')));
}
