import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultRules, loadConfig, parseConfig, RunchartConfig } from '../../src/config.js';
import { isRunchartError, type RunchartError } from '../../src/errors.js';

/** Runs `action`, expects it to throw a config-layer invalid-input RunchartError, and returns it. */
function configErrorOf(action: () => unknown): RunchartError {
  try {
    action();
  } catch (error) {
    expect(isRunchartError(error)).toBe(true);
    const failure = error as RunchartError;
    expect(failure.kind).toBe('invalid-input');
    expect(failure.layer).toBe('config');
    expect(failure.message).toMatch(/^config: /);
    return failure;
  }
  throw new Error('expected the config to be rejected');
}

async function rejectionOf(promise: Promise<unknown>): Promise<RunchartError> {
  try {
    await promise;
  } catch (error) {
    expect(isRunchartError(error)).toBe(true);
    const failure = error as RunchartError;
    expect(failure.kind).toBe('invalid-input');
    expect(failure.layer).toBe('config');
    return failure;
  }
  throw new Error('expected the config to be rejected');
}

describe('parseConfig defaults', () => {
  it('fills every documented default from an empty object', () => {
    const config = parseConfig({});
    expect(config.runtime.max_tool_hops).toBe(3);
    expect(config.runtime.require_trace_id).toBe(false);
    expect(config.runtime.enable_background_updates).toBe(true);
    expect(config.runtime.default_model).toBe('gpt-5.4');
    expect(config.policy.precheck_required).toBe(true);
    expect(config.telemetry.emit_structured_events).toBe(true);
    expect(config.telemetry.capture_content).toBe(false);
    expect(config.execution.gateway_required).toBe(true);
    expect(config.store.keep_finished_runs).toBe(1_000);
    expect(config.memory.keep_loaded_tenants).toBe(1_000);
  });

  it('treats undefined and null like an empty config', () => {
    expect(parseConfig(undefined)).toEqual(parseConfig({}));
    expect(parseConfig(null)).toEqual(parseConfig({}));
  });

  it('uses the default rules when none are given: runs may start, answer and remember', () => {
    const config = parseConfig({});
    expect(config.policy.rules).toEqual(defaultRules);
    const stages = config.policy.rules.flatMap((rule) => (Array.isArray(rule.stage) ? rule.stage : [rule.stage]));
    expect(new Set(stages)).toEqual(new Set(['precheck', 'output', 'memory.write']));
    expect(stages).not.toContain('tool');
    expect(config.policy.rules.every((rule) => rule.effect === 'allow')).toBe(true);
  });

  it('fills defaults inside a section that is only partly given', () => {
    const config = parseConfig({ runtime: { max_tool_hops: 1 }, telemetry: { capture_content: true } });
    expect(config.runtime.max_tool_hops).toBe(1);
    expect(config.runtime.require_trace_id).toBe(false);
    expect(config.runtime.default_model).toBe('gpt-5.4');
    expect(config.telemetry.capture_content).toBe(true);
    expect(config.telemetry.emit_structured_events).toBe(true);
    expect(config.policy.precheck_required).toBe(true);
  });

  it('keeps given values', () => {
    const config = parseConfig({
      runtime: { max_tool_hops: 0, require_trace_id: true, enable_background_updates: false, default_model: 'local-model' },
      policy: { precheck_required: false, rules: [{ id: 'only', stage: 'tool', effect: 'deny', capabilities: ['*'] }] },
      telemetry: { emit_structured_events: false, capture_content: true },
      execution: { gateway_required: true },
    });
    expect(config.runtime).toMatchObject({ max_tool_hops: 0, require_trace_id: true, enable_background_updates: false, default_model: 'local-model' });
    expect(config.policy.precheck_required).toBe(false);
    expect(config.policy.rules).toEqual([{ id: 'only', stage: 'tool', effect: 'deny', capabilities: ['*'] }]);
    expect(config.telemetry).toMatchObject({ emit_structured_events: false, capture_content: true });
    expect(config.execution.gateway_required).toBe(true);
  });

  it('accepts an explicitly empty rule list (everything is denied by default)', () => {
    expect(parseConfig({ policy: { rules: [] } }).policy.rules).toEqual([]);
  });

  it('is the same as parsing with the exported schema', () => {
    expect(parseConfig({ runtime: { max_tool_hops: 2 } })).toEqual(RunchartConfig.parse({ runtime: { max_tool_hops: 2 } }));
  });

  it('does not share mutable default state between parsed configs', () => {
    const first = parseConfig({});
    const second = parseConfig({});
    first.runtime.max_tool_hops = 42;
    expect(second.runtime.max_tool_hops).toBe(3);
    expect(parseConfig({}).runtime.max_tool_hops).toBe(3);
    expect(first.policy.rules).not.toBe(second.policy.rules);
    expect(first.policy.rules[0]).not.toBe(defaultRules[0]);
  });
});

describe('parseConfig errors', () => {
  it('rejects an unknown top-level key, naming it', () => {
    const error = configErrorOf(() => parseConfig({ runtimes: {} }));
    expect(error.message).toContain('runtimes');
  });

  it('rejects an unknown nested key, naming its section and the key', () => {
    const error = configErrorOf(() => parseConfig({ runtime: { max_tool_hop: 3 } }));
    expect(error.message).toMatch(/runtime\b.*max_tool_hop\b/);
    expect(error.message).toContain('runtime.max_tool_hop');
  });

  it('rejects unknown keys in every section', () => {
    for (const section of ['runtime', 'policy', 'telemetry', 'execution', 'limits', 'memory', 'store']) {
      const error = configErrorOf(() => parseConfig({ [section]: { surprise_key: true } }));
      expect(error.message).toContain(section);
      expect(error.message).toContain('surprise_key');
    }
  });

  it('rejects an unknown key inside a policy rule, naming the rule position', () => {
    const error = configErrorOf(() => parseConfig({ policy: { rules: [{ id: 'r', stage: 'tool', effect: 'allow', capability: ['x'] }] } }));
    expect(error.message).toContain('policy.rules.0');
    expect(error.message).toContain('capability');
  });

  it('names the path of a mistyped value', () => {
    expect(configErrorOf(() => parseConfig({ runtime: { max_tool_hops: 'three' } })).message).toContain('runtime.max_tool_hops');
    expect(configErrorOf(() => parseConfig({ runtime: { require_trace_id: 'yes' } })).message).toContain('runtime.require_trace_id');
    expect(configErrorOf(() => parseConfig({ telemetry: { capture_content: 1 } })).message).toContain('telemetry.capture_content');
    expect(configErrorOf(() => parseConfig({ policy: { rules: [{ id: 'r', stage: 'tool', effect: 'permit' }] } })).message).toContain(
      'policy.rules.0.effect',
    );
    expect(configErrorOf(() => parseConfig({ policy: { rules: [{ id: 'r', stage: 'anywhere', effect: 'allow' }] } })).message).toContain(
      'policy.rules.0.stage',
    );
  });

  it('rejects out-of-range numbers', () => {
    expect(configErrorOf(() => parseConfig({ store: { keep_finished_runs: -5 } })).message).toContain('store.keep_finished_runs');
    expect(configErrorOf(() => parseConfig({ memory: { keep_loaded_tenants: 0 } })).message).toContain('memory.keep_loaded_tenants');
    expect(configErrorOf(() => parseConfig({ runtime: { max_tool_hops: -1 } })).message).toContain('runtime.max_tool_hops');
    expect(configErrorOf(() => parseConfig({ runtime: { max_tool_hops: 1.5 } })).message).toContain('runtime.max_tool_hops');
  });

  it('rejects a section that is not an object', () => {
    expect(configErrorOf(() => parseConfig({ runtime: 3 })).message).toContain('runtime');
    configErrorOf(() => parseConfig('runtime: {}'));
    configErrorOf(() => parseConfig([]));
  });

  it('rejects duplicate rule ids, naming the id', () => {
    const error = configErrorOf(() =>
      parseConfig({
        policy: {
          rules: [
            { id: 'same', stage: 'tool', effect: 'allow', capabilities: ['math.*'] },
            { id: 'other', stage: 'precheck', effect: 'allow' },
            { id: 'same', stage: 'tool', effect: 'deny', capabilities: ['math.*'] },
          ],
        },
      }),
    );
    expect(error.message).toContain('"same"');
    expect(error.message).toContain('policy.rules.2.id');
  });

  it('rejects a rule without an id or with an empty one', () => {
    expect(configErrorOf(() => parseConfig({ policy: { rules: [{ stage: 'tool', effect: 'allow' }] } })).message).toContain('policy.rules.0.id');
    expect(configErrorOf(() => parseConfig({ policy: { rules: [{ id: '', stage: 'tool', effect: 'allow' }] } })).message).toContain(
      'policy.rules.0.id',
    );
  });

  it('rejects empty glob lists and empty stage lists in a rule', () => {
    expect(configErrorOf(() => parseConfig({ policy: { rules: [{ id: 'r', stage: [], effect: 'allow' }] } })).message).toContain('policy.rules.0.stage');
    expect(configErrorOf(() => parseConfig({ policy: { rules: [{ id: 'r', stage: 'tool', effect: 'allow', capabilities: [] }] } })).message).toContain(
      'policy.rules.0.capabilities',
    );
  });

  it('rejects execution.gateway_required: false', () => {
    const error = configErrorOf(() => parseConfig({ execution: { gateway_required: false } }));
    expect(error.message).toContain('execution.gateway_required');
  });

  it('lists the allowed values of a bad enum: a bad stage says which stages exist, with the nearest one', () => {
    const stage = configErrorOf(() => parseConfig({ policy: { rules: [{ id: 'r', stage: 'tools', effect: 'allow' }] } })).message;
    expect(stage).toContain('policy.rules.0.stage: "tools" is not one of "precheck", "tool", "approval", "output", "memory.write"; did you mean "tool"?');
    expect(stage).not.toContain('Invalid input');
    // In a list of stages, the bad entry is named by its position.
    expect(configErrorOf(() => parseConfig({ policy: { rules: [{ id: 'r', stage: ['tool', 'anywhere'], effect: 'allow' }] } })).message).toContain(
      'policy.rules.0.stage.1: "anywhere" is not one of "precheck", "tool"',
    );
    expect(configErrorOf(() => parseConfig({ store: { kind: 'postgress' } })).message).toContain('store.kind: "postgress" is not one of "lowdb", "memory", "postgres"; did you mean "postgres"?');
    expect(configErrorOf(() => parseConfig({ policy: { rules: [{ id: 'r', stage: 'tool', effect: 'alow' }] } })).message).toContain('did you mean "allow"?');
  });

  it('suggests the nearest key for a mistyped one and lists the keys its section takes', () => {
    const nested = configErrorOf(() => parseConfig({ runtime: { max_tool_hop: 2 } })).message;
    expect(nested).toContain('runtime.max_tool_hop: unknown key; did you mean "max_tool_hops"?');
    expect(nested).toContain('runtime takes max_tool_hops, max_tool_calls_per_step');
    expect(configErrorOf(() => parseConfig({ telemetri: {} })).message).toContain('telemetri: unknown key; did you mean "telemetry"?');
    expect(configErrorOf(() => parseConfig({ policy: { rules: [{ id: 'r', stage: 'tool', effect: 'allow', capabilites: ['x'] }] } })).message).toContain(
      'policy.rules.0.capabilites: unknown key; did you mean "capabilities"?',
    );
    // Nothing near: no guess, but still the keys to choose from.
    const far = configErrorOf(() => parseConfig({ store: { zzzzzzzz: 1 } })).message;
    expect(far).toContain('store.zzzzzzzz: unknown key; remove it or check its spelling (store takes kind, dir, keep_finished_runs, url, schema, lease_ms, max_connections)');
  });

  it('keeps 200 run recordings unless telemetry.keep_recordings says otherwise', () => {
    expect(parseConfig({}).telemetry.keep_recordings).toBe(200);
    expect(parseConfig({ telemetry: { keep_recordings: 5 } }).telemetry.keep_recordings).toBe(5);
    expect(configErrorOf(() => parseConfig({ telemetry: { keep_recordings: 0 } })).message).toContain('telemetry.keep_recordings');
  });

  it('names the source in the message and keeps the zod error as the cause', () => {
    const error = configErrorOf(() => parseConfig({ runtime: { max_tool_hops: 'x' } }, 'my-file.yaml'));
    expect(error.message).toContain('my-file.yaml');
    expect(error.cause).toBeDefined();
  });
});

describe('loadConfig', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'runchart-config-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads and validates a YAML file, filling defaults', async () => {
    const path = join(dir, 'runchart.yaml');
    await writeFile(
      path,
      [
        'runtime:',
        '  max_tool_hops: 2',
        '  require_trace_id: true',
        'policy:',
        '  rules:',
        '    - id: refunds-need-approval',
        '      stage: tool',
        '      effect: require_approval',
        '      capabilities: ["payments.*"]',
        '      tenants: ["*"]',
        '    - id: allow-runs',
        '      stage: [precheck, output]',
        '      effect: allow',
        'telemetry:',
        '  capture_content: true',
        '',
      ].join('\n'),
    );
    const config = await loadConfig(path);
    expect(config.runtime.max_tool_hops).toBe(2);
    expect(config.runtime.require_trace_id).toBe(true);
    expect(config.runtime.default_model).toBe('gpt-5.4');
    expect(config.policy.rules).toEqual([
      { id: 'refunds-need-approval', stage: 'tool', effect: 'require_approval', capabilities: ['payments.*'], tenants: ['*'] },
      { id: 'allow-runs', stage: ['precheck', 'output'], effect: 'allow' },
    ]);
    expect(config.telemetry.capture_content).toBe(true);
    expect(config.execution.gateway_required).toBe(true);
  });

  it('reads an empty file as the default config', async () => {
    const path = join(dir, 'empty.yaml');
    await writeFile(path, '');
    expect(await loadConfig(path)).toEqual(parseConfig({}));
  });

  it('rejects a missing file with a message naming the path', async () => {
    const path = join(dir, 'does-not-exist.yaml');
    const error = await rejectionOf(loadConfig(path));
    expect(error.message).toContain(path);
    expect(error.message).toContain('ENOENT');
  });

  it('rejects a file that is not valid YAML, naming the path', async () => {
    const path = join(dir, 'broken.yaml');
    await writeFile(path, 'runtime:\n  max_tool_hops: [1, 2\n  other: {\n');
    const error = await rejectionOf(loadConfig(path));
    expect(error.message).toContain(path);
    expect(error.message).toContain('not valid YAML');
  });

  it('rejects a valid YAML file with an unknown key, naming the file and the key', async () => {
    const path = join(dir, 'unknown.yaml');
    await writeFile(path, 'runtime:\n  max_tool_hop: 3\n');
    const error = await rejectionOf(loadConfig(path));
    expect(error.message).toContain(path);
    expect(error.message).toContain('max_tool_hop');
  });

  it('rejects gateway_required: false from a file', async () => {
    const path = join(dir, 'no-gateway.yaml');
    await writeFile(path, 'execution:\n  gateway_required: false\n');
    const error = await rejectionOf(loadConfig(path));
    expect(error.message).toContain('execution.gateway_required');
  });

  it('rejects duplicate rule ids from a file', async () => {
    const path = join(dir, 'duplicate.yaml');
    await writeFile(path, 'policy:\n  rules:\n    - { id: twice, stage: tool, effect: allow }\n    - { id: twice, stage: output, effect: allow }\n');
    const error = await rejectionOf(loadConfig(path));
    expect(error.message).toContain('"twice"');
  });
});
