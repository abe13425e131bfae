// Helpers for scenario tests: whole runs through the public API with strict fakes.
import { z } from 'zod';
import {
  createRuntime,
  defineCapability,
  type Capability,
  type CapabilityContext,
  type MemoryLayer,
  type ModelAdapter,
  type PolicyRule,
  type RunchartConfigInput,
  type RuntimeOptions,
} from '../../src/index.js';
import { createInMemoryMemory, scriptedModel, type ScriptedModel, type ScriptedStep } from '../../src/testing/index.js';

/** The default rules: runs may start, answer and remember. Tests add tool rules beside them. */
export const allowRuns: PolicyRule = { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' };
export const allowMath: PolicyRule = { id: 'allow-math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] };

/** A valid request for tenant `acme`, principal `user-7`; override any field. */
export function request(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { input: 'what is 2+3?', tenantId: 'acme', principalId: 'user-7', ...overrides };
}

/** A promise with its resolve exposed, for ordering steps without timers. */
export function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

/** Rejects once `signal` aborts; never settles otherwise. */
export function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
}

/** A capability whose handler is recorded: how often it ran, with which arguments and signals. */
export interface SpiedCapability {
  capability: Capability;
  calls: { args: unknown; context: CapabilityContext }[];
}

/** Defines a capability and records every handler call. */
export function spied<Input, Output>(definition: {
  name: string;
  version?: string;
  description?: string;
  input: z.ZodType<Input>;
  output?: z.ZodType<Output>;
  effects?: 'read' | 'write' | 'external';
  timeoutMs?: number;
  handler: (args: Input, context: CapabilityContext) => Promise<Output> | Output;
}): SpiedCapability {
  const calls: SpiedCapability['calls'] = [];
  const capability = defineCapability<Input, Output>({
    name: definition.name,
    version: definition.version ?? '1.0.0',
    description: definition.description ?? `the ${definition.name} capability`,
    input: definition.input,
    ...(definition.output ? { output: definition.output } : {}),
    effects: definition.effects ?? 'read',
    ...(definition.timeoutMs ? { timeoutMs: definition.timeoutMs } : {}),
    handler: (args, context) => {
      calls.push({ args, context });
      return definition.handler(args, context);
    },
  }) as Capability;
  return { capability, calls };
}

/** `math.add` with a recorded handler. */
export function spiedAdd(): SpiedCapability {
  return spied({
    name: 'math.add',
    description: 'Add two numbers',
    input: z.object({ a: z.number(), b: z.number() }),
    output: z.number(),
    handler: ({ a, b }) => a + b,
  });
}

/** `payments.refund` (a write with an external effect) with a recorded handler. */
export function spiedRefund(): SpiedCapability {
  return spied({
    name: 'payments.refund',
    description: 'Refund an order',
    input: z.object({ orderId: z.string(), amount: z.number() }),
    output: z.object({ refunded: z.boolean() }),
    effects: 'external',
    handler: () => ({ refunded: true }),
  });
}

/** A scripted model that also keeps the signal of every step, to check cancellation reaches it. */
export function signalledModel(steps: ScriptedStep[], options: { delayMs?: number } = {}): ScriptedModel & { signals: AbortSignal[]; called: Promise<void> } {
  const inner = scriptedModel(steps, options);
  const signals: AbortSignal[] = [];
  const called = deferred();
  const model: ModelAdapter = {
    name: inner.name,
    step(modelRequest, stepOptions) {
      signals.push(stepOptions.signal);
      called.resolve();
      return inner.step(modelRequest, stepOptions);
    },
  };
  return Object.assign(Object.create(inner) as ScriptedModel, model, { signals, called: called.promise });
}

/** In-memory memory that counts recalls, optionally failing them. */
export function countingMemory(options: { failRecall?: boolean } = {}): MemoryLayer & { recalls: number; remembered: number } {
  const inner = createInMemoryMemory();
  const memory = {
    recalls: 0,
    remembered: 0,
    async recall(query: Parameters<MemoryLayer['recall']>[0], recallOptions: { signal: AbortSignal }) {
      memory.recalls++;
      if (options.failRecall) throw new Error('memory store is offline');
      return inner.recall(query, recallOptions);
    },
    async remember(record: Parameters<MemoryLayer['remember']>[0], rememberOptions: { idempotencyKey: string; signal: AbortSignal }) {
      memory.remembered++;
      return inner.remember(record, rememberOptions);
    },
  };
  return memory;
}

/** A runtime with the given rules (beside `allowRuns` unless `rules` replaces them) and the rest of the options. */
export function runtimeWith(
  options: Omit<RuntimeOptions, 'config'> & { rules?: PolicyRule[]; config?: RunchartConfigInput },
): ReturnType<typeof createRuntime> {
  const { rules, config, ...rest } = options;
  return createRuntime({
    ...rest,
    config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, ...config, policy: { ...config?.policy, rules: rules ?? config?.policy?.rules ?? [allowRuns, allowMath] } },
  });
}

/** The tool messages of a model request, in order. */
export function toolMessagesOf(modelRequest: { messages: { role: string }[] }): { role: 'tool'; toolCallId: string; content: string }[] {
  return modelRequest.messages.filter((message) => message.role === 'tool') as { role: 'tool'; toolCallId: string; content: string }[];
}
