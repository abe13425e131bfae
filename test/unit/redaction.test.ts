import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createCatalog } from '../../src/catalog/registry.js';
import { defineCapability } from '../../src/index.js';
import { createRedactor, createRunRedactor, REDACTED } from '../../src/redaction.js';

const secret = 'sk-abcdefghijklmnopqrstuvwxyz';
const login = defineCapability({
  name: 'auth.login',
  version: '1.0.0',
  description: 'Log in',
  input: z.object({ user: z.string(), password: z.string() }),
  sensitive: ['password'],
  effects: 'external',
  handler: async () => true,
});
const catalog = createCatalog([login]);

describe('createRedactor', () => {
  it('replaces secrets in every string and copies only what holds one', () => {
    const clean = { note: 'nothing here', list: [1, 'two', { three: 3 }] };
    const value = { clean, dirty: { deep: [`token ${secret}`, 'plain'] } };
    const redacted = createRedactor([])(value);
    expect(redacted).toEqual({ clean, dirty: { deep: [`token ${REDACTED}`, 'plain'] } });
    expect(redacted.clean).toBe(clean);
    expect(value.dirty.deep[0]).toBe(`token ${secret}`);
    expect(createRedactor([])(clean)).toBe(clean);
  });

  it('redacts objects that are not plain data as JSON sees them: their toJSON, or their own properties', () => {
    class Money {
      constructor(
        readonly cents: number,
        readonly note: string,
      ) {}
      toJSON() {
        return { cents: this.cents, note: this.note };
      }
    }
    class Plain {
      token = secret;
    }
    const redact = createRunRedactor(catalog, []);
    for (const redactor of [createRedactor([]), redact]) {
      const value = { link: new URL(`https://h.example/?t=${secret}`), when: new Date(0), money: new Money(5, 'fine'), other: new Plain(), error: new Error(secret) };
      expect(JSON.parse(JSON.stringify(redactor(value)))).toEqual({
        link: `https://h.example/?t=${REDACTED}`,
        when: '1970-01-01T00:00:00.000Z',
        money: { cents: 5, note: 'fine' },
        other: { token: REDACTED },
        error: {},
      });
    }
  });

  it('sees what JSON.stringify sees: own properties in their order, and toJSON called with the key as a string', () => {
    const keys: unknown[] = [];
    class Stamp {
      toJSON(key: unknown) {
        keys.push(key);
        return `stamp ${secret}`;
      }
    }
    Object.defineProperty(Object.prototype, 'inherited', { value: secret, enumerable: true, configurable: true, writable: true });
    try {
      const redacted = createRedactor([])({ a: 'x', b: secret, c: [new Stamp()], d: { stamp: new Stamp() } });
      expect(Object.keys(redacted)).toEqual(['a', 'b', 'c', 'd']);
      expect(Object.hasOwn(redacted, 'inherited')).toBe(false);
      expect(redacted).toEqual({ a: 'x', b: REDACTED, c: [`stamp ${REDACTED}`], d: { stamp: `stamp ${REDACTED}` } });
      expect(keys).toEqual(['0', 'stamp']);
    } finally {
      delete (Object.prototype as Record<string, unknown>).inherited;
    }
  });

  it('applies configured patterns beside the built-in ones', () => {
    expect(createRedactor(['internal-[0-9]+'])({ a: 'see internal-42', b: secret })).toEqual({ a: `see ${REDACTED}`, b: REDACTED });
  });
});

describe('createRunRedactor', () => {
  it('redacts the sensitive argument fields of a call, wherever the call names its capability or tool', () => {
    const redact = createRunRedactor(catalog, []);
    const args = JSON.stringify({ user: 'ann', password: 'hunter2' });
    const redacted = redact({ calls: [{ capability: 'auth.login', args }], messages: [{ toolCalls: [{ name: 'auth_login', arguments: args }] }], other: { args } });
    const expected = JSON.stringify({ user: 'ann', password: REDACTED });
    expect(redacted.calls[0]!.args).toBe(expected);
    expect(redacted.messages[0]!.toolCalls[0]!.arguments).toBe(expected);
    expect(redacted.other.args).toBe(args);
  });

  it('takes over nothing from the previous redaction but objects: a string is redacted by the record it is in now', () => {
    const redact = createRunRedactor(catalog, []);
    const args = '{"user":"a","password":"p"}';
    const first = { call: { capability: 'auth.login', args } };
    const next = { call: { capability: 'math.add', args } };
    expect(redact(next, { original: first, redacted: redact(first) }).call.args).toBe(args);
    const same = { call: first.call, other: 'x' };
    const firstRedacted = redact(first);
    expect(redact(same, { original: first, redacted: firstRedacted }).call).toBe(firstRedacted.call);
  });

  /** A JSON-like tree whose strings sometimes hold a secret, and calls that name `auth.login`. */
  const leaf = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.string({ maxLength: 8 }), fc.constant(`key ${secret}`));
  const call = fc.record({ capability: fc.constantFrom('auth.login', 'math.add'), args: fc.constantFrom('{"user":"a","password":"p"}', 'not json') });
  const tree = fc.letrec<{ node: unknown }>((tie) => ({
    node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, call, fc.array(tie('node'), { maxLength: 4 }), fc.dictionary(fc.constantFrom('a', 'b', 'c', 'args'), tie('node'), { maxKeys: 3 })),
  })).node;

  /** `value` with some of its parts replaced by fresh ones and the rest shared, as a run's next snapshot is. */
  function nextOf(value: unknown, replacements: unknown[], at: { index: number }): unknown {
    if (!value || typeof value !== 'object') return value;
    const replace = replacements[at.index++ % Math.max(1, replacements.length)];
    if (at.index % 3 === 0 && replace !== undefined) return replace;
    if (at.index % 3 === 1) return value; // shared, by identity
    return Array.isArray(value) ? value.map((inner) => nextOf(inner, replacements, at)) : Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, nextOf(inner, replacements, at)]));
  }

  it('redacts a next value against the previous redaction exactly as it redacts it alone', () => {
    fc.assert(
      fc.property(tree, fc.array(tree, { maxLength: 4 }), (first, replacements) => {
        const redact = createRunRedactor(catalog, []);
        const firstRedacted = redact(first);
        const next = nextOf(first, replacements, { index: 0 });
        expect(redact(next, { original: first, redacted: firstRedacted })).toStrictEqual(createRunRedactor(catalog, [])(next));
        // Against an unrelated previous value, too: only identical objects are taken over.
        expect(redact(next, { original: replacements, redacted: redact(replacements) })).toStrictEqual(createRunRedactor(catalog, [])(next));
      }),
      { numRuns: 300 },
    );
  });
});
