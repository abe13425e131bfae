// The package as a user installs it: `npm pack` (its prepack build), the tarball installed into a
// new app, the README's embedding example and the runchart command run from there.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readmeExample } from '../support/readme.js';
import { tempDir } from '../support/temp.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

/** The environment of a fresh shell: no npm_* settings of the `npm test` around us (they name this project's folders). */
const cleanEnv = () => Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name) && name !== 'INIT_CWD')) as Record<string, string>;

function exec(command: string, args: string[], cwd: string): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(command, args, { cwd, env: { ...cleanEnv(), OPENAI_API_KEY: '', OPENAI_BASE_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => void (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => void (err += chunk.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(dir, join(prefix, entry.name)) : [join(prefix, entry.name)],
  );
}

describe('the npm package', () => {
  it('packs dist (types, maps with their sources), the bin, the viewer, README and LICENSE; installs into an app; runs the README example and the command', { timeout: 600_000 }, async () => {
    const packs = await tempDir('runchart-pack-');
    const packed = await exec('npm', ['pack', '--json', '--pack-destination', packs], root);
    expect(packed.code, packed.err).toBe(0);
    const [manifest] = JSON.parse(packed.out.slice(packed.out.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    const files = manifest!.files.map((file) => file.path);
    for (const file of ['package.json', 'README.md', 'LICENSE', 'bin/runchart.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/testing/index.d.ts', 'dist/src/cli/main.js', 'dist/visualizations/viewer.js', 'visualizations/viewer/viewer.js', 'visualizations/viewer/viewer.css']) {
      expect(files, file).toContain(file);
    }
    expect(files.filter((file) => !/^(dist|bin|visualizations\/viewer)\/|^(package\.json|README\.md|LICENSE)$/.test(file))).toEqual([]);
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) 2026 the runchart authors\n/);

    const app = await tempDir('runchart-app-');
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    // The project's own install filled npm's cache: prefer it, and the registry for the rest.
    const installed = await exec('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(packs, manifest!.filename)], app);
    expect(installed.code, installed.err).toBe(0);

    // A source map that points at sources the package does not ship must carry them.
    const dist = join(app, 'node_modules', 'runchart', 'dist');
    const maps = filesUnder(dist).filter((file) => file.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(50);
    for (const map of maps) {
      const parsed = JSON.parse(readFileSync(join(dist, map), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
      expect(parsed.sourcesContent?.length, map).toBe(parsed.sources.length);
      expect(parsed.sourcesContent!.every((source) => typeof source === 'string' && source.length > 0), map).toBe(true);
    }

    const example = `${readmeExample('## Embedding')}\nprocess.stderr.write('RESULT ' + JSON.stringify({ status: result.status, output: result.output }) + '\\n');\n`;
    await writeFile(join(app, 'example.mjs'), example);
    const embedded = await exec(process.execPath, ['example.mjs'], app);
    expect(embedded.err).toContain('RESULT {"status":"completed","output":"2 + 3 = 5"}');
    expect(embedded.code).toBe(0);
    expect(embedded.out).toBe('');

    // docs/own-system.md: the run chart invoked by a workflow of the user's own.
    const own = `${readmeExample('# The run chart in an XState system of your own', 'docs/own-system.md')}\nprocess.stderr.write('RESULT ' + JSON.stringify({ status: result.status, output: result.output, tool: result.toolCalls[0]?.outcome }) + '\\n');\n`;
    await writeFile(join(app, 'own-system.mjs'), own);
    const inOwnSystem = await exec(process.execPath, ['own-system.mjs'], app);
    expect(inOwnSystem.err).toContain('RESULT {"status":"completed","output":"42","tool":{"status":"ok","output":42}}');
    expect(inOwnSystem.code).toBe(0);

    const shown = await exec('npx', ['runchart', '--version'], app);
    expect(shown).toMatchObject({ code: 0, out: `${version}\n` });

    const ran = await exec('npx', ['runchart', 'run', 'what is 2+3*4?', '--json'], app);
    expect(ran.code, ran.err).toBe(0);
    const result = JSON.parse(ran.out) as { runId: string; output: string };
    expect(result.output).toBe('[offline demo model] The answer is 14.');
    const page = await exec('npx', ['runchart', 'runs', 'show', result.runId, '--html', 'run.html'], app);
    expect(page.code, page.err).toBe(0);
    expect(readFileSync(join(app, 'run.html'), 'utf8')).toContain(result.runId);
  });
});
