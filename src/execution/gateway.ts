import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { describeIssues, isRunchartError, RunchartError, vouch } from '../errors.js';
import type { CatalogLayer, Capability, CapabilityContext } from '../catalog/contract.js';
import type { ExecuteRequest, ExecuteResult, ExecutionGateway, ExecutionJournal, JournalClaim, JournalLease, ToolError } from './contract.js';
import { createJournalEntries, type JournalEntries } from './journal-entries.js';
import { LazySignal, SignalOptions } from '../lazy-signal.js';

/** Options of the default gateway. */
export interface GatewayOptions {
  catalog: CatalogLayer;
  journal?: ExecutionJournal;
  /** Characters of raw argument text accepted from the model. */
  maxArgumentChars?: number;
  /** Characters of serialized tool output handed back to the model. */
  maxResultChars?: number;
  /** Tool calls running at once across all runs of this gateway. */
  concurrency?: number;
  now?: () => number;
  /** With a journal that claims keys: who this gateway is to other processes (unique; a host, pid and random id unless given). */
  owner?: string;
  /** With a journal that claims keys: how long a claim holds unless renewed (renewed every third of it while the call runs). */
  leaseMs?: number;
  /** With a journal that claims keys: how often a call held by another owner is asked for again. */
  claimPollMs?: number;
}

/** A journal kept in a Map: enough for one process; the lowdb journal survives restarts. */
export function createMemoryJournal(): ExecutionJournal & { entries: JournalEntries } {
  const entries = createJournalEntries();
  return {
    entries,
    get: async (key) => entries.get(key),
    put: async (entry) => entries.set(entry),
    release: async (runId) => entries.forget(runId),
  };
}

const fail = (kind: ToolError['kind'], message: string, retryable = false): ExecuteResult => ({
  status: 'error',
  error: { kind, message, retryable },
});

/**
 * The execution gateway: finds the capability in the catalog, parses the model's arguments with
 * its input schema, enforces size limits, the timeout and retries, validates the output, and
 * journals each call by idempotency key so a completed call never runs twice.
 * @example
 * const gateway = createGateway({ catalog: createCatalog([add]) });
 */
export function createGateway(options: GatewayOptions): ExecutionGateway {
  const journal = options.journal ?? createMemoryJournal();
  const maxArgumentChars = options.maxArgumentChars ?? 16_000;
  const maxResultChars = options.maxResultChars ?? 32_000;
  const now = options.now ?? Date.now;
  const slots = createSemaphore(options.concurrency ?? 16);
  const owner = options.owner ?? `${hostname()}:${process.pid}:${randomUUID()}`;
  const leaseMs = options.leaseMs ?? 30_000;
  const claimPollMs = options.claimPollMs ?? 250;

  // Two calls with one key at once (a restored run racing its old self) share one execution.
  const inFlight = new Map<string, Promise<ExecuteResult>>();

  function execute(request: ExecuteRequest, options: { signal: AbortSignal }): Promise<ExecuteResult> {
    const running = inFlight.get(request.idempotencyKey);
    if (running) return running;
    // The gateway builds results in their contract's shape: the actor takes them unparsed.
    const execution = executeOnce(request, options)
      .then((result) => vouch(result))
      .finally(() => inFlight.delete(request.idempotencyKey));
    inFlight.set(request.idempotencyKey, execution);
    return execution;
  }

  async function executeOnce(request: ExecuteRequest, { signal }: { signal: AbortSignal }): Promise<ExecuteResult> {
    if (journal.claim) return executeClaimed(request, signal);
    const journaled = await journal.get(request.idempotencyKey);
    if (journaled?.state === 'completed' && journaled.result) return journaled.result;

    const capability = options.catalog.get(request.capability, request.version);
    if (!capability) return fail('invalid-input', `execution: no capability named "${request.capability}@${request.version}"`);
    const args = parseArguments(capability, request.arguments, maxArgumentChars);
    if ('status' in args) return args;
    // A replayed call keeps the deadline it was first given: deadlines are absolute.
    return attemptAll(capability, args.value, request, { attempts: journaled?.attempts ?? 0, deadline: journaled?.deadline ?? request.deadline }, signal);
  }

  /**
   * With a journal shared by several processes: the key is claimed first, so while one owner's
   * attempt runs nobody else starts one, a finished call is answered from the journal, and a
   * claim whose owner died is taken over once its lease runs out.
   */
  async function executeClaimed(request: ExecuteRequest, signal: AbortSignal): Promise<ExecuteResult> {
    // Checked before claiming (they run nothing), so a bad call leaves no claim behind to wait out.
    const capability = options.catalog.get(request.capability, request.version);
    const args = capability ? parseArguments(capability, request.arguments, maxArgumentChars) : undefined;
    if (!capability || !args || 'status' in args) {
      const journaled = await journal.get(request.idempotencyKey);
      if (journaled?.state === 'completed' && journaled.result) return journaled.result;
      return args && 'status' in args ? args : fail('invalid-input', `execution: no capability named "${request.capability}@${request.version}"`);
    }
    const lease: JournalLease = { key: request.idempotencyKey, tenantId: request.tenantId, owner, leaseMs };
    let claim: JournalClaim;
    for (;;) {
      claim = await journal.claim!({ runId: request.runId, deadline: request.deadline, ...lease });
      if (claim.status !== 'held') break;
      const left = request.deadline - now();
      if (left <= 0) return fail('timeout', `execution: "${capability.name}" is being run by ${claim.owner}, and the call's deadline passed before it finished`);
      await sleep(Math.max(1, Math.min(claim.retryInMs, claimPollMs, left)), signal);
    }
    if (claim.status === 'completed') return claim.result;
    // Renewed while the attempts run; a renewal that fails leaves the lease to run out, as a crash would.
    const renewal = setInterval(() => void journal.renew?.(lease).catch(() => false), Math.max(1, Math.floor(leaseMs / 3)));
    try {
      return await attemptAll(capability, args.value, request, claim, signal);
    } finally {
      clearInterval(renewal);
    }
  }

  async function attemptAll(capability: Capability, args: unknown, request: ExecuteRequest, journaled: { attempts: number; deadline: number; started?: boolean }, signal: AbortSignal): Promise<ExecuteResult> {
    let attempts = journaled.attempts;
    const deadline = journaled.deadline;
    request = Object.assign({}, request, { deadline });
    let result: ExecuteResult = fail('internal', 'execution: the call was never attempted');
    for (let attempt = 0; attempt <= capability.retries; attempt++) {
      if (attempt > 0) await sleep(capability.retryBackoffMs * 2 ** (attempt - 1), signal);
      attempts++;
      // A claim that recorded the first attempt's start saves the journal a write before the call.
      if (attempt > 0 || !journaled.started) await journal.put({ key: request.idempotencyKey, runId: request.runId, state: 'started', attempts, deadline, updatedAt: now() });
      result = await slots.run(() => attemptCall(capability, args, request, signal));
      if (result.status === 'ok' || !result.error.retryable) break;
    }
    await journal.put({ key: request.idempotencyKey, runId: request.runId, state: 'completed', result, attempts, deadline, updatedAt: now() });
    return result;
  }

  async function attemptCall(capability: Capability, args: unknown, request: ExecuteRequest, runSignal: AbortSignal): Promise<ExecuteResult> {
    const remaining = Math.min(capability.timeoutMs, request.deadline - now());
    if (remaining <= 0) return fail('timeout', `execution: "${capability.name}" passed its deadline before it could start`);
    runSignal.throwIfAborted();
    // The handler's signal is made when the handler first reads it: most tools never do, and an
    // AbortController with a listener on it cost more than the rest of a call. The timer and the
    // run's abort reject the call directly, whether or not the handler listens.
    const lazy = new LazySignal();
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onRunAbort: (() => void) | undefined;
    let output: unknown;
    try {
      output = await new Promise<unknown>((resolve, reject) => {
        const stop = (reason: unknown) => {
          lazy.abort(reason);
          reject(reason);
        };
        timer = setTimeout(() => {
          timedOut = true;
          stop(new RunchartError('timeout', 'execution', `execution: "${capability.name}" timed out after ${remaining} ms`));
        }, remaining);
        onRunAbort = () => stop(runSignal.reason);
        runSignal.addEventListener('abort', onRunAbort);
        // A handler that throws at once rejects this promise like one that rejects later.
        const pending = capability.handler(args, new HandlerContext(lazy, request));
        Promise.resolve(pending).then(resolve, reject);
      });
    } catch (error) {
      if (runSignal.aborted) throw runSignal.reason;
      if (timedOut) return fail('timeout', `execution: "${capability.name}" timed out after ${remaining} ms`, true);
      if (isRunchartError(error)) {
        // Keep who is to blame (an MCP server that died is 'upstream', not the tool's own failure).
        const kind = error.kind === 'internal' || error.kind === 'invalid-input' ? 'tool-failed' : error.kind;
        return fail(kind, `execution: "${capability.name}" failed: ${error.message.replace(/^[a-z]+: /, '')}`, error.retryable);
      }
      const message = error instanceof Error ? error.message : String(error);
      return fail('tool-failed', `execution: "${capability.name}" failed: ${message}`);
    } finally {
      clearTimeout(timer);
      if (onRunAbort) runSignal.removeEventListener('abort', onRunAbort);
    }
    const checked = capability.output.safeParse(output);
    if (!checked.success) {
      return fail('tool-failed', `execution: "${capability.name}" returned output that breaks its output schema (${describeIssues(checked.error)})`);
    }
    let text: string | undefined;
    try {
      text = JSON.stringify(checked.data ?? null);
    } catch (error) {
      return fail('tool-failed', `execution: "${capability.name}" returned output that cannot be sent as JSON (${(error as Error).message})`);
    }
    if (text === undefined) return fail('tool-failed', `execution: "${capability.name}" returned output that cannot be sent as JSON`);
    if (text.length > maxResultChars) {
      return fail('tool-failed', `execution: "${capability.name}" returned ${text.length} characters, over the limit of ${maxResultChars}`);
    }
    return { status: 'ok', output: checked.data ?? null };
  }

  return { execute };
}

function parseArguments(capability: Capability, raw: string, maxChars: number): { value: unknown } | ExecuteResult {
  if (raw.length > maxChars) {
    return fail('invalid-input', `execution: the arguments for "${capability.name}" are ${raw.length} characters, over the limit of ${maxChars}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (error) {
    return fail('invalid-input', `execution: the arguments for "${capability.name}" are not valid JSON (${(error as Error).message}); send a JSON object`);
  }
  const parsed = capability.input.safeParse(json);
  if (!parsed.success) {
    return fail('invalid-input', `execution: the arguments for "${capability.name}" do not match its input schema: ${describeIssues(parsed.error)}`);
  }
  return { value: parsed.data };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => (signal.removeEventListener('abort', onAbort), resolve()), ms);
    const onAbort = () => (clearTimeout(timer), reject(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** A counting semaphore: at most `limit` tasks at once, the rest wait in order. */
export function createSemaphore(limit: number) {
  let active = 0;
  const waiting: (() => void)[] = [];
  return {
    async run<T>(task: () => Promise<T>): Promise<T> {
      if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
      else active++;
      try {
        return await task();
      } finally {
        const next = waiting.shift();
        if (next) next();
        else active--;
      }
    },
  };
}

/** What a tool's handler is given: the call's identity and a signal made on first read (`SignalOptions`). */
class HandlerContext extends SignalOptions implements CapabilityContext {
  readonly idempotencyKey: string;
  readonly runId: string;
  readonly callId: string;
  readonly tenantId: string;
  readonly principalId: string;

  constructor(lazy: LazySignal, request: ExecuteRequest) {
    super(lazy);
    this.idempotencyKey = request.idempotencyKey;
    this.runId = request.runId;
    this.callId = request.callId;
    this.tenantId = request.tenantId;
    this.principalId = request.principalId;
  }
}
