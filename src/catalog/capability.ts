import { z } from 'zod';
import { describeIssues, RunchartError } from '../errors.js';
import { Effects, type Capability, type CapabilityContext } from './contract.js';

const Definition = z.strictObject({
  name: z
    .string()
    .regex(/^[a-zA-Z][a-zA-Z0-9_-]*(\.[a-zA-Z0-9_-]+)*$/, 'use letters, digits, "_" and "-" in dot-separated parts, e.g. "math.add"'),
  version: z.string().regex(/^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/, 'use a semantic version such as "1.0.0"'),
  description: z.string().min(1, 'describe what the capability does: the model reads it'),
  input: z.custom<z.ZodType>((value) => value instanceof z.ZodType, 'must be a zod schema'),
  output: z.custom<z.ZodType>((value) => value instanceof z.ZodType, 'must be a zod schema').optional(),
  effects: Effects,
  timeoutMs: z.number().int().positive().max(600_000).default(30_000),
  retries: z.number().int().min(0).max(10).default(0),
  retryBackoffMs: z.number().int().min(0).max(60_000).default(100),
  sensitive: z.array(z.string()).default([]),
  parameters: z.record(z.string(), z.unknown()).optional(),
  handler: z.custom<(...args: never[]) => unknown>((value) => typeof value === 'function', 'must be a function'),
});

/** What `defineCapability` takes; everything but the handler's types is checked when it is called. */
export interface CapabilityDefinition<Input, Output> {
  name: string;
  version: string;
  description: string;
  input: z.ZodType<Input>;
  output?: z.ZodType<Output>;
  effects: Effects;
  timeoutMs?: number;
  retries?: number;
  retryBackoffMs?: number;
  sensitive?: string[];
  parameters?: Record<string, unknown>;
  handler(args: Input, context: CapabilityContext): Promise<Output> | Output;
}

/**
 * Declares a capability for the catalog; a bad definition throws naming the field.
 * @example
 * const add = defineCapability({ name: 'math.add', version: '1.0.0', description: 'Add two numbers',
 *   input: z.object({ a: z.number(), b: z.number() }), output: z.number(), effects: 'read',
 *   handler: async ({ a, b }) => a + b });
 */
export function defineCapability<Input, Output>(definition: CapabilityDefinition<Input, Output>): Capability<Input, Output> {
  const parsed = Definition.safeParse(definition);
  if (!parsed.success) {
    const label = typeof definition?.name === 'string' ? ` "${definition.name}"` : '';
    throw new RunchartError('invalid-input', 'catalog', `catalog: capability${label} is invalid: ${describeIssues(parsed.error)}`, {
      cause: parsed.error,
    });
  }
  const value = parsed.data;
  const parameters = value.parameters ?? toParameters(definition.input, definition.name);
  const handler = definition.handler;
  return Object.freeze({
    name: value.name,
    version: value.version,
    description: value.description,
    input: definition.input,
    output: (definition.output ?? z.unknown()) as z.ZodType<Output>,
    effects: value.effects,
    timeoutMs: value.timeoutMs,
    retries: value.retries,
    retryBackoffMs: value.retryBackoffMs,
    sensitive: Object.freeze([...value.sensitive]),
    parameters,
    handler: async (args: Input, context: CapabilityContext) => handler(args, context),
  });
}

function toParameters(input: z.ZodType, name: string): Record<string, unknown> {
  let schema: Record<string, unknown>;
  try {
    schema = z.toJSONSchema(input, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  } catch (error) {
    throw new RunchartError('invalid-input', 'catalog', `catalog: the input schema of "${name}" cannot be shown as JSON Schema`, { cause: error });
  }
  if (schema.type !== 'object') {
    throw new RunchartError('invalid-input', 'catalog', `catalog: the input of "${name}" must be a z.object(...): models pass tool arguments as a JSON object`);
  }
  const { $schema: _ignored, ...rest } = schema;
  return rest;
}
