import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderMermaid } from './mermaid.js';
import { renderPaths } from './paths.js';

/** The generated files, by name, as the committed copies must read. */
export function renderAll(): Record<string, string> {
  return { 'run-machine.mmd': renderMermaid(), 'run-paths.md': renderPaths() };
}

/** Writes every generated visualization into `directory`. */
export async function writeAll(directory: string): Promise<string[]> {
  const files = renderAll();
  for (const [name, text] of Object.entries(files)) await writeFile(join(directory, name), text);
  return Object.keys(files);
}
