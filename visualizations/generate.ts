import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
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

/** Replaces the README's Mermaid block with the current diagram; returns whether it changed. */
export async function updateReadme(path: string): Promise<boolean> {
  const text = await readFile(path, 'utf8');
  const next = text.replace(/```mermaid\n[\s\S]*?```/, `\`\`\`mermaid\n${renderMermaid()}\`\`\``);
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
