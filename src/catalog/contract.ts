import { z } from 'zod';

export const Effects = z.enum(['read', 'write', 'external']);
export type Effects = z.infer<typeof Effects>;

/** What a handler gets besides its arguments: the signal to honour and the key to deduplicate by. */
export interface CapabilityContext {
  signal: AbortSignal;
  /** `runId:callId`: the same for every attempt and every replay of one call. */
  idempotencyKey: string;
  runId: string;
  callId: string;
  tenantId: string;
  principalId: string;
}

/** A capability of the catalog: a versioned tool with schemas, effects and execution settings. */
export interface Capability<Input = unknown, Output = unknown> {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  readonly input: z.ZodType<Input>;
  readonly output: z.ZodType<Output>;
  readonly effects: Effects;
  /** Per attempt. */
  readonly timeoutMs: number;
  /** Extra attempts after a retryable failure (a timeout or a handler error marked retryable). */
  readonly retries: number;
  readonly retryBackoffMs: number;
  /** Top-level argument names redacted from anything persisted or logged. */
  readonly sensitive: readonly string[];
  /** The JSON Schema shown to the model; computed from `input` unless given (MCP tools bring their own). */
  readonly parameters: Record<string, unknown>;
  handler(args: Input, context: CapabilityContext): Promise<Output>;
}

/** A capability pinned to a run: plain JSON kept in the run's context and shown to the model. */
export const PinnedCapability = z.object({
  name: z.string(),
  version: z.string(),
  toolName: z.string(),
  description: z.string(),
  effects: Effects,
  parameters: z.record(z.string(), z.unknown()),
});
export type PinnedCapability = z.infer<typeof PinnedCapability>;

/**
 * The registry the run pins its capabilities from.
 * @example
 * const catalog = createCatalog([add]); catalog.get('math.add', '1.0.0');
 */
export interface CatalogLayer {
  list(): readonly Capability[];
  get(name: string, version: string): Capability | undefined;
}
