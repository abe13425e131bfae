// An embedded runtime on its defaults writes nothing to stdout: the README's embedding example, in a process of its own.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readmeExample } from '../support/readme.js';
import { tempDir } from '../support/temp.js';

const source = (path: string) => pathToFileURL(fileURLToPath(new URL(`../../${path}`, import.meta.url))).href;

/** Runs a module in a child process (TypeScript through tsx) in `cwd`; what it printed and its exit code. */
function runModule(file: string, cwd: string): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), file], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => void (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => void (err += chunk.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

describe('the README embedding example', () => {
  it('runs on the defaults (lowdb store, structured events on) and prints nothing to stdout', async () => {
    const dir = await tempDir();
    const example = readmeExample('## Embedding')
      .replace("from 'runchart/testing'", `from '${source('src/testing/index.ts')}'`)
      .replace("from 'runchart'", `from '${source('src/index.ts')}'`)
      .replace("from 'zod'", `from '${import.meta.resolve('zod')}'`);
    const file = join(dir, 'example.mts');
    await writeFile(file, `${example}\nprocess.stderr.write('\\nRESULT ' + JSON.stringify({ status: result.status, output: result.output }) + '\\n');\n`);

    const { code, out, err } = await runModule(file, dir);
    expect(err).toMatch(/RESULT \{"status":"completed","output":"2 \+ 3 = 5"\}/);
    expect(code).toBe(0);
    expect(out).toBe('');
    // Nothing else on stderr either: no event lines, no warnings.
    expect(err.trim().split('\n')).toEqual([expect.stringMatching(/^RESULT /)]);
  });
});
