// The README's code, as the tests run it: the examples a user copies must work as written.
import { readFileSync } from 'node:fs';

const readme = () => readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The first ```ts block after the heading `title` (e.g. "## Embedding"). */
export function readmeExample(title: string): string {
  const text = readme();
  const at = text.indexOf(`\n${title}\n`);
  if (at < 0) throw new Error(`README.md has no heading "${title}"`);
  const block = /```ts\n([\s\S]*?)```/.exec(text.slice(at));
  if (!block) throw new Error(`README.md has no ts block under "${title}"`);
  return block[1]!;
}
