import { afterEach, describe, expect, it } from 'vitest';
import { createRuntime, type ModelAdapter, type PolicyRule, type RunchartConfigInput, type RunResult, type RunStore } from '../../src/index.js';
import { createHttpIngress, generateApiKey, hashApiKey, type HttpListener } from '../../src/ingress/http.js';
import { createInMemoryRunStore, scriptedModel, type ScriptedStep } from '../../src/testing/index.js';
import { allowRuns, deferred, spiedRefund, untilAborted } from '../support/scenario.js';

const refundsNeedApproval: PolicyRule = { id: 'refunds-need-approval', stage: 'tool', effect: 'require_approval', capabilities: ['payments.*'] };
const managersApprove: PolicyRule = { id: 'managers-approve-refunds', stage: 'approval', effect: 'allow', capabilities: ['payments.*'], principals: ['manager'] };

const keys = { clerk: generateApiKey(), manager: generateApiKey(), rival: generateApiKey() };
const apiKeys = [
  { sha256: keys.clerk.sha256, tenant: 'acme', principal: 'clerk', name: 'acme clerk' },
  { sha256: keys.manager.sha256, tenant: 'acme', principal: 'manager' },
  { sha256: keys.rival.sha256, tenant: 'globex', principal: 'clerk' },
];

const listeners: HttpListener[] = [];
afterEach(async () => {
  await Promise.all(listeners.splice(0).map((listener) => listener.close()));
});

/** A runtime behind a real HTTP server on 127.0.0.1, port 0. */
async function serve(options: { model?: ModelAdapter; steps?: ScriptedStep[]; http?: RunchartConfigInput['http']; runStore?: RunStore; rules?: PolicyRule[]; operatorToken?: string } = {}) {
  const refund = spiedRefund();
  const model = options.model ?? scriptedModel(options.steps ?? []);
  const runtime = createRuntime({
    config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, http: { api_keys: apiKeys, ...options.http }, policy: { rules: options.rules ?? [allowRuns, refundsNeedApproval, managersApprove] } },
    model,
    capabilities: [refund.capability],
    ...(options.runStore ? { runStore: options.runStore } : {}),
    eventLog: true,
  });
  const warnings: string[] = [];
  const ingress = createHttpIngress({ runtime, onWarning: (message) => void warnings.push(message), ...(options.operatorToken ? { operatorToken: options.operatorToken } : {}) });
  const listener = await ingress.listen({ port: 0, host: '127.0.0.1' });
  listeners.push(listener);
  const call = (path: string, init: RequestInit & { key?: string | undefined; json?: unknown } = {}) => {
    const { key, json, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (key) headers.set('authorization', `Bearer ${key}`);
    if (json !== undefined) headers.set('content-type', 'application/json');
    return fetch(`${listener.url}${path}`, { ...rest, headers, ...(json !== undefined ? { method: rest.method ?? 'POST', body: JSON.stringify(json) } : {}) });
  };
  return { runtime, listener, call, refund, warnings, model };
}

async function errorOf(response: Response): Promise<{ kind: string; message: string }> {
  const body = (await response.json()) as { error: { kind: string; message: string } };
  expect(Object.keys(body)).toEqual(['error']);
  return body.error;
}

/** A model that answers only when released (or fails when its signal aborts). */
function gatedModel(text: string) {
  const called = deferred();
  const release = deferred();
  const signals: AbortSignal[] = [];
  const model: ModelAdapter = {
    name: 'gated',
    async step(_request, { signal }) {
      signals.push(signal);
      called.resolve();
      await Promise.race([release.promise, untilAborted(signal)]);
      return { text, toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
    },
  };
  return { model, signals, called: called.promise, release: () => release.resolve() };
}

/** Parses a text/event-stream body into its events. */
function parseEvents(text: string): { event: string; data: unknown }[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((line) => line.startsWith('event: '))!.slice('event: '.length);
      const data = lines
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice('data: '.length))
        .join('\n');
      return { event, data: JSON.parse(data) as unknown };
    });
}

const refundCall = { toolCalls: [{ name: 'payments_refund', arguments: { orderId: 'o-1', amount: 20 }, id: 'refund-1' }] };

describe('http ingress', () => {
  it('answers /healthz without a key', async () => {
    const { call } = await serve();
    const response = await call('/healthz');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
  });

  it('refuses a request without a key with 401, saying how to send one', async () => {
    const { call, model } = await serve();
    const response = await call('/v1/runs', { json: { input: 'hi' } });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toBe('Bearer');
    const error = await errorOf(response);
    expect(error.kind).toBe('unauthenticated');
    expect(error.message).toContain('Authorization: Bearer <key>');
    (model as ReturnType<typeof scriptedModel>).verify();
  });

  it('refuses an unknown key with 401 and does not echo it', async () => {
    const { call } = await serve();
    const wrong = generateApiKey().key;
    const response = await call('/v1/runs', { key: wrong, json: { input: 'hi' } });
    expect(response.status).toBe(401);
    const error = await errorOf(response);
    expect(error.kind).toBe('unauthenticated');
    expect(error.message).toContain('not recognized');
    expect(error.message).not.toContain(wrong);
    expect((await call('/v1/runs/x', { headers: { authorization: `Basic ${wrong}` } })).status).toBe(401);
  });

  it('runs a request as the tenant and principal of the key (Bearer or x-api-key)', async () => {
    const { call } = await serve({ steps: [{ text: 'five' }, { text: 'six' }] });

    const response = await call('/v1/runs', { key: keys.clerk.key, json: { input: 'what is 2+3?', sessionId: 's-1' } });
    expect(response.status).toBe(200);
    const result = (await response.json()) as RunResult;
    expect(result).toMatchObject({ status: 'completed', output: 'five', tenantId: 'acme', principalId: 'clerk' });

    const byHeader = await call('/v1/runs', { headers: { 'x-api-key': keys.rival.key }, json: { input: 'and 3+3?' } });
    expect(await byHeader.json()).toMatchObject({ status: 'completed', output: 'six', tenantId: 'globex', principalId: 'clerk' });

    const fetched = await call(`/v1/runs/${result.runId}`, { key: keys.manager.key });
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toMatchObject({ runId: result.runId, status: 'completed', output: 'five' });
  });

  it.each([
    ['tenantId', { input: 'hi', tenantId: 'globex' }],
    ['principalId', { input: 'hi', principalId: 'manager' }],
  ])('refuses a body naming its own %s with 400, starting no run', async (field, body) => {
    const { call, runtime } = await serve();
    const response = await call('/v1/runs', { key: keys.clerk.key, json: body });
    expect(response.status).toBe(400);
    const error = await errorOf(response);
    expect(error.kind).toBe('invalid-input');
    expect(error.message).toContain(field);
    expect(error.message).toContain('tenant and principal come from the API key');
    expect(await runtime.list({ tenantId: 'acme' })).toEqual([]);
  });

  it('refuses an unknown field and an invalid field value with 400 naming them', async () => {
    const { call } = await serve();
    const unknown = await errorOf(await call('/v1/runs', { key: keys.clerk.key, json: { input: 'hi', role: 'admin' } }));
    expect(unknown).toMatchObject({ kind: 'invalid-input' });
    expect(unknown.message).toContain('"role": unknown field');
    const invalid = await call('/v1/runs', { key: keys.clerk.key, json: { input: 'hi', traceId: 'abc' } });
    expect(invalid.status).toBe(400);
    expect((await errorOf(invalid)).message).toContain('traceId');
  });

  it('parks a call for approval, refuses a clerk (403) and a wrong call (409), and completes on the manager\'s approval', async () => {
    const { call, refund } = await serve({ steps: [refundCall, { text: 'refunded' }] });

    const parked = (await (await call('/v1/runs', { key: keys.clerk.key, json: { input: 'refund order o-1' } })).json()) as RunResult;
    expect(parked.status).toBe('awaiting_approval');
    const callId = parked.toolCalls.at(-1)!.callId;
    const approvals = (id: string) => `/v1/runs/${parked.runId}/approvals/${id}`;

    const byClerk = await call(approvals(callId), { key: keys.clerk.key, json: { decision: 'approve' } });
    expect(byClerk.status).toBe(403);
    const refusal = await errorOf(byClerk);
    expect(refusal.kind).toBe('forbidden');
    expect(refusal.message).toContain('clerk');
    expect(refusal.message).toContain('default-deny');

    const wrongCall = await call(approvals('c9.9'), { key: keys.manager.key, json: { decision: 'approve' } });
    expect(wrongCall.status).toBe(409);
    expect(await errorOf(wrongCall)).toMatchObject({ kind: 'conflict', message: expect.stringContaining(callId) });
    expect(refund.calls).toHaveLength(0);

    const badBody = await call(approvals(callId), { key: keys.manager.key, json: { decision: 'maybe' } });
    expect(badBody.status).toBe(400);
    expect((await errorOf(badBody)).message).toContain('decision');
    // A body that is not JSON, or not an object, is told what an approval's body looks like.
    for (const body of ['nope', '[]']) {
      const unparsed = await call(approvals(callId), { key: keys.manager.key, method: 'POST', headers: { 'content-type': 'application/json' }, body });
      expect(unparsed.status, body).toBe(400);
      expect((await errorOf(unparsed)).message, body).toMatch(/ such as \{"decision": "approve"\} or \{"decision": "reject", "reason": "…"\}$/);
    }

    const approved = await call(approvals(callId), { key: keys.manager.key, json: { decision: 'approve', argsHash: parked.toolCalls.at(-1)!.argsHash } });
    expect(approved.status).toBe(200);
    const done = (await approved.json()) as RunResult;
    expect(done).toMatchObject({ status: 'completed', output: 'refunded', tenantId: 'acme', principalId: 'clerk' });
    expect(done.toolCalls[0]!.approval).toMatchObject({ verdict: 'allow', principalId: 'manager' });
    expect(refund.calls).toHaveLength(1);

    const again = await call(approvals(callId), { key: keys.manager.key, json: { decision: 'approve' } });
    expect(again.status).toBe(409);
    expect(refund.calls).toHaveLength(1);
  });

  it('takes the operator token as the tenant and principal its headers name, still behind the approval policy', async () => {
    const operatorToken = 'rco_local-operator-token';
    const { call, refund } = await serve({ steps: [refundCall, { text: 'refunded' }], operatorToken });
    const parked = (await (await call('/v1/runs', { key: keys.clerk.key, json: { input: 'refund order o-1' } })).json()) as RunResult;
    const approvals = `/v1/runs/${parked.runId}/approvals/${parked.toolCalls.at(-1)!.callId}`;
    const as = (tenant: string | undefined, principal: string | undefined) => ({
      key: operatorToken,
      headers: { ...(tenant ? { 'x-runchart-tenant': tenant } : {}), ...(principal ? { 'x-runchart-principal': principal } : {}) },
      json: { decision: 'approve' },
    });

    const unnamed = await call(approvals, as('acme', undefined));
    expect(unnamed.status).toBe(400);
    expect((await errorOf(unnamed)).message).toContain('x-runchart-principal');
    expect((await call(approvals, as('acme', 'clerk'))).status).toBe(403);
    expect((await call(approvals, as('globex', 'manager'))).status).toBe(404);
    expect((await call(approvals, { ...as('acme', 'manager'), key: 'rco_not-the-token' })).status).toBe(401);
    expect(refund.calls).toHaveLength(0);

    const approved = await call(approvals, as('acme', 'manager'));
    expect(approved.status).toBe(200);
    expect(((await approved.json()) as RunResult).toolCalls[0]!.approval).toMatchObject({ verdict: 'allow', principalId: 'manager' });
    expect(refund.calls).toHaveLength(1);
  });

  it('has no operator token unless one is given', async () => {
    const { call } = await serve();
    const response = await call('/v1/runs/x', { key: 'rco_anything', headers: { 'x-runchart-tenant': 'acme', 'x-runchart-principal': 'manager' } });
    expect(response.status).toBe(401);
  });

  it('records a rejection with its reason', async () => {
    const { call, refund } = await serve({ steps: [refundCall, { text: 'no refund then' }] });
    const parked = (await (await call('/v1/runs', { key: keys.clerk.key, json: { input: 'refund order o-1' } })).json()) as RunResult;

    const rejected = await call(`/v1/runs/${parked.runId}/approvals/${parked.toolCalls.at(-1)!.callId}`, {
      key: keys.manager.key,
      json: { decision: 'reject', reason: 'not eligible' },
    });

    expect(rejected.status).toBe(200);
    expect(await rejected.json()).toMatchObject({ status: 'completed', output: 'no refund then' });
    expect(refund.calls).toHaveLength(0);
  });

  it('answers 404 for another tenant\'s run, on GET and on approval, exactly as for an unknown run', async () => {
    const { call, refund } = await serve({ steps: [refundCall] });
    const parked = (await (await call('/v1/runs', { key: keys.clerk.key, json: { input: 'refund order o-1' } })).json()) as RunResult;
    const callId = parked.toolCalls.at(-1)!.callId;

    const get = await call(`/v1/runs/${parked.runId}`, { key: keys.rival.key });
    expect(get.status).toBe(404);
    const hidden = await errorOf(get);
    expect(hidden.kind).toBe('not-found');
    const unknown = await errorOf(await call('/v1/runs/no-such-run', { key: keys.rival.key }));
    expect(hidden.message.replace(parked.runId, 'ID')).toBe(unknown.message.replace('no-such-run', 'ID'));

    const approval = await call(`/v1/runs/${parked.runId}/approvals/${callId}`, { key: keys.rival.key, json: { decision: 'approve' } });
    expect(approval.status).toBe(404);
    expect(refund.calls).toHaveLength(0);
    expect((await (await call(`/v1/runs/${parked.runId}`, { key: keys.clerk.key })).json()) as RunResult).toMatchObject({ status: 'awaiting_approval' });
  });

  it('refuses a body over http.max_body_bytes with 413, by Content-Length and by the bytes read', async () => {
    const { call, runtime } = await serve({ http: { max_body_bytes: 1024 } });
    const big = JSON.stringify({ input: 'x'.repeat(4096) });

    const declared = await call('/v1/runs', { key: keys.clerk.key, method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
    expect(declared.status).toBe(413);
    expect(await errorOf(declared)).toMatchObject({ kind: 'too-large', message: expect.stringContaining('http.max_body_bytes') });

    const bytes = new TextEncoder().encode(big);
    const chunked = await call('/v1/runs', {
      key: keys.clerk.key,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new ReadableStream({
        start(controller) {
          for (let offset = 0; offset < bytes.length; offset += 512) controller.enqueue(bytes.slice(offset, offset + 512));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect((await errorOf(chunked)).kind).toBe('too-large');
    expect(await runtime.list({ tenantId: 'acme' })).toEqual([]);
  });

  it('refuses malformed JSON with 400 naming the problem, and another content type with 415', async () => {
    const { call } = await serve();
    const text = '{"input": }';
    const parseError = (() => {
      try {
        JSON.parse(text);
      } catch (error) {
        return (error as Error).message;
      }
    })()!;

    const malformed = await call('/v1/runs', { key: keys.clerk.key, method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
    expect(malformed.status).toBe(400);
    const error = await errorOf(malformed);
    expect(error.kind).toBe('invalid-input');
    expect(error.message).toContain('not valid JSON');
    expect(error.message).toContain(parseError);

    const plain = await call('/v1/runs', { key: keys.clerk.key, method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'what is 2+3?' });
    expect(plain.status).toBe(415);
    expect(await errorOf(plain)).toMatchObject({ kind: 'unsupported-media-type', message: expect.stringContaining('application/json') });
  });

  it('continues the caller\'s trace from the traceparent header', async () => {
    const { call } = await serve({ steps: [{ text: 'ok' }] });
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const response = await call('/v1/runs', { key: keys.clerk.key, headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` }, json: { input: 'hi' } });
    expect(((await response.json()) as RunResult).traceId).toBe(traceId);
  });

  it('streams marks as server-sent events and ends after `settled`', async () => {
    const { call } = await serve({ steps: [refundCall] });
    const response = await call('/v1/runs', { key: keys.clerk.key, headers: { accept: 'text/event-stream' }, json: { input: 'refund order o-1' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');

    const events = parseEvents(await response.text());

    expect(events.at(-1)).toMatchObject({ event: 'settled', data: { status: 'awaiting_approval', tenantId: 'acme', principalId: 'clerk' } });
    expect(events.filter((event) => event.event === 'settled')).toHaveLength(1);
    // Each event is named by its kind; a mark's data is the mark.
    const marks = events.filter((event) => !['delta', 'settled', 'error'].includes(event.event)).map((event) => event.data as { kind: string; state?: string });
    expect(marks.every((mark, index) => mark.kind === events[index]!.event)).toBe(true);
    expect(marks.filter((mark) => mark.kind === 'state.enter').map((mark) => mark.state)).toEqual(expect.arrayContaining(['ingress', 'policy', 'modelStep']));
    expect(marks.some((mark) => mark.kind === 'decision')).toBe(true);
  });

  it('streams nothing of an answer the output policy denies: no delta, no text in a mark', async () => {
    const model: ModelAdapter = {
      name: 'streaming',
      async step(_request, { onDelta }) {
        onDelta?.({ text: 'the launch codes ' });
        onDelta?.({ text: 'are 0000' });
        return { text: 'the launch codes are 0000', toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
      },
    };
    const rules: PolicyRule[] = [
      { id: 'runs', stage: ['precheck', 'memory.write'], effect: 'allow' },
      { id: 'no-output', stage: 'output', effect: 'deny' },
    ];
    const { call } = await serve({ model, rules });
    const response = await call('/v1/runs', { key: keys.clerk.key, headers: { accept: 'text/event-stream' }, json: { input: 'tell me' } });
    const text = await response.text();
    const events = parseEvents(text);
    expect(events.at(-1)).toMatchObject({ event: 'settled', data: { status: 'denied', output: null } });
    expect(events.some((event) => event.event === 'delta')).toBe(false);
    expect(text).not.toContain('launch codes');
  });

  it('serves many waiting requests without a listener each on one shared signal (no MaxListenersExceededWarning)', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const waiting = 30;
      const release = deferred();
      let calls = 0;
      const allCalled = deferred();
      const model: ModelAdapter = {
        name: 'gated',
        async step() {
          if (++calls === waiting) allCalled.resolve();
          await release.promise;
          return { text: 'done', toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
        },
      };
      const { call } = await serve({ model });
      const responses = Array.from({ length: waiting }, (_, index) =>
        call('/v1/runs', { key: keys.clerk.key, ...(index % 2 ? { headers: { accept: 'text/event-stream' } } : {}), json: { input: `question ${index}` } }),
      );
      // Every request is in, waiting on its run, before any run is answered.
      await allCalled.promise;
      release.resolve();
      const statuses = await Promise.all(responses.map(async (response) => (await (await response).text(), (await response).status)));
      expect(statuses.every((status) => status === 200)).toBe(true);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning').map((warning) => warning.message)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('answers unknown routes with a JSON 404 listing the routes', async () => {
    const { call } = await serve();
    const response = await call('/v2/things', { key: keys.clerk.key });
    expect(response.status).toBe(404);
    expect((await errorOf(response)).message).toContain('POST /v1/runs');
  });

  it('on close, stops taking connections and waits within the grace period for a run in flight', async () => {
    const runStore = createInMemoryRunStore();
    const gated = gatedModel('finished while closing');
    const { call, listener } = await serve({ model: gated.model, runStore, http: { shutdown_grace_ms: 30_000 } });

    const response = call('/v1/runs', { key: keys.clerk.key, json: { input: 'take your time' } });
    await gated.called;
    let closed = false;
    const closing = listener.close().then(() => void (closed = true));

    const refusedOrUnavailable = await call('/healthz').then(
      (late) => late.status,
      () => 'refused',
    );
    expect([503, 'refused']).toContain(refusedOrUnavailable);
    // Not a threshold: a close that did not wait would have stopped the run by now; this one must not.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(closed).toBe(false);
    expect(gated.signals[0]!.aborted).toBe(false);

    gated.release();
    const answer = await response;
    expect(answer.status).toBe(200);
    const result = (await answer.json()) as RunResult;
    expect(result).toMatchObject({ status: 'completed', output: 'finished while closing' });
    await closing;
    expect((await runStore.load(result.runId))?.status).toBe('completed');
    expect(await runStore.listActive()).toEqual([]);
  });

  it('with no grace left, stops the run, answers 503, and keeps the run resumable in the store', async () => {
    const runStore = createInMemoryRunStore();
    const gated = gatedModel('never');
    const { call, listener, warnings } = await serve({ model: gated.model, runStore, http: { shutdown_grace_ms: 0 } });

    const response = call('/v1/runs', { key: keys.clerk.key, json: { input: 'take your time' } });
    await gated.called;
    await listener.close();

    const answer = await response;
    expect(answer.status).toBe(503);
    const error = await errorOf(answer);
    expect(error.kind).toBe('unavailable');
    const active = await runStore.listActive();
    expect(active).toHaveLength(1);
    expect(active[0]).toMatchObject({ tenantId: 'acme', principalId: 'clerk', status: 'running' });
    expect(error.message).toContain(active[0]!.runId);
    expect(warnings.some((warning) => warning.includes('http.shutdown_grace_ms'))).toBe(true);

    const restarted = createRuntime({ config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } }, model: scriptedModel([{ text: 'resumed' }]), runStore });
    const [handle] = await restarted.recover();
    expect(await handle!.result).toMatchObject({ runId: active[0]!.runId, status: 'completed', output: 'resumed' });
    await restarted.close();
  });

  it('ends an event stream with an `error` event when shutdown stops its run', async () => {
    const gated = gatedModel('never');
    const { call, listener } = await serve({ model: gated.model, http: { shutdown_grace_ms: 0 } });

    const response = await call('/v1/runs', { key: keys.clerk.key, headers: { accept: 'text/event-stream' }, json: { input: 'take your time' } });
    await gated.called;
    const [events] = await Promise.all([response.text().then(parseEvents), listener.close()]);

    expect(events.at(-1)).toMatchObject({ event: 'error', data: { error: { kind: 'unavailable' } } });
    expect(events.some((event) => event.event === 'settled')).toBe(false);
  });
});

describe('api keys', () => {
  it('generates rc_ keys whose sha256 hashApiKey reproduces', () => {
    const { key, sha256 } = generateApiKey();
    expect(key).toMatch(/^rc_[A-Za-z0-9_-]{32}$/);
    expect(sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(hashApiKey(key)).toBe(sha256);
    expect(generateApiKey().key).not.toBe(key);
  });
});
