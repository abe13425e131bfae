import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCapability, type CapabilityDefinition } from '../../src/catalog/capability.js';
import { PinnedCapability, type Capability } from '../../src/catalog/contract.js';
import { compareVersions, createCatalog, pinCapabilities, toolNameFor } from '../../src/catalog/registry.js';
import { isRunchartError, type RunchartError } from '../../src/errors.js';

const AddInput = z.object({ a: z.number(), b: z.number() });

function definition(overrides: Partial<CapabilityDefinition<unknown, unknown>> = {}): CapabilityDefinition<unknown, unknown> {
  return {
    name: 'math.add',
    version: '1.0.0',
    description: 'Add two numbers',
    input: AddInput as z.ZodType<unknown>,
    output: z.number() as z.ZodType<unknown>,
    effects: 'read',
    handler: async (args) => {
      const { a, b } = args as { a: number; b: number };
      return a + b;
    },
    ...overrides,
  };
}

function capability(name: string, version = '1.0.0', description = `does ${name}`): Capability {
  return defineCapability({ ...definition(), name, version, description }) as Capability;
}

function catalogErrorOf(action: () => unknown): RunchartError {
  try {
    action();
  } catch (error) {
    expect(isRunchartError(error)).toBe(true);
    const failure = error as RunchartError;
    expect(failure.kind).toBe('invalid-input');
    expect(failure.layer).toBe('catalog');
    expect(failure.message).toMatch(/^catalog: /);
    return failure;
  }
  throw new Error('expected a catalog error');
}

describe('defineCapability', () => {
  it('returns a frozen capability with the documented defaults', () => {
    const add = defineCapability(definition());
    expect(add.name).toBe('math.add');
    expect(add.version).toBe('1.0.0');
    expect(add.description).toBe('Add two numbers');
    expect(add.effects).toBe('read');
    expect(add.timeoutMs).toBe(30_000);
    expect(add.retries).toBe(0);
    expect(add.retryBackoffMs).toBe(100);
    expect(add.sensitive).toEqual([]);
    expect(Object.isFrozen(add)).toBe(true);
    expect(Object.isFrozen(add.sensitive)).toBe(true);
  });

  it('keeps given execution settings', () => {
    const add = defineCapability(definition({ timeoutMs: 500, retries: 2, retryBackoffMs: 0, sensitive: ['a'], effects: 'external' }));
    expect(add).toMatchObject({ timeoutMs: 500, retries: 2, retryBackoffMs: 0, effects: 'external' });
    expect(add.sensitive).toEqual(['a']);
  });

  it('wraps the handler so it always returns a promise, with the arguments and context', async () => {
    let seen: unknown;
    const echo = defineCapability({
      ...definition(),
      output: undefined,
      handler: (args, context) => {
        seen = context.idempotencyKey;
        return args;
      },
    });
    const context = {
      signal: new AbortController().signal,
      idempotencyKey: 'run-1:call-1',
      runId: 'run-1',
      callId: 'call-1',
      tenantId: 'acme',
      principalId: 'user-7',
    };
    const result = echo.handler({ a: 1, b: 2 }, context);
    expect(result).toBeInstanceOf(Promise);
    expect(await result).toEqual({ a: 1, b: 2 });
    expect(seen).toBe('run-1:call-1');
  });

  it('turns a synchronous throw in the handler into a rejection', async () => {
    const broken = defineCapability({
      ...definition(),
      handler: () => {
        throw new Error('boom');
      },
    });
    const context = { signal: new AbortController().signal, idempotencyKey: 'k', runId: 'r', callId: 'c', tenantId: 't', principalId: 'p' };
    await expect(broken.handler({ a: 1, b: 2 }, context)).rejects.toThrow('boom');
  });

  it('uses z.unknown() as the output schema when none is given', () => {
    const free = defineCapability(definition({ output: undefined }));
    expect(free.output.safeParse({ anything: [1, 'two'] }).success).toBe(true);
  });

  it.each([
    ['', 'name'],
    ['1math', 'name'],
    ['math.', 'name'],
    ['.add', 'name'],
    ['math..add', 'name'],
    ['math add', 'name'],
    ['math/add', 'name'],
  ])('rejects the name %j, naming the field', (name, field) => {
    const error = catalogErrorOf(() => defineCapability(definition({ name })));
    expect(error.message).toContain(`${field}:`);
  });

  it('accepts names with dots, digits, "_" and "-"', () => {
    for (const name of ['math', 'math.add', 'a_b', 'payments.refund-v2', 'Weather.today.hourly_3']) {
      expect(defineCapability(definition({ name })).name).toBe(name);
    }
  });

  it.each(['1.0', '1', 'v1.0.0', '1.0.0.0', 'latest', '', '1.0.x'])('rejects the version %j, naming the field', (version) => {
    const error = catalogErrorOf(() => defineCapability(definition({ version })));
    expect(error.message).toContain('version:');
    expect(error.message).toContain('"math.add"');
  });

  it('accepts semantic versions with pre-release and build tags', () => {
    for (const version of ['0.0.1', '1.2.3', '10.20.30', '1.0.0-rc.1', '1.0.0+build.5']) {
      expect(defineCapability(definition({ version })).version).toBe(version);
    }
  });

  it('rejects a missing or empty description, naming the field', () => {
    expect(catalogErrorOf(() => defineCapability(definition({ description: '' }))).message).toContain('description:');
    const { description: _omitted, ...withoutDescription } = definition();
    expect(catalogErrorOf(() => defineCapability(withoutDescription as CapabilityDefinition<unknown, unknown>)).message).toContain('description');
  });

  it('rejects an input that is not a zod schema, naming the field', () => {
    const error = catalogErrorOf(() => defineCapability(definition({ input: { type: 'object' } as unknown as z.ZodType<unknown> })));
    expect(error.message).toContain('input:');
  });

  it('rejects an output that is not a zod schema, naming the field', () => {
    const error = catalogErrorOf(() => defineCapability(definition({ output: 'number' as unknown as z.ZodType<unknown> })));
    expect(error.message).toContain('output:');
  });

  it('rejects a handler that is not a function, naming the field', () => {
    const error = catalogErrorOf(() => defineCapability(definition({ handler: 'nope' as unknown as () => Promise<unknown> })));
    expect(error.message).toContain('handler:');
  });

  it('rejects unknown effects and bad settings, naming the field', () => {
    expect(catalogErrorOf(() => defineCapability(definition({ effects: 'delete' as 'read' }))).message).toContain('effects:');
    expect(catalogErrorOf(() => defineCapability(definition({ timeoutMs: 0 }))).message).toContain('timeoutMs:');
    expect(catalogErrorOf(() => defineCapability(definition({ retries: -1 }))).message).toContain('retries:');
    expect(catalogErrorOf(() => defineCapability(definition({ retries: 1.5 }))).message).toContain('retries:');
  });

  it('rejects unknown definition keys', () => {
    const error = catalogErrorOf(() => defineCapability({ ...definition(), timeout: 5 } as CapabilityDefinition<unknown, unknown>));
    expect(error.message).toContain('timeout');
  });

  it('rejects an input schema that is not an object', () => {
    for (const input of [z.number(), z.string(), z.array(z.number()), z.union([z.string(), z.number()])]) {
      const error = catalogErrorOf(() => defineCapability(definition({ input: input as z.ZodType<unknown> })));
      expect(error.message).toContain('"math.add"');
      expect(error.message).toContain('input');
    }
  });

  it('derives the parameters JSON Schema from the zod input as the model sends it', () => {
    const search = defineCapability(
      definition({
        name: 'docs.search',
        input: z.object({
          query: z.string().describe('what to look for'),
          limit: z.number().int().default(5),
          exact: z.boolean().optional(),
        }) as z.ZodType<unknown>,
      }),
    );
    const parameters = search.parameters;
    expect(parameters).not.toHaveProperty('$schema');
    expect(parameters.type).toBe('object');
    expect(Object.keys(parameters.properties as object).sort()).toEqual(['exact', 'limit', 'query']);
    // io 'input': a field with a default is optional for the caller.
    expect(parameters.required).toEqual(['query']);
    expect((parameters.properties as Record<string, Record<string, unknown>>).limit!.default).toBe(5);
    expect((parameters.properties as Record<string, Record<string, unknown>>).query!.description).toBe('what to look for');
  });

  it('keeps the parameters as plain JSON', () => {
    const add = defineCapability(definition());
    expect(JSON.parse(JSON.stringify(add.parameters))).toEqual(add.parameters);
    expect(add.parameters).toMatchObject({ type: 'object', required: ['a', 'b'] });
  });

  it('uses given parameters as they are (tools that bring their own schema)', () => {
    const parameters = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] };
    expect(defineCapability(definition({ parameters })).parameters).toEqual(parameters);
  });
});

describe('createCatalog', () => {
  it('finds capabilities by name and version', () => {
    const v1 = capability('math.add', '1.0.0');
    const v2 = capability('math.add', '2.0.0');
    const catalog = createCatalog([v1, v2]);
    expect(catalog.get('math.add', '1.0.0')).toBe(v1);
    expect(catalog.get('math.add', '2.0.0')).toBe(v2);
    expect(catalog.get('math.add', '3.0.0')).toBeUndefined();
    expect(catalog.get('math.sub', '1.0.0')).toBeUndefined();
    expect(catalog.list()).toEqual([v1, v2]);
  });

  it('throws when the same name@version is defined twice, naming it', () => {
    const error = catalogErrorOf(() => createCatalog([capability('math.add', '1.0.0'), capability('math.add', '1.0.0', 'again')]));
    expect(error.message).toContain('math.add@1.0.0');
  });

  it('returns a list the caller cannot change', () => {
    const catalog = createCatalog([capability('math.add')]);
    expect(Object.isFrozen(catalog.list())).toBe(true);
  });

  it('accepts an empty catalog', () => {
    const catalog = createCatalog([]);
    expect(catalog.list()).toEqual([]);
    expect(catalog.get('math.add', '1.0.0')).toBeUndefined();
  });
});

describe('toolNameFor', () => {
  it('replaces characters OpenAI tool names do not allow', () => {
    expect(toolNameFor('math.add')).toBe('math_add');
    expect(toolNameFor('a.b.c')).toBe('a_b_c');
    expect(toolNameFor('keep_this-one')).toBe('keep_this-one');
    expect(toolNameFor('with space/and:colon')).toBe('with_space_and_colon');
  });

  it('cuts names to 64 characters', () => {
    const long = `x.${'y'.repeat(100)}`;
    expect(toolNameFor(long)).toHaveLength(64);
    expect(toolNameFor(long)).toMatch(/^[a-zA-Z0-9_-]+$/);
  });
});

describe('compareVersions', () => {
  it('orders by the numeric parts, not as text', () => {
    expect(compareVersions('1.10.0', '1.9.0')).toBeGreaterThan(0);
    expect(compareVersions('2.0.0', '10.0.0')).toBeLessThan(0);
    expect(compareVersions('1.0.10', '1.0.9')).toBeGreaterThan(0);
    expect(compareVersions('1.2.3', '1.2.3')).toBe(0);
  });

  it('ranks a pre-release below its release', () => {
    expect(compareVersions('1.0.0-rc.1', '1.0.0')).toBeLessThan(0);
    expect(compareVersions('1.0.0', '1.0.0-rc.1')).toBeGreaterThan(0);
    expect(compareVersions('1.0.0-alpha', '1.0.0-beta')).toBeLessThan(0);
    expect(compareVersions('1.0.0-rc.1', '0.9.9')).toBeGreaterThan(0);
  });

  it('ignores build metadata', () => {
    expect(compareVersions('1.0.0+build.5', '1.0.0')).toBe(0);
    expect(compareVersions('1.0.0+build-1', '1.0.0')).toBe(0);
  });

  it('compares pre-release tags', () => {
    expect(compareVersions('1.0.0-rc.1', '1.0.0-rc.2')).toBeLessThan(0);
    expect(compareVersions('1.0.0-rc.10', '1.0.0-rc.2')).toBeGreaterThan(0);
  });
});

describe('pinCapabilities', () => {
  it('pins the newest version of each name', () => {
    const pinned = pinCapabilities([
      capability('math.add', '1.0.0'),
      capability('math.add', '1.10.0'),
      capability('math.add', '1.9.0'),
      capability('math.add', '2.0.0-rc.1'),
      capability('weather.today', '0.1.0'),
    ]);
    expect(pinned.map((entry) => `${entry.name}@${entry.version}`)).toEqual(['math.add@2.0.0-rc.1', 'weather.today@0.1.0']);
  });

  it('prefers a release over its own pre-release', () => {
    const pinned = pinCapabilities([capability('math.add', '2.0.0'), capability('math.add', '2.0.0-rc.1')]);
    expect(pinned.map((entry) => entry.version)).toEqual(['2.0.0']);
    const reversed = pinCapabilities([capability('math.add', '2.0.0-rc.1'), capability('math.add', '2.0.0')]);
    expect(reversed.map((entry) => entry.version)).toEqual(['2.0.0']);
  });

  it('pins plain JSON that meets the PinnedCapability schema', () => {
    const add = capability('math.add');
    const [pinned] = pinCapabilities([add]);
    expect(PinnedCapability.parse(pinned)).toEqual(pinned);
    expect(pinned).toEqual({
      name: 'math.add',
      version: '1.0.0',
      toolName: 'math_add',
      description: 'does math.add',
      effects: 'read',
      parameters: add.parameters,
    });
    expect(JSON.parse(JSON.stringify(pinned))).toEqual(pinned);
  });

  it('gives unique tool names when two names collide after derivation', () => {
    const pinned = pinCapabilities([capability('a.b'), capability('a_b')]);
    const toolNames = pinned.map((entry) => entry.toolName);
    expect(new Set(toolNames).size).toBe(2);
    expect(toolNames).toContain('a_b');
    for (const name of toolNames) expect(name).toMatch(/^[a-zA-Z0-9_-]{1,64}$/);
  });

  it('keeps tool names unique when a suffixed name is itself a capability name', () => {
    const pinned = pinCapabilities([capability('a.b'), capability('a_b'), capability('a_b_2'), capability('a-b')]);
    const toolNames = pinned.map((entry) => entry.toolName);
    expect(new Set(toolNames).size).toBe(pinned.length);
  });

  it('maps each tool name back to exactly one capability', () => {
    const capabilities = [capability('a.b'), capability('a_b'), capability('a.b', '2.0.0'), capability('math.add'), capability('math_add')];
    const pinned = pinCapabilities(capabilities);
    expect(pinned).toHaveLength(4);
    const byToolName = new Map<string, string[]>();
    for (const entry of pinned) byToolName.set(entry.toolName, [...(byToolName.get(entry.toolName) ?? []), `${entry.name}@${entry.version}`]);
    for (const owners of byToolName.values()) expect(owners).toHaveLength(1);
    expect(new Set(pinned.map((entry) => entry.name))).toEqual(new Set(['a.b', 'a_b', 'math.add', 'math_add']));
    expect(pinned.find((entry) => entry.name === 'a.b')!.version).toBe('2.0.0');
  });

  it('gives the same tool names whatever order the capabilities come in', () => {
    const forward = pinCapabilities([capability('a.b'), capability('a_b'), capability('c')]);
    const backward = pinCapabilities([capability('c'), capability('a_b'), capability('a.b')]);
    expect(backward).toEqual(forward);
  });

  it('keeps tool names at most 64 characters, even for long names that collide', () => {
    const stem = 'tool.'.concat('x'.repeat(70));
    const names = [`${stem}.one`, `${stem}.two`, `${stem}_one`, `${stem}.three`];
    const pinned = pinCapabilities(names.map((name) => capability(name)));
    const toolNames = pinned.map((entry) => entry.toolName);
    expect(new Set(toolNames).size).toBe(names.length);
    for (const name of toolNames) {
      expect(name.length).toBeLessThanOrEqual(64);
      expect(name).toMatch(/^[a-zA-Z0-9_-]+$/);
    }
  });

  it('pins nothing from nothing', () => {
    expect(pinCapabilities([])).toEqual([]);
  });
});
