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

/** A gateway asking to run the call of `key` itself, for `leaseMs` unless it renews. */
export const JournalClaimRequest = z.object({
  key: z.string().min(1),
  tenantId: z.string().min(1),
  runId: z.string(),
  /** Epoch milliseconds; kept from the first claim, so a call taken over keeps its deadline. */
  deadline: z.number(),
  /** Who asks: one id per gateway, unique across processes and machines. */
  owner: z.string().min(1),
  leaseMs: z.number().int().positive(),
});
export type JournalClaimRequest = z.infer<typeof JournalClaimRequest>;

/**
 * What a claim answers: the caller owns the call now (first, or taking over a lease that ran
 * out, with the attempts and deadline recorded so far), the call is finished (its recorded
 * result), or another owner holds it until `until` (epoch ms; `retryInMs` is what is left of
 * that lease by the database's clock).
 */
export const JournalClaim = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('claimed'),
    attempts: z.number().int(),
    deadline: z.number(),
    until: z.number(),
    /** True when the claim also recorded the start of the attempt it grants (number `attempts + 1`), so the gateway does not put it again. */
    started: z.boolean().optional(),
  }),
  z.object({ status: z.literal('completed'), result: ExecuteResult, attempts: z.number().int() }),
  z.object({ status: z.literal('held'), owner: z.string(), until: z.number(), retryInMs: z.number() }),
]);
export type JournalClaim = z.infer<typeof JournalClaim>;

/** The lease a claim gave: renewed by the owner while its call runs. */
export const JournalLease = JournalClaimRequest.pick({ key: true, tenantId: true, owner: true, leaseMs: true });
export type JournalLease = z.infer<typeof JournalLease>;

/** Where the gateway records what it started and what it finished. */
export interface ExecutionJournal {
  get(key: string): Promise<JournalEntry | undefined>;
  put(entry: JournalEntry): Promise<void>;
  /** Forgets the entries of a finished run: nothing will replay them. */
  release?(runId: string): Promise<void>;
  /**
   * Journals shared by several processes claim a key in one step, so at most one attempt of a
   * call runs at a time anywhere and a finished call is answered from the journal. The gateway
   * uses it when present; the owner records attempts and the result with `put` as usual, except
   * the start of an attempt the claim says it recorded (`started` on a claimed answer).
   */
  claim?(request: JournalClaimRequest): Promise<JournalClaim>;
  /** Extends the owner's lease while its call runs; false once the lease was lost to another owner. */
  renew?(lease: JournalLease): Promise<boolean>;
}

// crypto.hash (Node ≥ 20.12) hashes without a Hash object: about half the time for short texts.
const oneShotHash = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

/** The hash an approval is bound to: sha256 of the exact argument text the model sent. */
export function hashArguments(rawArguments: string): string {
  return oneShotHash ? oneShotHash('sha256', rawArguments, 'hex') : crypto.createHash('sha256').update(rawArguments).digest('hex');
}
