import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/main.js';
import { cli } from '../support/cli-inline.js';
import { tempDir } from '../support/temp.js';


afterEach(() => {
  process.exitCode = undefined;
});

describe('runchart run', () => {
  it('answers arithmetic on the offline demo model through the math capability, showing each state', async () => {
    const store = await tempDir();
    const { out, code } = await cli('run', 'what is 2+3?', '--tenant', 'acme', '--principal', 'user-7', '--store', store);
    expect(code).toBe(ExitCode.ok);
    expect(out).toContain('offline demo model');
    expect(out).toMatch(/→ policy\n {2}precheck: allow \(rule allow-runs\)/);
    expect(out).toContain('tool math.add: allow (rule allow-math)');
    expect(out).toContain('tool math.add [c0.0]: ok');
    expect(out).toContain('status: completed');
    expect(out).toContain('[offline demo model] The answer is 5.');
  });

  it('prints only the RunResult with --json', async () => {
    const { out, code } = await cli('run', 'what is 6*7?', '--json', '--store', await tempDir());
    expect(code).toBe(0);
    const result = JSON.parse(out);
    expect(result).toMatchObject({ status: 'completed', tenantId: 'local', principalId: 'cli', usage: { modelCalls: 2, toolCalls: 1 } });
    expect(result.toolCalls[0]).toMatchObject({ capability: 'math.multiply', outcome: { status: 'ok', output: 42 } });
  });

  it('exits with the denied code when the config denies the run, and reads --config', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'runchart-cli-'));
    const path = join(directory, 'runchart.yaml');
    await writeFile(path, 'policy:\n  rules:\n    - id: no-runs\n      stage: precheck\n      effect: deny\n');
    const { out, code } = await cli('run', 'hello', '--config', path, '--store', directory);
    expect(code).toBe(ExitCode.denied);
    expect(out).toContain('precheck: deny (rule no-runs)');
    expect(out).toContain('status: denied');
  });

  it('names the bad key of a config file and exits with the usage code', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'runchart-cli-'));
    const path = join(directory, 'runchart.yaml');
    await writeFile(path, 'runtime:\n  max_tool_hop: 2\n');
    const { err, code } = await cli('run', 'hello', '--config', path);
    expect(code).toBe(ExitCode.usage);
    expect(err).toContain('runtime.max_tool_hop');
  });

  it('refuses a worker, or a server without one, on a store that one process holds, saying what to use', async () => {
    const store = await tempDir();
    const worker = await cli('worker');
    expect(worker.code).toBe(ExitCode.usage);
    expect(worker.err).toContain('a worker needs store.kind: postgres');
    const server = await cli('serve', '--no-worker', '--store', store);
    expect(server.code).toBe(ExitCode.usage);
    expect(server.err).toContain('--no-worker: the lowdb store runs its runs in the process that serves them; use store.kind: postgres');
    expect((await cli('worker', '--concurrency', '0')).code).toBe(ExitCode.usage);
  });

  it('loads the capabilities of execution.capability_modules, and names a module that exports none', async () => {
    const directory = await tempDir();
    await writeFile(join(directory, 'tools.mjs'), 'export const capabilities = [];\n');
    await writeFile(join(directory, 'empty.mjs'), 'export const nothing = 1;\n');
    const config = (module: string) => `execution:\n  capability_modules: [${module}]\nstore:\n  dir: ${join(directory, 'store')}\n`;
    await writeFile(join(directory, 'good.yaml'), config('./tools.mjs'));
    await writeFile(join(directory, 'bad.yaml'), config('./empty.mjs'));
    await writeFile(join(directory, 'missing.yaml'), config('./nowhere.mjs'));
    expect((await cli('run', 'what is 2+3?', '--config', join(directory, 'good.yaml'))).code).toBe(ExitCode.ok);
    const bad = await cli('run', 'hi', '--config', join(directory, 'bad.yaml'));
    expect(bad.code).toBe(ExitCode.usage);
    expect(bad.err).toContain('execution.capability_modules: ./empty.mjs exports no capabilities');
    const missing = await cli('run', 'hi', '--config', join(directory, 'missing.yaml'));
    expect(missing.code).toBe(ExitCode.usage);
    expect(missing.err).toMatch(/execution\.capability_modules: \.\/nowhere\.mjs .* could not be loaded/);
  });

  it('keeps telemetry.keep_recordings recordings of its runs for the viewer, the oldest removed', async () => {
    const store = await tempDir();
    const path = join(store, 'runchart.yaml');
    await writeFile(path, 'policy:\n  rules:\n    - { id: allow-runs, stage: [precheck, output, memory.write], effect: allow }\n    - { id: allow-math, stage: tool, effect: allow, capabilities: ["math.*"] }\ntelemetry:\n  keep_recordings: 1\n');
    await cli('run', 'what is 1+1?', '--config', path, '--store', store, '--json');
    const second = JSON.parse((await cli('run', 'what is 2+2?', '--config', path, '--store', store, '--json')).out) as { runId: string };
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(join(store, 'inspect'))).toEqual([`${second.runId}.jsonl`]);
  });

  it('reports a missing argument as a usage error', async () => {
    const { err, code } = await cli('run');
    expect(code).toBe(ExitCode.usage);
    expect(err).toContain("missing required argument 'input'");
    expect(err).toContain('(run "runchart run --help" for usage)');
    const nested = await cli('runs', 'show');
    expect(nested.code).toBe(ExitCode.usage);
    expect(nested.err).toContain('(run "runchart runs show --help" for usage)');
    expect((await cli('bogus')).err).toContain('(run "runchart --help" for usage)');
  });
});

describe('approving from a second command', () => {
  it('parks a guarded call, prints how to approve it, and a later "runchart approve" finishes the run', async () => {
    const store = await tempDir();
    const config = join(store, 'runchart.yaml');
    await writeFile(
      config,
      [
        'policy:',
        '  rules:',
        '    - { id: allow-runs, stage: [precheck, output, memory.write], effect: allow }',
        '    - { id: math-needs-approval, stage: tool, effect: require_approval, capabilities: ["math.*"] }',
        '    - { id: managers-approve, stage: approval, effect: allow, principals: ["manager-*"] }',
        '',
      ].join('\n'),
    );
    const parked = await cli('run', 'what is 2+3?', '--config', config, '--store', store);
    expect(parked.code).toBe(ExitCode.awaitingApproval);
    const command = /approve with: {2}(runchart approve (\S+) (\S+) .*)/.exec(parked.out)!;
    expect(command).not.toBeNull();
    const [, , runId, callId] = command;

    // A refused approver has an exit code of its own (not the usage code), and the call stays parked.
    const refused = await cli('approve', runId!, callId!, '--principal', 'intern', '--config', config, '--store', store);
    expect(refused.code).toBe(ExitCode.refused);
    expect(refused.err).toContain('rule default-deny');
    expect((await cli('runs', 'list', '--store', store, '--config', config)).out).toMatch(new RegExp(`${runId}\\s+awaiting_approval`));

    const approved = await cli('approve', runId!, callId!, '--principal', 'manager-1', '--config', config, '--store', store);
    expect(approved.code).toBe(ExitCode.ok);
    expect(approved.out).toContain('[offline demo model] The answer is 5.');

    const listed = await cli('runs', 'list', '--store', store, '--config', config);
    expect(listed.out).toMatch(new RegExp(`${runId}\\s+completed`));
    const shown = await cli('runs', 'show', runId!, '--store', store, '--config', config);
    expect(shown.out).toContain('approval math.add: allow (rule managers-approve, by manager-1)');
    const page = join(store, 'viewer.html');
    const html = await cli('runs', 'show', runId!, '--html', page, '--store', store, '--config', config);
    expect(html.out).toContain(`wrote ${page}`);
    const written = readFileSync(page, 'utf8');
    expect(written).toContain('data-state="toolExecution.awaitingApproval"');
    expect(written).toContain(runId!);
    const missing = await cli('runs', 'show', 'nope', '--store', store, '--config', config);
    expect(missing.code).toBe(ExitCode.usage);
    expect(missing.err).toContain('runchart runs list');
  });
});

describe('runchart paths', () => {
  it('lists the paths, and with --check prints only the verdict (the paths too with --verbose)', async () => {
    const listed = await cli('paths', '--max-tool-hops', '1');
    expect(listed.code).toBe(0);
    expect(listed.out).toContain('ingress → policy → denied');
    const checked = await cli('paths', '--check', '--max-tool-hops', '1');
    expect(checked.code).toBe(0);
    expect(checked.out).not.toContain('ingress → policy → denied');
    expect(checked.out.trim().split('\n')).toEqual([
      expect.stringMatching(/^\d+ paths \(\d+ distinct state sequences\) at max_tool_hops 1$/),
      expect.stringMatching(/^coverage: ok — every path holds every invariant \(\d+ paths checked\)$/),
      '(--verbose lists every path)',
    ]);
    const verbose = await cli('paths', '--check', '--verbose', '--max-tool-hops', '1');
    expect(verbose.out).toContain('ingress → policy → denied');
    expect(verbose.out).toContain('coverage: ok');
  });

  it('proves a chart of your own with --machine, and names the rule a mistake in it breaks', async () => {
    const dir = await tempDir();
    const source = (path: string) => JSON.stringify(join(import.meta.dirname, '../..', path));
    // A warm-up state that recalls memory between ingress and the precheck: an effect before the precheck.
    const chart = `
import { runMachine } from ${source('machines/run/machine.ts')};
import { runSetup, traced } from ${source('machines/run/setup.ts')};
const states = { ...runMachine.config.states };
states.ingress = { ...states.ingress, invoke: { ...states.ingress.invoke, onDone: { ...states.ingress.invoke.onDone, target: 'warmup' } } };
states.warmup = { ...traced('warmup'), invoke: { id: 'warmMemory', src: 'recallMemory', input: ({ context }) => ({ tenantId: context.accepted.tenantId, principalId: context.accepted.principalId, query: 'x', limit: 1 }), onDone: 'policy', onError: 'policy' } };
export default runSetup.createMachine({ ...runMachine.config, states });
`;
    await writeFile(join(dir, 'bad.mjs'), chart);
    const bad = await cli('paths', '--check', '--max-tool-hops', '1', '--machine', join(dir, 'bad.mjs'));
    expect(bad.code).toBe(ExitCode.violations);
    expect(bad.out).toContain('precheck-before-effects');
    expect(bad.out).toContain('memory recall (warmMemory)');
    const missing = await cli('paths', '--check', '--machine', join(dir, 'nowhere.mjs'));
    expect(missing.code).toBe(ExitCode.usage);
    expect(missing.err).toContain('nowhere.mjs could not be loaded');
  });

  it('prints JSON with --json and rejects a bad hop count', async () => {
    const { out } = await cli('paths', '--json', '--check', '--max-tool-hops', '0');
    const parsed = JSON.parse(out);
    expect(parsed.report).toMatchObject({ ok: true, violations: [] });
    expect(parsed.paths.every((path: { states: string[] }) => path.states[0] === 'ingress')).toBe(true);
    const bad = await cli('paths', '--max-tool-hops', 'many');
    expect(bad.code).toBe(ExitCode.usage);
    expect(bad.err).toContain('whole number');
  });
});

describe('runchart init, key and the starter config', () => {
  it('writes a starter runchart.yaml that refuses to be overwritten, and whose guarded notes need an admin', async () => {
    const directory = await tempDir();
    const previous = process.cwd();
    process.chdir(directory);
    try {
      const init = await cli('init');
      expect(init.code).toBe(0);
      expect(readFileSync(join(directory, 'runchart.yaml'), 'utf8')).toContain('id: notes-need-approval');
      const again = await cli('init');
      expect(again.code).toBe(ExitCode.usage);
      expect(again.err).toContain('--force');

      const parked = await cli('run', 'note: buy milk', '--principal', 'alice');
      expect(parked.code).toBe(ExitCode.awaitingApproval);
      expect(parked.out).toContain('config from runchart.yaml; store .runchart');
      expect(parked.out).toContain('tool notes.save: require_approval (rule notes-need-approval)');
      const [, runId, callId] = /approve with: {2}runchart approve (\S+) (\S+)/.exec(parked.out)!;
      expect(existsSync(join(directory, '.runchart', 'notes.jsonl'))).toBe(false);

      const approved = await cli('approve', runId!, callId!, '--principal', 'admin');
      expect(approved.code).toBe(0);
      expect(approved.out).toContain('[offline demo model] Saved your note.');
      const notes = readFileSync(join(directory, '.runchart', 'notes.jsonl'), 'utf8').trim().split('\n');
      expect(notes).toHaveLength(1);
      expect(JSON.parse(notes[0]!)).toMatchObject({ key: `${runId}:${callId}`, principalId: 'alice', text: 'buy milk' });
    } finally {
      process.chdir(previous);
    }
  });

  it('makes an API key and prints only its hash for the config', async () => {
    const { out, code } = await cli('key', '--tenant', 'acme', '--principal', 'ops');
    expect(code).toBe(0);
    const key = /key \(give it to the caller; it is not stored anywhere\): (rc_\S+)/.exec(out)![1]!;
    const sha = /sha256: "([0-9a-f]{64})", tenant: acme, principal: ops/.exec(out)![1]!;
    expect(createHash('sha256').update(key).digest('hex')).toBe(sha);
  });

  it('prints help for every command', async () => {
    for (const command of ['run', 'paths', 'viz', 'init', 'key', 'approve', 'reject', 'runs', 'serve']) {
      const { out } = await cli(command, '--help');
      expect(out, command).toContain(`Usage: runchart ${command}`);
    }
  });
});

describe('runchart run with a real model', () => {
  it('uses the OpenAI-compatible server named by OPENAI_BASE_URL, with the pinned capabilities as tools', async () => {
    const { startOpenAIServer } = await import('../support/openai-server.js');
    const server = await startOpenAIServer([
      { answer: { toolCalls: [{ id: 'call_1', name: 'math_add', arguments: '{"a":2,"b":3}' }] } },
      { answer: { text: 'It is 5.' } },
    ]);
    const saved = { key: process.env.OPENAI_API_KEY, url: process.env.OPENAI_BASE_URL, model: process.env.OPENAI_MODEL };
    process.env.OPENAI_API_KEY = 'test-key';
    process.env.OPENAI_BASE_URL = server.url;
    process.env.OPENAI_MODEL = 'local-model';
    try {
      const { out, code } = await cli('run', 'what is 2+3?', '--store', await tempDir());
      expect(code).toBe(0);
      expect(out).toContain(`model: local-model at ${server.url}`);
      expect(out).toContain('tool math.add [c0.0]: ok');
      expect(out).toContain('It is 5.');
      expect(server.requests[0]!.body.model).toBe('local-model');
      expect(server.requests[0]!.body.tools?.map((tool) => tool.function.name)).toContain('math_add');
      expect(server.requests[1]!.body.messages.at(-1)).toMatchObject({ role: 'tool', tool_call_id: 'call_1', content: '5' });
      server.verify();
    } finally {
      for (const [name, value] of [['OPENAI_API_KEY', saved.key], ['OPENAI_BASE_URL', saved.url], ['OPENAI_MODEL', saved.model]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      await server.close();
    }
  });
});
