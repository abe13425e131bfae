import { z } from 'zod';

/** Who is to blame for a failure: the caller, an adapter, the model, a tool, time, or us. */
export const ErrorKind = z.enum([
  'invalid-input',
  'contract-violation',
  'model-behavior',
  'tool-failed',
  'timeout',
  'cancelled',
  'not-provided',
  'budget-exceeded',
  /** The model's answer was cut at its output limit (`finishReason: length`): not a complete answer. */
  'truncated',
  /** The model provider withheld the answer (`finishReason: content_filter`). */
  'content-filtered',
  /** A service refused our credentials (a model API key, an MCP server's token). */
  'auth',
  /** A service asked us to slow down (HTTP 429) and retries ran out. */
  'rate-limited',
  /** A service failed on its side (HTTP 5xx, a dead MCP server) and retries ran out. */
  'upstream',
  'internal',
]);
export type ErrorKind = z.infer<typeof ErrorKind>;

/** The layer an error came from, as it appears in run results and telemetry. */
export const ErrorLayer = z.enum([
  'ingress',
  'config',
  'policy',
  'memory',
  'catalog',
  'execution',
  'model',
  'telemetry',
  'background',
  'store',
  'runtime',
]);
export type ErrorLayer = z.infer<typeof ErrorLayer>;

/** An error as plain data: what the chart stores in context and what a RunResult carries. */
export const RunchartErrorData = z.object({
  kind: ErrorKind,
  layer: ErrorLayer,
  message: z.string(),
  retryable: z.boolean(),
});
export type RunchartErrorData = z.infer<typeof RunchartErrorData>;

const brand = Symbol.for('runchart.error');

/**
 * The one error class of runchart; `kind` says who is to blame, `layer` where it happened.
 * @example
 * throw new RunchartError('invalid-input', 'ingress', 'ingress: "tenantId" is required');
 */
export class RunchartError extends Error {
  readonly [brand] = true;
  override readonly name = 'RunchartError';
  readonly retryable: boolean;

  constructor(
    readonly kind: ErrorKind,
    readonly layer: ErrorLayer,
    message: string,
    options: { cause?: unknown; retryable?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable ?? false;
  }

  /** The plain-data form stored in run context. */
  toData(): RunchartErrorData {
    return { kind: this.kind, layer: this.layer, message: this.message, retryable: this.retryable };
  }
}

/** True for any RunchartError, even one thrown by another loaded copy of the package. */
export function isRunchartError(value: unknown): value is RunchartError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
}

/** Turns anything thrown into the plain data the chart keeps, blaming `layer` when unknown. */
export function toRunchartErrorData(error: unknown, layer: ErrorLayer): RunchartErrorData {
  if (isRunchartError(error)) return error.toData();
  if (error instanceof Error && error.name === 'AbortError') {
    return { kind: 'cancelled', layer, message: `${layer}: ${error.message}`, retryable: false };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { kind: 'internal', layer, message: `${layer}: ${message}`, retryable: false };
}

/** Formats zod issues as `path: message` lines that name the field. */
export function describeIssues(error: z.ZodError, prefix: (string | number)[] = []): string {
  return error.issues
    .flatMap((issue) => {
      const path = [...prefix, ...issue.path].map(String);
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((key) => `${[...path, key].join('.')}: unknown key; remove it or check its spelling`);
      }
      return [path.length ? `${path.join('.')}: ${issue.message}` : issue.message];
    })
    .join('; ');
}

/** Values a built-in adapter built in its contract's shape: `checked` passes them without parsing. */
const vouched = new WeakSet<object>();

/**
 * Marks a value a built-in adapter built, in its contract's shape by construction (its own tests
 * hold it to the schema), so `checked` takes it as it is. A layer of your own is always checked.
 */
export function vouch<T extends object>(value: T): T {
  vouched.add(value);
  return value;
}

/**
 * Parses `value` with `schema` at a layer's edge; a mismatch becomes a `contract-violation`
 * RunchartError whose cause keeps the zod issues.
 */
export function checked<Schema extends z.ZodType>(schema: Schema, value: unknown, layer: ErrorLayer): z.output<Schema> {
  if (typeof value === 'object' && value !== null && vouched.has(value)) return value as z.output<Schema>;
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new RunchartError(
    'contract-violation',
    layer,
    `${layer}: the adapter returned a value that breaks the contract (${describeIssues(result.error)})`,
    { cause: result.error },
  );
}
