// The runchart command as a user meets it, each case in a process of its own: exit codes, help, pipes, signals.
// Each process starts from source through tsx (a second or two on a busy machine), hence the timeouts.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/main.js';
import { runchart, startRunchart } from '../support/cli-process.js';
import { tempDir } from '../support/temp.js';

const version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** A port nothing listens on. */
const closedPort = () =>
  new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });

describe('runchart: usage, version and help', { timeout: 120_000 }, () => {
  it('exits with the usage code on a bare "runchart" (help on stderr) and on an unknown command', async () => {
    const [bare, unknown, runs] = await Promise.all([runchart([]), runchart(['frobnicate']), runchart(['runs'])]);
    expect(bare.code).toBe(ExitCode.usage);
    expect(bare.err).toContain('Usage: runchart [options] [command]');
    expect(bare.out).toBe('');
    expect(unknown.code).toBe(ExitCode.usage);
    expect(unknown.err).toContain("unknown command 'frobnicate'");
    expect(runs.code).toBe(ExitCode.usage);
  });

  it('prints its version with --version, and --help exits 0 listing the exit codes', async () => {
    const [shown, help] = await Promise.all([runchart(['--version']), runchart(['--help'])]);
    expect(shown).toMatchObject({ code: 0, out: `${version}\n` });
    expect(help.code).toBe(0);
    expect(help.out).toContain('7 the approver was refused by policy');
  });

  it('says in "run --help" which model runs: the demo model without a key, the named one with it', async () => {
    const [offline, online] = await Promise.all([
      runchart(['run', '--help']),
      runchart(['run', '--help'], { env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', OPENAI_MODEL: 'local-model' } }),
    ]);
    const flat = (text: string) => text.replace(/\s+/g, ' ');
    expect(flat(offline.out)).toContain('Model: the offline demo model (no OPENAI_API_KEY or OPENAI_BASE_URL is set)');
    expect(flat(online.out)).toContain('Model: "local-model" at http://127.0.0.1:9/v1, since OPENAI_API_KEY is set');
    expect(flat(online.out)).not.toContain('demo model');
  });

  it('lists --reason for reject only', async () => {
    const [approve, reject] = await Promise.all([runchart(['approve', '--help']), runchart(['reject', '--help'])]);
    expect(approve.out).toContain('--principal <id>');
    expect(approve.out).not.toContain('--reason');
    expect(reject.out).toContain('--reason <text>');
  });

  it('names the allowed stages of a bad config and the nearest key of a mistyped one, exiting with the usage code', async () => {
    const dir = await tempDir();
    const { writeFile } = await import('node:fs/promises');
    await writeFile(`${dir}/runchart.yaml`, 'runtime:\n  max_tool_hop: 2\npolicy:\n  rules:\n    - { id: r, stage: tools, effect: allow }\n');
    const { code, err } = await runchart(['run', 'hi', '--store', `${dir}/store`], { cwd: dir });
    expect(code).toBe(ExitCode.usage);
    expect(err).toContain('runtime.max_tool_hop: unknown key; did you mean "max_tool_hops"?');
    expect(err).toContain('policy.rules.0.stage: "tools" is not one of "precheck", "tool", "approval", "output", "memory.write"; did you mean "tool"?');
    expect(err).not.toContain('    at ');
  });
});

describe('runchart on a store it cannot have', { timeout: 120_000 }, () => {
  it('refuses to run on a store another live process holds, as bad usage, before any run starts', async () => {
    const dir = await tempDir();
    const { writeFile } = await import('node:fs/promises');
    const { hostname } = await import('node:os');
    // This test's own process is the live holder.
    await writeFile(`${dir}/lock`, JSON.stringify({ pid: process.pid, host: hostname(), since: '2026-12-04T00:00:00.000Z' }));
    const { code, out, err } = await runchart(['run', 'what is 2+3?', '--store', dir]);
    expect(code).toBe(ExitCode.usage);
    expect(err).toContain(`is held by process ${process.pid} on ${hostname()}`);
    expect(out).not.toContain('status:');
    expect(out).not.toContain('→ ingress');
    expect(err).not.toContain('warning');
    expect(readFileSync(`${dir}/lock`, 'utf8')).toContain(String(process.pid));
  });

  it('refuses a --store that is a file, or under one, naming it', async () => {
    const dir = await tempDir();
    const { writeFile } = await import('node:fs/promises');
    await writeFile(`${dir}/plain`, 'not a directory');
    for (const store of [`${dir}/plain`, `${dir}/plain/sub`]) {
      const { code, out, err } = await runchart(['run', 'what is 2+3?', '--store', store]);
      expect(code, store).toBe(ExitCode.usage);
      expect(err, store).toMatch(new RegExp(`store: ${store.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} cannot be written \\((EEXIST|ENOTDIR)\\); give this command a --store directory it may write`));
      expect(out, store).not.toContain('status:');
    }
  });

  it('lets the store go when serve cannot listen on its port, saying which and what to do', async () => {
    const dir = await tempDir();
    const taken = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => taken.once('listening', resolve));
    const { port } = taken.address() as { port: number };
    try {
      const { code, err } = await runchart(['serve', '--port', String(port), '--store', dir]);
      expect(code).toBe(ExitCode.usage);
      expect(err).toContain(`http: cannot listen on 127.0.0.1:${port} (EADDRINUSE); free the port or pick another with --port or http.port`);
      const { existsSync } = await import('node:fs');
      expect(existsSync(`${dir}/lock`)).toBe(false);
      expect(existsSync(`${dir}/server.json`)).toBe(false);
    } finally {
      taken.close();
    }
  });

  it('exits with the usage code for a request ingress refuses (an empty input, a malformed --traceparent), saying why', async () => {
    const dir = await tempDir();
    const empty = await runchart(['run', '', '--store', dir]);
    expect(empty.code).toBe(ExitCode.usage);
    expect(empty.out).toContain('the input is empty');
    const traced = await runchart(['run', 'what is 2+3?', '--traceparent', 'bogus', '--store', dir]);
    expect(traced.code).toBe(ExitCode.usage);
    expect(traced.out).toContain('trace (none: the request was refused before one was given)');
    expect(traced.out).toContain('traceparent: use the W3C form');
  });
});

describe('runchart in a pipe', { timeout: 120_000 }, () => {
  it('ends quietly when the reader goes away (runchart paths | head -1)', async () => {
    const started = startRunchart(['paths', '--check', '--verbose']);
    // The reader is gone before the first line: every write meets a closed pipe (EPIPE).
    started.child.stdout.destroy();
    const { code, err } = await started.exited;
    expect(err).not.toMatch(/EPIPE|Error|    at /);
    expect(code).toBe(0);
  });

  it('computes 2+3*4 on the demo model, with precedence', async () => {
    const dir = await tempDir();
    const { code, out } = await runchart(['run', 'what is 2+3*4?', '--store', dir]);
    expect(code).toBe(0);
    expect(out).toContain('[offline demo model] The answer is 14.');
  });
});

describe('runchart --inspect', { timeout: 120_000 }, () => {
  it('fails at once, naming the URL, when nothing listens there', async () => {
    const port = await closedPort();
    const dir = await tempDir();
    const { code, out, err } = await runchart(['run', 'what is 2+3?', '--inspect', `ws://127.0.0.1:${port}`, '--store', dir]);
    expect(code).toBe(ExitCode.usage);
    expect(err).toContain(`inspect: cannot connect to the inspector at ws://127.0.0.1:${port}`);
    expect(out).not.toContain('status:');
  });

  it('closes the local bridge after the run when stdout is not a terminal, saying how to keep it', async () => {
    const dir = await tempDir();
    const { code, out, err } = await runchart(['run', 'what is 2+3?', '--inspect', '--store', dir]);
    expect(code).toBe(0);
    expect(out).toContain('status: completed');
    expect(err).toContain('the inspector bridge closes now (stdout is not a terminal); pass --wait to keep');
  });

  it('keeps the bridge page open with --wait until SIGTERM; the page says it needs the internet and names runs show --html', async () => {
    const dir = await tempDir();
    const started = startRunchart(['run', 'what is 2+3?', '--inspect', '--wait', '--store', dir]);
    const [, page] = await started.waitFor(/open (http:\/\/localhost:\d+)/);
    await started.waitFor(/press Ctrl-C/);
    const html = await (await fetch(page!)).text();
    expect(html).toContain('it needs the internet');
    expect(html).toContain('runchart runs show &lt;runId&gt; --html run.html');
    started.child.kill('SIGTERM');
    const { code, out } = await started.exited;
    expect(code).toBe(0);
    expect(out).toContain('status: completed');
  });

  it('"serve --inspect" stops on SIGTERM', async () => {
    const dir = await tempDir();
    const started = startRunchart(['serve', '--port', '0', '--inspect', '--store', dir]);
    await started.waitFor(/serving on http:\/\/\S+/);
    started.child.kill('SIGTERM');
    const { code, signal } = await started.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
  });
});

describe('while "runchart serve" holds the store', { timeout: 300_000 }, () => {
  it('runs list, runs show (--html), paths work beside it, and approve / reject reach it over its HTTP API', async () => {
    const { writeFile } = await import('node:fs/promises');
    const { existsSync, statSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { generateApiKey } = await import('../../src/ingress/http.js');
    const { starterYaml } = await import('../../src/cli/starter.js');
    const dir = await tempDir();
    const store = join(dir, 'store');
    const { key, sha256 } = generateApiKey();
    const config = join(dir, 'runchart.yaml');
    await writeFile(config, `${starterYaml}\nhttp:\n  api_keys: [{ sha256: "${sha256}", tenant: acme, principal: ops }]\n`);
    const common = ['--config', config, '--store', store];
    const server = startRunchart(['serve', '--port', '0', ...common]);
    try {
      const [, url] = await server.waitFor(/serving on (http:\/\/\S+)/);
      const post = async (input: string) => {
        const response = await fetch(`${url}/v1/runs`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ input }) });
        return (await response.json()) as { runId: string; status: string; toolCalls: { callId: string }[] };
      };
      const done = await post('what is 2+3?');
      const first = await post('note: buy milk');
      const second = await post('note: buy bread');
      expect([done.status, first.status, second.status]).toEqual(['completed', 'awaiting_approval', 'awaiting_approval']);
      // The server's record of itself is for the store's owner only.
      expect(statSync(join(store, 'server.json')).mode & 0o777).toBe(0o600);

      const [listed, shown, page, paths] = await Promise.all([
        runchart(['runs', 'list', '--tenant', 'acme', ...common]),
        runchart(['runs', 'show', first.runId, '--tenant', 'acme', ...common]),
        runchart(['runs', 'show', done.runId, '--tenant', 'acme', '--html', join(dir, 'run.html'), ...common]),
        runchart(['paths', '--check', '--config', config]),
      ]);
      expect(listed.code, listed.err).toBe(0);
      expect(listed.out).toMatch(new RegExp(`${done.runId}\\s+completed`));
      expect(listed.out).toMatch(new RegExp(`${first.runId}\\s+awaiting_approval`));
      expect(shown.code).toBe(ExitCode.awaitingApproval);
      expect(shown.out).toContain('tool notes.save: require_approval (rule notes-need-approval)');
      expect(page.code, page.err).toBe(0);
      expect(readFileSync(join(dir, 'run.html'), 'utf8')).toContain(done.runId);
      expect(paths.code).toBe(0);
      expect(paths.out).toContain('coverage: ok');

      const callOf = (run: typeof first) => run.toolCalls.at(-1)!.callId;
      const refusedApprover = await runchart(['approve', first.runId, callOf(first), '--principal', 'intern', '--tenant', 'acme', ...common]);
      expect(refusedApprover.code).toBe(ExitCode.refused);
      expect(refusedApprover.err).toContain('rule default-deny');
      const approved = await runchart(['approve', first.runId, callOf(first), '--principal', 'admin', '--tenant', 'acme', ...common]);
      expect(approved.code, approved.err).toBe(0);
      expect(approved.out).toContain(`the store is held by runchart serve at ${url}`);
      expect(approved.out).toContain('[offline demo model] Saved your note.');
      const rejected = await runchart(['reject', second.runId, callOf(second), '--principal', 'admin', '--tenant', 'acme', '--reason', 'no bread', ...common]);
      expect(rejected.code, rejected.err).toBe(0);
      expect(rejected.out).toContain('The tool call did not work: rejected by the approver: no bread');
      const busy = await runchart(['run', 'what is 1+1?', ...common]);
      expect(busy.code).toBe(ExitCode.usage);
      expect(busy.err).toContain(`is held by runchart serve at ${url}`);
      const again = await runchart(['approve', first.runId, callOf(first), '--principal', 'admin', '--tenant', 'acme', ...common]);
      expect(again.code).toBe(ExitCode.usage);
      expect(again.err).toContain('no call is awaiting approval');
      // The runs finished in the server: its own view says so.
      const fetched = (await (await fetch(`${url}/v1/runs/${first.runId}`, { headers: { authorization: `Bearer ${key}` } })).json()) as { status: string };
      expect(fetched.status).toBe('completed');
    } finally {
      server.child.kill('SIGTERM');
    }
    const { code } = await server.exited;
    expect(code).toBe(0);
    expect(existsSync(join(store, 'server.json'))).toBe(false);
  });
});

describe('runchart viz', { timeout: 120_000 }, () => {
  it('writes only under --out, and touches a README only when asked, and only between its markers', async () => {
    const { writeFile, readdir } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { README_MARKERS } = await import('../../visualizations/generate.js');
    const { renderMermaid } = await import('../../visualizations/mermaid.js');
    const dir = await tempDir();
    const own = '# my project\n\n```mermaid\ngraph TD; mine-->yours\n```\n';
    await writeFile(join(dir, 'README.md'), own);

    const plain = await runchart(['viz', '--out', 'out'], { cwd: dir });
    expect(plain.code, plain.err).toBe(0);
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toBe(own);
    expect((await readdir(dir)).sort()).toEqual(['README.md', 'out']);
    expect((await readdir(join(dir, 'out'))).sort()).toEqual(['run-machine.mmd', 'run-machine.svg', 'run-paths.md', 'viewer']);

    const unmarked = await runchart(['viz', '--out', 'out', '--readme', 'README.md'], { cwd: dir });
    expect(unmarked.code).toBe(ExitCode.usage);
    expect(unmarked.err).toContain(`README.md has no marked diagram block; put the lines "${README_MARKERS.start}" and "${README_MARKERS.end}"`);
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toBe(own);

    const marked = `${own}\nThe chart:\n\n${README_MARKERS.start}\nold diagram\n${README_MARKERS.end}\n\nThe end.\n`;
    await writeFile(join(dir, 'README.md'), marked);
    const updated = await runchart(['viz', '--out', 'out', '--readme', 'README.md'], { cwd: dir });
    expect(updated.code, updated.err).toBe(0);
    expect(updated.out).toContain('updated the diagram in README.md');
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toBe(marked.replace('old diagram\n', `\`\`\`mermaid\n${renderMermaid()}\`\`\`\n`));

    // A README that is not there: refused before anything is written.
    const missing = await runchart(['viz', '--out', 'elsewhere', '--readme', 'MISSING.md'], { cwd: dir });
    expect(missing.code).toBe(ExitCode.usage);
    expect(missing.err).toContain('viz: there is no file at MISSING.md for --readme; name the README whose marked diagram block to update, or leave out --readme');
    expect(missing.err).not.toContain('    at ');
    expect((await readdir(dir)).sort()).toEqual(['README.md', 'out']);
  });
});
