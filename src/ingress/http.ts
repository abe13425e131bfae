import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { z } from 'zod';
import type { RunResult } from '../../machines/run/result.js';
import type { RunchartConfig } from '../config.js';
import { describeIssues, isRunchartError, RunchartError } from '../errors.js';
import type { LoggedRunEvent, Runtime } from '../runtime.js';
import { newTraceId, parseRunRequest, parseTraceparent, type RunRequest } from './request.js';

/**
 * What an error response's `kind` says, with its status: `invalid-input` 400, `unauthenticated`
 * 401, `forbidden` 403, `not-found` 404, `conflict` 409, `too-large` 413,
 * `unsupported-media-type` 415, `internal` 500, `unavailable` 503 (the server is shutting down).
 */
export type HttpErrorKind =
  | 'invalid-input'
  | 'unauthenticated'
  | 'forbidden'
  | 'not-found'
  | 'conflict'
  | 'too-large'
  | 'unsupported-media-type'
  | 'internal'
  | 'unavailable';

/** What `createHttpIngress` takes. */
export interface HttpIngressOptions {
  runtime: Runtime;
  /** The `http` section is read from it; defaults to `runtime.config`. */
  config?: RunchartConfig;
  /** Told about server-side failures and shutdowns that cut runs short; never given a key or a body. */
  onWarning?: (message: string, error?: unknown) => void;
  /**
   * A local operator credential: a request bearing it (`Authorization: Bearer <token>`) acts for
   * the tenant and principal its `x-runchart-tenant` and `x-runchart-principal` headers name, as
   * the command line does when it opens the store itself (an approver still passes policy stage
   * `approval`). `runchart serve` makes one per start and writes it with the server's URL to
   * `<store.dir>/server.json`, readable by the store's owner only, for `runchart approve` / `reject`.
   */
  operatorToken?: string;
}

/** A listening server; `close()` shuts it down gracefully and closes the runtime. */
export interface HttpListener {
  url: string;
  close(): Promise<void>;
}

/** The caller an API key stands for. */
export interface HttpCaller {
  tenantId: string;
  principalId: string;
}

/** The hono environment of the app: handlers find the authenticated caller as `c.get('caller')`. */
export type HttpEnv = { Variables: { caller: HttpCaller } };

/** The HTTP ingress: the hono app, and a way to serve it on Node. */
export interface HttpIngress {
  app: Hono<HttpEnv>;
  listen(options?: { port?: number; host?: string }): Promise<HttpListener>;
}

/** What each route's body looks like, for the hint of a refusal that cannot parse it. */
const examples = { run: '{"input": "what is 2+3?"}', cancel: '{"reason": "…"} (or no body)', approval: '{"decision": "approve"} or {"decision": "reject", "reason": "…"}' } as const;
const routes = 'GET /healthz, POST /v1/runs, GET /v1/runs, GET /v1/runs/:id, GET /v1/runs/:id/events, POST /v1/runs/:id/cancel, POST /v1/runs/:id/approvals/:callId';
/** How often an idle event stream sends a comment, so proxies keep it open. */
const HEARTBEAT_MS = 15_000;
const RUN_STATUSES = ['running', 'awaiting_approval', 'completed', 'denied', 'failed', 'cancelled'] as const;
/** After the grace period, how long stopped requests get to write their 503 before connections are cut. */
const FLUSH_MS = 1_000;

const CancelBody = z.strictObject({
  /** Recorded with the cancellation. */
  reason: z.string().min(1).max(2_000).optional(),
});

const ApprovalBody = z.strictObject({
  decision: z.enum(['approve', 'reject']),
  /** Recorded with a rejection. */
  reason: z.string().min(1).max(2_000).optional(),
  /** Binds an approval to the exact arguments the approver saw (the parked call's `argsHash`). */
  argsHash: z.string().regex(/^[0-9a-f]{64}$/, 'the sha256 of the call arguments as 64 lower-case hex characters (the parked call\'s "argsHash")').optional(),
});

/**
 * The sha256 of an API key, hex: what `http.api_keys[].sha256` holds.
 * @example
 * hashApiKey('rc_…'); // '9f86d0…'
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/**
 * A new random API key (`rc_…`) and its sha256; give the key to the caller, put the hash in the config.
 * @example
 * const { key, sha256 } = generateApiKey();
 */
export function generateApiKey(): { key: string; sha256: string } {
  const key = `rc_${randomBytes(24).toString('base64url')}`;
  return { key, sha256: hashApiKey(key) };
}

/**
 * The HTTP ingress on hono (DESIGN §4). Tenant and principal come only from the API key
 * (`Authorization: Bearer <key>` or `x-api-key`, matched by sha256 against `http.api_keys`).
 * A settled run answers 200 with its RunResult whatever its status (`completed`,
 * `awaiting_approval`, `denied`, `failed`, `cancelled`); a request the ingress refuses answers
 * 400. Every error is `{ error: { kind, message } }` (see {@link HttpErrorKind}). With
 * `Accept: text/event-stream`, `POST /v1/runs` streams `mark`, `delta` and `settled` events and
 * ends after the first `settled` (an `error` event instead when the run cannot settle); a client
 * that goes away does not stop its run.
 * @example
 * const ingress = createHttpIngress({ runtime });
 * const server = await ingress.listen({ port: 8787 });
 * process.once('SIGTERM', () => void server.close());
 */
export function createHttpIngress(options: HttpIngressOptions): HttpIngress {
  const { runtime } = options;
  const http = (options.config ?? runtime.config).http;
  const warn = options.onWarning ?? (() => {});
  const identify = keyring(http.api_keys);
  const operatorDigest = options.operatorToken ? createHash('sha256').update(options.operatorToken).digest() : undefined;
  /** The caller an operator request names, or undefined when the key is not the operator token. */
  function operatorCaller(key: string, c: Context): HttpCaller | undefined {
    if (!operatorDigest || !timingSafeEqual(operatorDigest, createHash('sha256').update(key).digest())) return undefined;
    const tenantId = c.req.header('x-runchart-tenant')?.trim();
    const principalId = c.req.header('x-runchart-principal')?.trim();
    if (!tenantId || !principalId) refuse(400, 'invalid-input', 'an operator request names whom it acts for: send the "x-runchart-tenant" and "x-runchart-principal" headers');
    return { tenantId, principalId };
  }
  /** Run results and reviews started here and not yet settled: shutdown waits for them. */
  const inFlight = new Set<Promise<unknown>>();
  let closing = false;
  /** Rung once shutdown has stopped the runtime: whoever still waits on a run answers 503. */
  const stopping = createStopBell();

  function track<T>(promise: Promise<T>): Promise<T> {
    const settled: Promise<unknown> = promise.then(
      () => inFlight.delete(settled),
      () => inFlight.delete(settled),
    );
    inFlight.add(settled);
    return promise;
  }

  /** The promise's value, or a 503 when shutdown stops the runtime first. */
  function unlessStopped<T>(promise: Promise<T>, runId: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onStop = () => reject(refusal(503, 'unavailable', stoppedMessage(runId)));
      const forget = stopping.whenRung(onStop);
      // A run the closing runtime stopped is a shutdown too, whichever of the two is heard first.
      promise.then(resolve, (error: unknown) => (closedRuntime(error) ? onStop() : reject(error))).finally(forget);
    });
  }

  const app = new Hono<HttpEnv>();

  app.use('*', async (_c, next) => {
    if (closing) {
      refuse(503, 'unavailable', 'the server is shutting down and takes no new requests; retry against another instance or after the restart');
    }
    await next();
  });

  app.get('/healthz', (c) => c.json({ ok: true }));

  app.use('/v1/*', async (c, next) => {
    const key = presentedKey(c);
    const caller = operatorCaller(key, c) ?? identify(key);
    if (!caller) refuse(401, 'unauthenticated', 'the API key is not recognized; check it, or ask the operator for a key (made with `runchart key`, listed by its sha256 under http.api_keys)');
    c.set('caller', caller);
    c.header('cache-control', 'no-store');
    await next();
  });

  app.post('/v1/runs', async (c) => {
    const body = await readJson(c, http.max_body_bytes, examples.run);
    const background = takeBackground(body);
    const request = runRequestFrom(body, c.get('caller'), c.req.header('traceparent'), runtime.config);
    const idempotencyKey = idempotencyKeyOf(c.req.header('idempotency-key'));
    if (stopping.rung) refuse(503, 'unavailable', 'the server shut down before the run could start; retry after the restart');
    const submitted = await track(runtime.submit(request, idempotencyKey === undefined ? {} : { idempotencyKey }));
    const { runId } = submitted;
    if (submitted.existing) c.header('idempotent-replayed', 'true');
    if (background) {
      c.header('location', `/v1/runs/${runId}`);
      return c.json({ runId, status: 'running', location: `/v1/runs/${runId}`, existing: submitted.existing }, 202);
    }
    if (c.req.header('accept')?.includes('text/event-stream')) {
      return eventStream(runId, (listener) => runtime.follow(runId, { tenantId: request.tenantId }, listener), stopping, { untilSettled: true, headers: submitted.existing ? { 'idempotent-replayed': 'true' } : {} });
    }
    const result = await unlessStopped(track(submitted.result()), runId);
    // The runtime parses again and may still refuse the request (ingress checks beyond the schema).
    if (result.status === 'failed' && result.error?.kind === 'invalid-input' && result.error.layer === 'ingress') refuse(400, 'invalid-input', result.error.message);
    return c.json(result, 200);
  });

  app.get('/v1/runs', async (c) => {
    const { tenantId } = c.get('caller');
    const statusText = c.req.query('status');
    const status = statusText === undefined ? undefined : statusText.split(',').map((value) => value.trim());
    for (const value of status ?? []) {
      if (!(RUN_STATUSES as readonly string[]).includes(value)) refuse(400, 'invalid-input', `status: "${value.slice(0, 40)}" is not a run status; use one or more of ${RUN_STATUSES.join(', ')}, separated by commas`);
    }
    const limitText = c.req.query('limit') ?? '20';
    const limit = Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) refuse(400, 'invalid-input', `limit: "${limitText.slice(0, 20)}" is not a whole number from 1 to 100`);
    const cursor = c.req.query('cursor');
    const after = cursor === undefined ? undefined : parseCursor(cursor);
    const page = await runtime.list({ tenantId, ...(status ? { status: status as (typeof RUN_STATUSES)[number][] } : {}), limit: limit + 1, ...(after ? { after } : {}) });
    const runs = page.slice(0, limit);
    const last = runs.at(-1);
    return c.json({ runs, nextCursor: page.length > limit && last ? cursorOf(last) : null }, 200);
  });

  app.get('/v1/runs/:id/events', async (c) => {
    const runId = c.req.param('id');
    const { tenantId } = c.get('caller');
    const lastId = c.req.header('last-event-id') ?? c.req.query('after');
    const after = lastId === undefined ? 0 : Number(lastId);
    if (!Number.isInteger(after) || after < 0) refuse(400, 'invalid-input', `Last-Event-ID: "${String(lastId).slice(0, 20)}" is not an event id; send the id of the last event you received`);
    const current = await runtime.get(runId, { tenantId });
    if (!current) refuse(404, 'not-found', notFoundMessage(runId));
    return eventStream(runId, (listener) => runtime.follow(runId, { tenantId, after }, listener), stopping, {
      untilSettled: false,
      // A finished run whose events this server no longer has: its result, once.
      ...(isFinal(current.status) ? { ifSilent: current } : {}),
    });
  });

  app.post('/v1/runs/:id/cancel', async (c) => {
    const runId = c.req.param('id');
    const { tenantId } = c.get('caller');
    const hasBody = (c.req.header('content-length') ?? '0') !== '0' || c.req.header('transfer-encoding') !== undefined;
    const body = hasBody ? await readJson(c, http.max_body_bytes, examples.cancel) : {};
    rejectIdentityFields(body, examples.cancel);
    const parsed = CancelBody.safeParse(body);
    if (!parsed.success) refuse(400, 'invalid-input', `the cancel is invalid: ${describeIssues(parsed.error)}; send no body, or {"reason": "…"}`);
    const current = await runtime.get(runId, { tenantId });
    if (!current) refuse(404, 'not-found', notFoundMessage(runId));
    if (isFinal(current.status)) refuse(409, 'conflict', `run "${runId}" is ${current.status}; there is nothing to cancel`);
    try {
      await runtime.cancel(runId, { tenantId, ...(parsed.data.reason ? { reason: parsed.data.reason } : {}) });
    } catch (error) {
      if (isRunchartError(error) && error.kind === 'invalid-input') refuse(409, 'conflict', error.message);
      throw error;
    }
    c.header('location', `/v1/runs/${runId}`);
    return c.json({ runId, status: 'cancelling', location: `/v1/runs/${runId}` }, 202);
  });

  app.get('/v1/runs/:id', async (c) => {
    const runId = c.req.param('id');
    const result = await runtime.get(runId, { tenantId: c.get('caller').tenantId });
    if (!result) refuse(404, 'not-found', notFoundMessage(runId));
    return c.json(result, 200);
  });

  app.post('/v1/runs/:id/approvals/:callId', async (c) => {
    const runId = c.req.param('id');
    const callId = c.req.param('callId');
    const { tenantId, principalId } = c.get('caller');
    const body = await readJson(c, http.max_body_bytes, examples.approval);
    rejectIdentityFields(body, examples.approval);
    const parsed = ApprovalBody.safeParse(body);
    if (!parsed.success) refuse(400, 'invalid-input', `the approval is invalid: ${describeIssues(parsed.error)}; send {"decision": "approve"} or {"decision": "reject", "reason": "…"}`);
    const { decision, reason, argsHash } = parsed.data;
    const current = await runtime.get(runId, { tenantId });
    if (!current) refuse(404, 'not-found', notFoundMessage(runId));
    const parked = current.status === 'awaiting_approval' ? current.toolCalls.at(-1) : undefined;
    if (!parked) refuse(409, 'conflict', `run "${runId}" is ${current.status}; no call is awaiting approval`);
    if (parked.callId !== callId) refuse(409, 'conflict', `run "${runId}" has no call "${callId}" awaiting approval; the parked call is "${parked.callId}"`);
    if (stopping.rung) refuse(503, 'unavailable', stoppedMessage(runId));
    const review =
      decision === 'approve'
        ? runtime.approve(runId, callId, { principalId, tenantId, ...(argsHash ? { argsHash } : {}) })
        : runtime.reject(runId, callId, { principalId, tenantId, ...(reason ? { reason } : {}) });
    try {
      return c.json(await unlessStopped(track(review), runId), 200);
    } catch (error) {
      // Existence and state were checked above, so a refusal here is the approver's (policy) or a race or argsHash mismatch.
      if (isRunchartError(error) && error.kind === 'invalid-input') {
        refuse(error.layer === 'policy' ? 403 : 409, error.layer === 'policy' ? 'forbidden' : 'conflict', error.message);
      }
      throw error;
    }
  });

  app.notFound((c) => problem(404, 'not-found', `no route for ${c.req.method} ${c.req.path}; this API serves ${routes}`));

  app.onError((error, c) => {
    if (error instanceof HTTPException) return error.getResponse();
    warn(`http: ${c.req.method} ${c.req.path} failed`, error);
    const message = isRunchartError(error) ? error.message : 'the server failed while handling the request; the server log has the details';
    return problem(500, 'internal', message);
  });

  let listening = false;

  async function listen(listenOptions: { port?: number; host?: string } = {}): Promise<HttpListener> {
    if (listening) throw new RunchartError('invalid-input', 'ingress', 'http: this ingress listens already; an ingress serves once, since its close() closes the runtime');
    listening = true;
    const port = listenOptions.port ?? http.port;
    const host = listenOptions.host ?? http.host;
    if (!runtime.logsEvents) warn('http: the runtime logs no run events (createRuntime({ eventLog: true })), so event streams start at the moment they are opened and cannot resume from Last-Event-ID');
    if (http.api_keys.length === 0) warn('http: no API keys are configured (http.api_keys), so every /v1 request is refused with 401; make one with `runchart key`');
    // Our own Request/Response globals stay in place: an embedding host may rely on them.
    const server = createAdaptorServer({ fetch: app.fetch, overrideGlobalObjects: false }) as Server;
    const responses = new Set<Promise<void>>();
    server.on('request', (_incoming, outgoing: ServerResponse) => {
      const done = new Promise<void>((resolve) => outgoing.once('close', () => resolve()));
      responses.add(done);
      void done.then(() => responses.delete(done));
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      listening = false;
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new RunchartError('invalid-input', 'ingress', `http: cannot listen on ${host}:${port} (${code}); free the port or pick another with --port or http.port`, { cause: error });
    }
    const address = server.address() as AddressInfo;
    const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    let closed: Promise<void> | undefined;
    return { url, close: () => (closed ??= shutdown(server, responses)) };
  }

  /** Stops accepting, waits up to the grace period for requests and runs, then closes the runtime. */
  async function shutdown(server: Server, responses: Set<Promise<void>>): Promise<void> {
    closing = true;
    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const grace = http.shutdown_grace_ms;
    const pending = () => new Set<Promise<unknown>>([...responses, ...inFlight]);
    if (!(await settleWithin(pending, grace))) {
      warn(`http: requests or runs were still in flight after ${grace} ms (http.shutdown_grace_ms); stopping them. Unfinished runs stay in the run store and resume with runtime.recover()`);
    }
    let failure: unknown;
    try {
      await runtime.close();
    } catch (error) {
      failure = error;
    }
    stopping.ring();
    await settleWithin(() => responses, FLUSH_MS);
    server.closeAllConnections();
    await serverClosed;
    if (failure !== undefined) throw failure;
  }

  return { app, listen };
}

/** Waits until `pending()` is empty (it may grow meanwhile) or `ms` pass; true when it emptied. */
async function settleWithin(pending: () => Set<Promise<unknown>>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const drained = (async () => {
    for (let waiting = pending(); waiting.size > 0; waiting = pending()) await Promise.allSettled(waiting);
    return true as const;
  })();
  try {
    return await Promise.race([drained, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A function from a presented key to its caller; every configured hash is compared, in constant time. */
function keyring(keys: RunchartConfig['http']['api_keys']): (key: string) => HttpCaller | undefined {
  const entries = keys.map((key) => ({ digest: Buffer.from(key.sha256, 'hex'), caller: { tenantId: key.tenant, principalId: key.principal } }));
  return (key) => {
    const digest = createHash('sha256').update(key).digest();
    let found: HttpCaller | undefined;
    for (const entry of entries) if (timingSafeEqual(entry.digest, digest) && !found) found = entry.caller;
    return found;
  };
}

function presentedKey(c: Context): string {
  const authorization = c.req.header('authorization');
  if (authorization !== undefined) {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (!match) refuse(401, 'unauthenticated', 'the Authorization header must read "Bearer <key>"');
    return match[1]!;
  }
  const key = c.req.header('x-api-key')?.trim();
  if (!key) refuse(401, 'unauthenticated', 'no API key: send "Authorization: Bearer <key>" or "x-api-key: <key>"');
  return key;
}

/** Reads the body as JSON within `limit` bytes, checking the declared length and the bytes actually read. */
async function readJson(c: Context, limit: number, example: string): Promise<unknown> {
  const type = c.req.header('content-type');
  if (!type || !/^application\/json[ \t]*(;|$)/i.test(type)) {
    refuse(415, 'unsupported-media-type', `the body must be JSON: send "Content-Type: application/json" (got ${type ? JSON.stringify(type) : 'no Content-Type'})`);
  }
  const declared = Number(c.req.header('content-length'));
  if (declared > limit) refuse(413, 'too-large', `the body is ${declared} bytes, over the limit of ${limit} (http.max_body_bytes); send a shorter body`);
  const bytes = await readLimited(c.req.raw.body, limit);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    refuse(400, 'invalid-input', 'the body is not valid UTF-8; send JSON encoded as UTF-8');
  }
  if (text.trim() === '') refuse(400, 'invalid-input', `the body is empty; send a JSON object such as ${example}`);
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    refuse(400, 'invalid-input', `the body is not valid JSON (${(error as Error).message}); send a JSON object such as ${example}`);
  }
}

async function readLimited(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Uint8Array> {
  if (!body) return new Uint8Array();
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return Buffer.concat(chunks);
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      refuse(413, 'too-large', `the body is over the limit of ${limit} bytes (http.max_body_bytes); send a shorter body`);
    }
    chunks.push(value);
  }
}

/** A body naming its own tenant or principal is refused: both come from the key. */
function rejectIdentityFields(body: unknown, example: string): asserts body is Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) refuse(400, 'invalid-input', `the body must be a JSON object such as ${example}`);
  for (const field of ['tenantId', 'principalId']) {
    if (field in body) refuse(400, 'invalid-input', `${field}: not accepted in the body; tenant and principal come from the API key (use a key issued for the tenant and principal you need)`);
  }
}

/** The run request: the body's fields, the key's identity, and the caller's trace context. */
function runRequestFrom(body: unknown, caller: HttpCaller, traceparent: string | undefined, config: RunchartConfig): RunRequest {
  rejectIdentityFields(body, examples.run);
  const accepted = new Set(['input', 'sessionId', 'traceId']);
  for (const field of Object.keys(body)) {
    if (!accepted.has(field)) {
      refuse(400, 'invalid-input', `${JSON.stringify(field.slice(0, 64))}: unknown field; the body takes "input", "sessionId" and "traceId" (tenant and principal come from the API key, the trace may come from a "traceparent" header)`);
    }
  }
  // W3C Trace Context: the server is an ingress, so it continues the caller's trace or starts one
  // (a traceparent that does not parse is ignored, as the spec says).
  const parent =
    traceparent !== undefined && parseTraceparent(traceparent)
      ? { traceparent: traceparent.trim() }
      : (body as { traceId?: unknown }).traceId === undefined
        ? { traceId: newTraceId() }
        : {};
  try {
    return parseRunRequest(
      Object.assign({}, body, { tenantId: caller.tenantId, principalId: caller.principalId }, parent),
      { maxInputChars: config.limits.max_input_chars, requireTraceId: config.runtime.require_trace_id },
    );
  } catch (error) {
    if (isRunchartError(error)) refuse(400, 'invalid-input', error.message);
    throw error;
  }
}

/** The run as server-sent events: one per stream event, ending after the first `settled`. */
/**
 * Tells every waiting request that shutdown has stopped the runtime. A plain set of callbacks, not
 * an AbortSignal: a thousand requests in flight would be a thousand listeners on one signal.
 */
function createStopBell() {
  const waiting = new Set<() => void>();
  let rung = false;
  // long-lived: one per server (made once, so its getters cost no run anything; test/unit/object-literals.test.ts)
  return {
    get rung() {
      return rung;
    },
    /** Calls `onStop` when the bell rings (at once if it has); returns a way to stop waiting. */
    whenRung(onStop: () => void): () => void {
      if (rung) {
        onStop();
        return () => {};
      }
      waiting.add(onStop);
      return () => void waiting.delete(onStop);
    },
    ring() {
      rung = true;
      for (const onStop of [...waiting]) onStop();
      waiting.clear();
    },
  };
}

/**
 * A run's events as server-sent events: `id:` (resume with `Last-Event-ID`), `event:` its kind
 * (`state.enter`, `decision`, `tool.call`, …, `delta`, `settled`) and `data:` its JSON. Ends after
 * the first `settled` (`untilSettled`) or the final one; an `error` event when shutdown cuts it.
 */
function eventStream(
  runId: string,
  follow: (listener: (event: LoggedRunEvent) => void) => () => void,
  stopped: ReturnType<typeof createStopBell>,
  options: { untilSettled: boolean; ifSilent?: RunResult; headers?: Record<string, string> },
): Response {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let finished = false;
  const write = (text: string) => {
    if (!finished) controller.enqueue(encoder.encode(text));
  };
  const send = (event: string, data: unknown, id?: number) => write(`${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  let unfollow = () => {};
  let forgetStop = () => {};
  let heartbeat: NodeJS.Timeout | undefined;
  let silence: NodeJS.Timeout | undefined;
  const end = () => {
    if (finished) return false;
    finished = true;
    unfollow();
    forgetStop();
    clearInterval(heartbeat);
    clearTimeout(silence);
    return true;
  };
  const finish = () => void (end() && controller.close());
  const onStop = () => (send('error', errorBody('unavailable', stoppedMessage(runId))), finish());

  const stream = new ReadableStream<Uint8Array>({
    start(streamController) {
      controller = streamController;
      let heard = false;
      unfollow = follow((event) => {
        heard = true;
        send(event.kind, event.data, event.id);
        if (event.kind === 'settled' && (options.untilSettled || isFinal((event.data as RunResult).status))) finish();
      });
      // Replayed to its end already: nothing to wait for.
      if (finished) return unfollow();
      forgetStop = stopped.whenRung(onStop);
      heartbeat = setInterval(() => write(': keep-alive\n\n'), HEARTBEAT_MS);
      heartbeat.unref();
      if (options.ifSilent) {
        const result = options.ifSilent;
        silence = setTimeout(() => {
          if (!heard) (send('settled', result), finish());
        }, 250);
      }
    },
    // The client went away; the run goes on and can be fetched with GET /v1/runs/:id.
    cancel: () => void end(),
  });
  return new Response(stream, {
    status: 200,
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no', ...(options.headers ?? {}) },
  });
}

function isFinal(status: string): boolean {
  return status === 'completed' || status === 'denied' || status === 'failed' || status === 'cancelled';
}

/** The `background` field of a run request (taken out of the body, which then holds the run request alone). */
function takeBackground(body: unknown): boolean {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !('background' in body)) return false;
  const { background } = body as { background: unknown };
  delete (body as { background?: unknown }).background;
  if (typeof background !== 'boolean') refuse(400, 'invalid-input', `background: must be true or false (got ${JSON.stringify(background)?.slice(0, 40)}); true answers 202 at once with the run's id`);
  return background;
}

/** The `Idempotency-Key` header: 1 to 255 visible ASCII characters. */
function idempotencyKeyOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const key = header.trim();
  if (!/^[\x21-\x7e]{1,255}$/.test(key)) refuse(400, 'invalid-input', 'Idempotency-Key: use 1 to 255 visible ASCII characters (a UUID is a good key); the same key returns the run it first started');
  return key;
}

/** The opaque cursor of a listing page: where the next page starts. */
function cursorOf(run: { updatedAt: number; runId: string }): string {
  return Buffer.from(JSON.stringify([run.updatedAt, run.runId])).toString('base64url');
}

function parseCursor(cursor: string): { updatedAt: number; runId: string } {
  try {
    const [updatedAt, runId] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof updatedAt === 'number' && typeof runId === 'string') return { updatedAt, runId };
  } catch {
    // refused below
  }
  refuse(400, 'invalid-input', 'cursor: not a cursor this server gave out; pass the "nextCursor" of the page before, unchanged');
}

/** The runtime closed under a waiting caller (shutdown); the run stays resumable. */
function closedRuntime(error: unknown): boolean {
  return isRunchartError(error) && error.kind === 'cancelled' && error.layer === 'runtime';
}

function errorBody(kind: HttpErrorKind, message: string) {
  return { error: { kind, message } };
}

function problem(status: ContentfulStatusCode, kind: HttpErrorKind, message: string): Response {
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };
  if (status === 401) headers['www-authenticate'] = 'Bearer';
  if (status === 503) headers.connection = 'close';
  return new Response(JSON.stringify(errorBody(kind, message)), { status, headers });
}

function refusal(status: ContentfulStatusCode, kind: HttpErrorKind, message: string): HTTPException {
  return new HTTPException(status, { res: problem(status, kind, message), message });
}

function refuse(status: ContentfulStatusCode, kind: HttpErrorKind, message: string): never {
  throw refusal(status, kind, message);
}

function notFoundMessage(runId: string): string {
  return `no run ${JSON.stringify(runId)} for your tenant; check the run id (a run is visible only to keys of its own tenant)`;
}

function stoppedMessage(runId: string): string {
  return `the server shut down before run "${runId}" settled; the run is kept in the run store and resumes when the server starts again; fetch it then with GET /v1/runs/${runId}`;
}
