import { z } from 'zod';

/** The identity every memory call is scoped to; no call reads across tenants. */
export const MemoryScope = z.object({
  tenantId: z.string().min(1),
  principalId: z.string().min(1),
  sessionId: z.string().min(1).optional(),
});
export type MemoryScope = z.infer<typeof MemoryScope>;

export const RecallQuery = MemoryScope.extend({
  query: z.string(),
  limit: z.number().int().min(0).max(50),
});
export type RecallQuery = z.infer<typeof RecallQuery>;

export const MemoryItem = z.object({ id: z.string(), text: z.string(), score: z.number() });
export type MemoryItem = z.infer<typeof MemoryItem>;

export const HistoryTurn = z.object({ role: z.enum(['user', 'assistant']), content: z.string() });
export type HistoryTurn = z.infer<typeof HistoryTurn>;

/** What recall hands the run: ranked long-term items and the session's recent turns, oldest first. */
export const RecallResult = z.object({ items: z.array(MemoryItem), history: z.array(HistoryTurn) });
export type RecallResult = z.infer<typeof RecallResult>;

/** One finished turn, written back after the run. */
export const MemoryRecord = MemoryScope.extend({
  runId: z.string(),
  input: z.string(),
  output: z.string(),
  createdAt: z.iso.datetime(),
});
export type MemoryRecord = z.infer<typeof MemoryRecord>;

/**
 * What a run needs from memory. How it is stored is the adapter's business.
 * @example
 * await memory.remember(record, { idempotencyKey: `${runId}:memory`, signal });
 */
export interface MemoryLayer {
  recall(query: RecallQuery, options: { signal: AbortSignal }): Promise<RecallResult>;
  /** Writing the same idempotency key twice stores one record. */
  remember(record: MemoryRecord, options: { idempotencyKey: string; signal: AbortSignal }): Promise<void>;
}
