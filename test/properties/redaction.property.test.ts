// Every built-in secret pattern is redacted in any letter case, at any position, at any depth.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRedactor, createRunRedactor, REDACTED } from '../../src/redaction.js';
import { createCatalog } from '../../src/catalog/registry.js';

const alphanumeric = 'abcdefghijklmnopqrstuvwxyz0123456789';
const chars = (alphabet: string, min: number, max: number) => fc.array(fc.constantFrom(...alphabet), { minLength: min, maxLength: max }).map((list) => list.join(''));

/** A token of each built-in shape, before its letters are cased at random. */
const tokens = fc.oneof(
  chars(alphanumeric, 16, 40).map((body) => `sk-${body}`),
  fc.tuple(fc.constantFrom(' ', '  ', '\t'), chars(`${alphanumeric}._~+/=-`, 8, 40)).map(([space, body]) => `bearer${space}${body}`),
  fc.tuple(fc.constantFrom('p', 'o', 'u', 's', 'r'), chars(alphanumeric, 20, 40)).map(([kind, body]) => `gh${kind}_${body}`),
  chars('0123456789abcdefghijklmnopqrstuvwxyz', 16, 16).map((body) => `akia${body}`),
  fc.tuple(fc.constantFrom('a', 'b', 'p', 'r'), chars(`${alphanumeric}-`, 10, 30)).map(([kind, body]) => `xox${kind}-${body}`),
);

/** The token with every letter upper- or lower-cased at random. */
const casedToken = fc.tuple(tokens, fc.infiniteStream(fc.boolean())).map(([token, upper]) => {
  const flips = upper.take(token.length);
  return [...token].map((char) => (flips.next().value ? char.toUpperCase() : char.toLowerCase())).join('');
});

/** Text around the token that cannot extend it (a space on each side). */
const surrounding = fc.tuple(fc.string({ maxLength: 20 }), fc.string({ maxLength: 20 })).map(([before, after]) => [`${before} `, ` ${after}`] as const);

describe('redaction', () => {
  it('redacts every built-in pattern in any letter case and at any position, in strings at any depth', () => {
    const redact = createRedactor([]);
    const runRedact = createRunRedactor(createCatalog([]), []);
    fc.assert(
      fc.property(casedToken, surrounding, fc.nat({ max: 3 }), (token, [before, after], depth) => {
        let value: unknown = `${before}${token}${after}`;
        for (let level = 0; level < depth; level++) value = level % 2 ? [value] : { note: value };
        for (const scrub of [redact, runRedact]) {
          const text = JSON.stringify(scrub(value));
          expect(text).not.toContain(token);
          expect(text).toContain(REDACTED);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('redacts an upper-case auth scheme, as HTTP reads it: BEARER, Bearer and bEaReR alike', () => {
    const redact = createRedactor([]);
    for (const scheme of ['BEARER', 'Bearer', 'bearer', 'bEaReR']) expect(redact(`authorization: ${scheme} abcdefgh12345678`)).toBe(`authorization: ${REDACTED}`);
  });
});
