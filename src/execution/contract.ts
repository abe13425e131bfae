import * as crypto from 'node:crypto';
import { z } from 'zod';
import { ErrorKind } from '../errors.js';

/** One tool call handed to the gateway: the model's raw JSON arguments, the key, an absolute deadline. */
export const ExecuteRequest = z.object({
  capability: z.string(),
  version: z.string(),
  arguments: z.string(),
  idempotencyKey: z.string().min(1),
  /** Epoch milliseconds; absolute so that it survives a restore. */
  deadline: z.number(),
  runId: z.string(),
  callId: z.string(),
  tenantId: z.string(),
  principalId: z.string(),
});
export type ExecuteRequest = z.infer<typeof ExecuteRequest>;

export const ToolError = z.object({ kind: ErrorKind, message: z.string(), retryable: z.boolean() });
export type ToolError = z.infer<typeof ToolError>;

/** An expected failure is a result, not an exception: the model is told what went wrong. */
export const ExecuteResult = z.discriminatedUnion('status', [
  z.object({ status: z.literal('ok'), output: z.unknown() }),
  z.object({ status: z.literal('error'), error: ToolError }),
]);
export type ExecuteResult = z.infer<typeof ExecuteResult>;

/**
 * The only way a tool runs: schemas, timeout, retries, concurrency and the journal live behind it.
 * @example
 * const result = await gateway.execute({ capability: 'math.add', version: '1.0.0', arguments: '{"a":2,"b":3}',
 *   idempotencyKey: 'run-1:call-1', deadline: Date.now() + 30_000, runId: 'run-1', callId: 'call-1',
 *   tenantId: 'acme', principalId: 'user-7' }, { signal });
 */
export interface ExecutionGateway {
  execute(request: ExecuteRequest, options: { signal: AbortSignal }): Promise<ExecuteResult>;
}

/** One journal entry per idempotency key: a completed call is never executed again. */
export const JournalEntry = z.object({
  key: z.string(),
  /** The run the entry belongs to, released with it; entries written without it are filed by their key. */
  runId: z.string().optional(),
  state: z.enum(['started', 'completed']),
  result: ExecuteResult.optional(),
  attempts: z.number().int(),
  /** Epoch milliseconds, fixed when the call first started, so a replay keeps the original deadline. */
  deadline: z.number().optional(),
  updatedAt: z.number(),
});
export type JournalEntry = z.infer<typeof JournalEntry>;

/** Where the gateway records what it started and what it finished. */
export interface ExecutionJournal {
  get(key: string): Promise<JournalEntry | undefined>;
  put(entry: JournalEntry): Promise<void>;
  /** Forgets the entries of a finished run: nothing will replay them. */
  release?(runId: string): Promise<void>;
}

// crypto.hash (Node ≥ 20.12) hashes without a Hash object: about half the time for short texts.
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

/** The hash an approval is bound to: sha256 of the exact argument text the model sent. */
export function hashArguments(rawArguments: string): string {
  return oneShotHash ? oneShotHash('sha256', rawArguments, 'hex') : crypto.createHash('sha256').update(rawArguments).digest('hex');
}
