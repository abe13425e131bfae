import { z } from 'zod';

/** A unit of work done after the result is released; `id` is its idempotency key. */
export const BackgroundTask = z.object({
  id: z.string().min(1),
  kind: z.string().min(1),
  runId: z.string(),
  tenantId: z.string(),
  principalId: z.string(),
  payload: z.unknown(),
});
export type BackgroundTask = z.infer<typeof BackgroundTask>;

/** Runs one kind of task; it may be called again for the same id after a failure or restart. */
export type BackgroundHandler = (task: BackgroundTask, options: { signal: AbortSignal }) => Promise<void>;

/**
 * The background queue: `enqueue` resolves once the tasks are durably queued, not when they finish.
 * @example
 * await queue.enqueue([{ id: 'run-1:memory', kind: 'memory.write', runId: 'run-1', tenantId: 'acme', principalId: 'u', payload: {} }], { signal });
 * await queue.drain();
 */
export interface BackgroundQueue {
  enqueue(tasks: BackgroundTask[], options: { signal: AbortSignal }): Promise<void>;
  /** Resolves when every queued task has finished or given up. */
  drain(): Promise<void>;
}
