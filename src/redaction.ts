import type { CatalogLayer } from './catalog/contract.js';
import { toolNameFor } from './catalog/registry.js';

/**
 * Secrets recognised without configuration: API keys and bearer tokens of the common shapes.
 * Every pattern, these and the configured ones, matches in any letter case (HTTP auth schemes
 * are case-insensitive: `BEARER x` is as much a token as `Bearer x`).
 */
export const defaultSecretPatterns = [
  'sk-[A-Za-z0-9_-]{16,}',
  'bearer\\s+[A-Za-z0-9._~+/=-]{8,}',
  'gh[pousr]_[A-Za-z0-9]{20,}',
  'AKIA[0-9A-Z]{16}',
  'xox[abpr]-[A-Za-z0-9-]{10,}',
];

export const REDACTED = '[redacted]';

/** One expression for the default and the configured secret patterns, in any letter case. */
function secretExpression(patterns: readonly string[]): RegExp {
  return new RegExp([...defaultSecretPatterns, ...patterns].map((pattern) => `(?:${pattern})`).join('|'), 'gi');
}

/**
 * Builds a function that replaces secrets in every string of a JSON value: the default patterns
 * and the configured ones (sensitive argument fields are `createRunRedactor`'s job). Only what
 * holds a secret is copied: a value without one comes back as it is, so the result is for
 * reading and serializing, never for changing in place.
 * @example
 * const redact = createRedactor(['internal-[0-9]+']); redact({ note: 'token sk-abc…' });
 */
export function createRedactor(patterns: readonly string[]): <T>(value: T) => T {
  const redact = redactorFor(new Map(), patterns);
  return <T>(value: T) => redact(value);
}

/**
 * An object as JSON sees it: arrays and plain objects as they are; anything else (a `URL`, a
 * `Date`, an `Error`, a class instance) as its `toJSON` result or a plain copy of its own
 * enumerable properties. So its strings are scrubbed like any others, and a redacted value
 * serializes as the original would, secrets aside.
 */
function jsonData(value: object, key: string | number): unknown {
  if (Array.isArray(value)) return value;
  const prototype = Object.getPrototypeOf(value) as unknown;
  if (prototype === Object.prototype || prototype === null) return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  return typeof toJSON === 'function' ? (toJSON as (key: string) => unknown).call(value, String(key)) : Object.fromEntries(Object.entries(value));
}

/** Replaces the values of `fields` in a JSON object text; text that is not a JSON object is returned as it is. */
export function redactArgumentFields(raw: string, fields: readonly string[]): string {
  if (fields.length === 0) return raw;
  try {
    const value = JSON.parse(raw) as unknown;
    if (!value || typeof value !== 'object' || Array.isArray(value)) return raw;
    const copy = { ...(value as Record<string, unknown>) };
    for (const field of fields) if (field in copy) copy[field] = REDACTED;
    return JSON.stringify(copy);
  } catch {
    return raw;
  }
}

/** A value as it was last redacted, and what the redaction made of it. */
export interface Redaction<T> {
  original: T;
  redacted: T;
}

/**
 * The redactor for saved runs: the sensitive argument fields of each capability (wherever a
 * call's arguments appear: planned calls, call records, the model's tool calls, pending actor
 * input), then secret patterns over every string. Given the run's previous redaction, it walks
 * only what changed since: XState never changes a context in place, so an object that is at
 * the same place as before is redacted as it was before.
 * @example
 * const redact = createRunRedactor(catalog, []); const redacted = redact(snapshot, previous); previous = { original: snapshot, redacted };
 */
export function createRunRedactor(catalog: CatalogLayer, patterns: readonly string[]): <T>(value: T, previous?: Redaction<T>) => T {
  const byName = new Map<string, readonly string[]>();
  for (const capability of catalog.list()) {
    if (capability.sensitive.length === 0) continue;
    byName.set(capability.name, capability.sensitive);
    byName.set(toolNameFor(capability.name), capability.sensitive);
  }
  return redactorFor(byName, patterns);
}

/** The walk both redactors share: sensitive argument fields by capability or tool name (none for `createRedactor`), then secret patterns. */
function redactorFor(byName: Map<string, readonly string[]>, patterns: readonly string[]): <T>(value: T, previous?: Redaction<T>) => T {
  const expression = secretExpression(patterns);
  const scrub = (text: string) => text.replace(expression, REDACTED);
  // Copy on change: a value with no secret comes back as the same object, and the walk itself
  // allocates nothing for it (no key list, no closure per object, no index strings): it runs on
  // every save of every run.
  const walk = (value: unknown, before: unknown, beforeRedacted: unknown, key: string | number = ''): unknown => {
    if (typeof value === 'string') return scrub(value);
    if (!value || typeof value !== 'object') return value;
    // An object's redaction depends on the object alone (a string's, on the record around it).
    if (value === before) return beforeRedacted;
    const data = jsonData(value, key);
    if (data !== value) return walk(data, undefined, undefined, key);
    // The previous value at this place, when it is a container of the same kind: its parts are compared in turn.
    const comparable = before !== null && typeof before === 'object' && Array.isArray(before) === Array.isArray(value);
    if (Array.isArray(value)) {
      const earlier = comparable ? (before as unknown[]) : undefined;
      const earlierRedacted = comparable ? (beforeRedacted as unknown[]) : undefined;
      let copy: unknown[] | undefined;
      for (let index = 0; index < value.length; index++) {
        const inner = walk(value[index], earlier?.[index], earlierRedacted?.[index], index);
        if (inner !== value[index]) (copy ??= value.slice())[index] = inner;
      }
      return copy ?? value;
    }
    const record = value as Record<string, unknown>;
    const earlier = comparable ? (before as Record<string, unknown>) : undefined;
    const earlierRedacted = comparable ? (beforeRedacted as Record<string, unknown>) : undefined;
    // A call the model made to a tool it was not given has no capability, only the name it used.
    const fields = byName.size ? fieldsOf(record, byName) : undefined;
    let copy: Record<string, unknown> | undefined;
    for (const name in record) {
      if (!Object.hasOwn(record, name)) continue; // JSON.stringify sees own properties only
      const original = record[name];
      const inner =
        fields && (name === 'arguments' || name === 'args') && typeof original === 'string'
          ? scrub(redactArgumentFields(original, fields))
          : walk(original, earlier?.[name], earlierRedacted?.[name], name);
      // The copy keeps the keys in their order, so it serializes as the original would.
      if (inner !== original) (copy ??= Object.fromEntries(Object.entries(record)))[name] = inner;
    }
    return copy ?? value;
  };
  return <T>(value: T, previous?: Redaction<T>) => (previous ? walk(value, previous.original, previous.redacted) : walk(value, undefined, undefined)) as T;
}

/** The sensitive fields of the capability a record names (by capability, tool or function name), if it has any. */
function fieldsOf(record: Record<string, unknown>, byName: Map<string, readonly string[]>): readonly string[] | undefined {
  return fieldsNamed(record.capability, byName) ?? fieldsNamed(record.toolName, byName) ?? fieldsNamed(record.name, byName);
}

function fieldsNamed(name: unknown, byName: Map<string, readonly string[]>): readonly string[] | undefined {
  return typeof name === 'string' ? byName.get(name) : undefined;
}
