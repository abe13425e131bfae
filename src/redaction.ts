import type { CatalogLayer } from './catalog/contract.js';
import { toolNameFor } from './catalog/registry.js';

/** Secrets recognised without configuration: API keys and bearer tokens of the common shapes. */
export const defaultSecretPatterns = [
  'sk-[A-Za-z0-9_-]{16,}',
  '(?:Bearer|bearer)\\s+[A-Za-z0-9._~+/=-]{8,}',
  'gh[pousr]_[A-Za-z0-9]{20,}',
  'AKIA[0-9A-Z]{16}',
  'xox[abpr]-[A-Za-z0-9-]{10,}',
];

export const REDACTED = '[redacted]';

/**
 * Builds a function that replaces secrets in every string of a JSON value: the default patterns
 * and the configured ones (sensitive argument fields are `createRunRedactor`'s job).
 * @example
 * const redact = createRedactor(['internal-[0-9]+']); redact({ note: 'token sk-abc…' });
 */
export function createRedactor(patterns: readonly string[], options: { memo?: WeakMap<object, unknown> } = {}): <T>(value: T) => T {
  const expression = new RegExp([...defaultSecretPatterns, ...patterns].map((pattern) => `(?:${pattern})`).join('|'), 'g');
  const scrub = (text: string) => text.replace(expression, REDACTED);
  const { memo } = options;
  const walk = (value: unknown): unknown => {
    if (typeof value === 'string') return scrub(value);
    if (!value || typeof value !== 'object') return value;
    const known = memo?.get(value);
    if (known !== undefined) return known;
    let result: unknown;
    if (Array.isArray(value)) result = value.map(walk);
    else {
      const copy: Record<string, unknown> = {};
      for (const key of Object.keys(value)) copy[key] = walk((value as Record<string, unknown>)[key]);
      result = copy;
    }
    memo?.set(value, result);
    return result;
  };
  return <T>(value: T) => walk(value) as T;
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

/**
 * The redactor for saved runs: the sensitive argument fields of each capability (wherever a
 * call's arguments appear: planned calls, call records, the model's tool calls, pending actor
 * input), then secret patterns over every string. It remembers what it redacted by object
 * identity, so it is for values that are never changed in place (snapshots, marks).
 */
export function createRunRedactor(catalog: CatalogLayer, patterns: readonly string[]): <T>(snapshot: T) => T {
  const byName = new Map<string, readonly string[]>();
  for (const capability of catalog.list()) {
    if (capability.sensitive.length === 0) continue;
    byName.set(capability.name, capability.sensitive);
    byName.set(toolNameFor(capability.name), capability.sensitive);
  }
  // A run's snapshots share every part that did not change (XState never mutates a context), so each
  // part is redacted once and remembered by identity: a save walks only what the last step made.
  const scrub = createRedactor(patterns, { memo: new WeakMap() });
  if (byName.size === 0) return scrub;
  const memo = new WeakMap<object, unknown>();
  const walk = (value: unknown): unknown => {
    if (!value || typeof value !== 'object') return value;
    const known = memo.get(value);
    if (known !== undefined) return known;
    const result = redactFields(value);
    memo.set(value, result);
    return result;
  };
  const redactFields = (value: object): unknown => {
    if (Array.isArray(value)) return value.map(walk);
    const record = value as Record<string, unknown>;
    // A call the model made to a tool it was not given has no capability, only the name it used.
    const owner = [record.capability, record.toolName, record.name].find((name): name is string => typeof name === 'string' && byName.has(name));
    const fields = owner === undefined ? undefined : byName.get(owner);
    return Object.fromEntries(
      Object.entries(record).map(([key, inner]) => [
        key,
        fields && (key === 'arguments' || key === 'args') && typeof inner === 'string' ? redactArgumentFields(inner, fields) : walk(inner),
      ]),
    );
  };
  return <T>(snapshot: T) => scrub(walk(snapshot)) as T;
}
