// The README's code, as the tests run it: the examples a user copies must work as written.
import { readFileSync } from 'node:fs';

const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');

/** The first ```ts block after the heading `title` (e.g. "## Embedding") of the README, or of another doc of the project's. */
export function readmeExample(title: string, file = 'README.md'): string {
  const text = read(file);
  const at = text.indexOf(`\n${title}\n`);
  const from = at < 0 && text.startsWith(`${title}\n`) ? 0 : at;
  if (from < 0) throw new Error(`${file} has no heading "${title}"`);
  const block = /```ts\n([\s\S]*?)```/.exec(text.slice(from));
  if (!block) throw new Error(`${file} has no ts block under "${title}"`);
  return block[1]!;
}
