import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderMermaid } from './mermaid.js';
import { renderPaths } from './paths.js';

/** The generated files, by name, as the committed copies must read. */
export function renderAll(): Record<string, string> {
  return { 'run-machine.mmd': renderMermaid(), 'run-paths.md': renderPaths() };
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
  for (const [name, text] of Object.entries(files)) await writeFile(join(directory, name), text);
  return Object.keys(files);
}
