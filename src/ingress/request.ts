import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { describeIssues, RunchartError } from '../errors.js';

const TraceId = z
  .string()
  .regex(/^[0-9a-f]{32}$/, 'a trace id is 32 lower-case hex characters')
  .refine((value) => !/^0+$/.test(value), 'the all-zero trace id is invalid');
const traceparentForm = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
// One message per value: the form first, then what the form allows but W3C forbids.
const Traceparent = z.string().superRefine((value, context) => {
  if (!traceparentForm.test(value)) context.addIssue({ code: 'custom', message: 'use the W3C form "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"' });
  else if (parseTraceparent(value) === undefined) context.addIssue({ code: 'custom', message: 'version ff and all-zero trace or span ids are invalid' });
});
/** The message of a field that is missing or not a string; other issues keep their own. */
const typeMessage =
  (missing: string, mistyped: string) =>
  (issue: { code: string; input?: unknown }): string | undefined =>
    issue.code !== 'invalid_type' ? undefined : issue.input === undefined ? missing : mistyped;
/** An identity field; `what` says, when it is missing, what it names. */
const identity = (what: string) =>
  z
    .string({ error: typeMessage(`required: ${what}`, `a string naming ${what}`) })
    .min(1, `empty: name ${what}`)
    .max(256, 'at most 256 characters')
    .regex(/^[^\s*?]*$/, 'use no spaces and no "*" or "?" (rules match identities with globs)');

/** What a caller sends to start a run. Tenant and principal are required; the trace is continued or started. */
export const RunRequest = z.strictObject({
  input: z
    .string({ error: typeMessage('required: the question or task, as a string', 'the question or task, as a string') })
    .min(1, 'the input is empty; send the question or task as "input"'),
  tenantId: identity('the tenant the run acts for'),
  principalId: identity('who asks: the user or service the run acts for'),
  sessionId: identity('the conversation the run belongs to').optional(),
  traceId: TraceId.optional(),
  traceparent: Traceparent.optional(),
});
export type RunRequest = z.infer<typeof RunRequest>;

/** The trace a run belongs to: the caller's, or a new one. */
export interface TraceContext {
  traceId: string;
  parentSpanId?: string;
}

/** Reads trace id and parent span id from a W3C `traceparent` header value. */
export function parseTraceparent(value: string): TraceContext | undefined {
  const match = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(value.trim());
  if (!match || match[1] === 'ff' || /^0+$/.test(match[2]!) || /^0+$/.test(match[3]!)) return undefined;
  return { traceId: match[2]!, parentSpanId: match[3]! };
}

/**
 * Parses a caller's request at the edge: a bad field throws an `invalid-input` error naming it.
 * @example
 * const request = parseRunRequest({ input: 'hi', tenantId: 'acme', principalId: 'u-1' }, { maxInputChars: 32_000, requireTraceId: false });
 */
export function parseRunRequest(value: unknown, options: { maxInputChars: number; requireTraceId: boolean }): RunRequest {
  const result = RunRequest.safeParse(value);
  if (!result.success) {
    throw new RunchartError('invalid-input', 'ingress', `ingress: the request is invalid: ${describeIssues(result.error)}`, { cause: result.error });
  }
  const request = result.data;
  if (request.input.length > options.maxInputChars) {
    throw new RunchartError(
      'invalid-input',
      'ingress',
      `ingress: the request is invalid: input: ${request.input.length} characters, over the limit of ${options.maxInputChars} (limits.max_input_chars)`,
    );
  }
  if (options.requireTraceId && !request.traceId && !request.traceparent) {
    throw new RunchartError(
      'invalid-input',
      'ingress',
      'ingress: the request is invalid: traceId: required because runtime.require_trace_id is true; send "traceId" or a W3C "traceparent"',
    );
  }
  return request;
}

/** A new W3C trace id: 32 hex digits from the UUID pool (cheaper than randomBytes per run). */
export function newTraceId(): string {
  return randomUUID().replaceAll('-', '');
}

/** The run's trace: `traceId` if given, else the `traceparent`'s, else a new one. */
export function traceContextFor(request: RunRequest, newTraceId: () => string): TraceContext {
  const parent = request.traceparent ? parseTraceparent(request.traceparent) : undefined;
  if (request.traceId) return { traceId: request.traceId, ...(parent && parent.traceId === request.traceId ? { parentSpanId: parent.parentSpanId } : {}) };
  if (parent) return parent;
  return { traceId: newTraceId() };
}
