import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { RunchartError } from '../src/errors.js';
import { renderMermaid } from './mermaid.js';
import { renderPaths } from './paths.js';
import { renderSvg } from './svg.js';
import { renderViewerIndex, viewerAssets } from './viewer.js';

/**
 * The generated files, by path under the output folder, as the committed copies must read. The
 * viewer's script and styles are copied as they are, so `runchart viz --out <dir>` gives a working viewer.
 */
export function renderAll(): Record<string, string> {
  const assets = viewerAssets();
  return {
    'run-machine.mmd': renderMermaid(),
    'run-machine.svg': renderSvg(),
    'run-paths.md': renderPaths(),
    'viewer/index.html': renderViewerIndex(),
    'viewer/viewer.js': assets['viewer.js'],
    'viewer/viewer.css': assets['viewer.css'],
  };
}

/** The lines that mark the diagram's block in a README: `runchart viz --readme` rewrites what is between them, nothing else. */
export const README_MARKERS = { start: '<!-- runchart viz: diagram -->', end: '<!-- /runchart viz -->' } as const;

/**
 * Replaces the diagram between the README's markers with the current one; returns whether it
 * changed. A README without both markers is refused: the rest of the file is its author's.
 */
export async function updateReadme(path: string): Promise<boolean> {
  const text = await readFile(path, 'utf8');
  const start = text.indexOf(`${README_MARKERS.start}\n`);
  const end = text.indexOf(README_MARKERS.end, start);
  if (start < 0 || end < 0) {
    throw new RunchartError(
      'invalid-input',
      'runtime',
      `viz: ${path} has no marked diagram block; put the lines "${README_MARKERS.start}" and "${README_MARKERS.end}" where the diagram goes, or leave out --readme`,
    );
  }
  const from = start + README_MARKERS.start.length + 1;
  const next = `${text.slice(0, from)}\`\`\`mermaid\n${renderMermaid()}\`\`\`\n${text.slice(end)}`;
  if (next !== text) await writeFile(path, next);
  return next !== text;
}

/** Writes every generated visualization into `directory`. */
export async function writeAll(directory: string): Promise<string[]> {
  const files = renderAll();
  for (const [name, text] of Object.entries(files)) {
    await mkdir(dirname(join(directory, name)), { recursive: true });
    await writeFile(join(directory, name), text);
  }
  return Object.keys(files);
}
