// The README's two commands on a fresh machine: `npm test` installs what its tests need, or says why it cannot.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);
const script = fileURLToPath(new URL('scripts/ensure-chromium.mjs', root));
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

function ensureChromium(env: Record<string, string>, as?: { uid: number; gid: number }): Promise<{ code: number | null; err: string }> {
  const child = spawn(process.execPath, [script], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'ignore', 'pipe'], ...(as ?? {}) });
  let err = '';
  child.stderr.on('data', (chunk: Buffer) => void (err += chunk.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, err })));
}

describe('npm test on a fresh machine', () => {
  it('checks for Chromium before any test (pretest), and .ci/run runs the README commands as written', () => {
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    expect(scripts.pretest).toBe('node scripts/ensure-chromium.mjs');
    const block = /```sh\n([\s\S]*?)```/.exec(read('README.md'))![1]!;
    const commands = block.split('\n').filter(Boolean).map((line) => line.replace(/\s+#.*$/, '').replace(/^npm ci && /, ''));
    expect(commands).toEqual(['npm start -- run "what is 2+3?"', 'npm test']);
    const ci = read('.ci/run').split('\n');
    for (const command of ['npm ci --no-audit --no-fund', ...commands]) expect(ci, command).toContain(command);
    // The install lives in one place, the pretest script.
    expect(read('.ci/run')).not.toContain('apt-get');
  });

  it('does nothing when Chromium is there', async () => {
    expect(await ensureChromium({ CHROMIUM_PATH: process.execPath })).toEqual({ code: 0, err: '' });
  });

  it('tells a user who is not root how to install it, and fails with no stack', async () => {
    // Run as nobody when the tests run as root; otherwise this user is the one who is not root.
    const { code, err } = await ensureChromium({ CHROMIUM_PATH: '/nonexistent/chromium' }, process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : undefined);
    expect(code).toBe(1);
    expect(err).toContain('the viewer tests need Chromium at /nonexistent/chromium, and this user is not root');
    expect(err).toContain('sudo apt-get update && sudo apt-get install -y chromium');
    expect(err).not.toMatch(/\n\s+at /);
  });

  it('does not install anything for a CHROMIUM_PATH that names no file', async () => {
    const { code, err } = await ensureChromium({ CHROMIUM_PATH: '/nonexistent/chromium' });
    expect(code).toBe(1);
    expect(err).toMatch(process.getuid?.() === 0 ? /CHROMIUM_PATH names no file/ : /this user is not root/);
    expect(err).not.toContain('installing');
  });
});
