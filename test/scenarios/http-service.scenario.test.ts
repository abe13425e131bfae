import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCapability } from '../../src/catalog/capability.js';
import type { PolicyRule, RunchartConfigInput } from '../../src/config.js';
import { createHttpIngress, generateApiKey, type HttpListener } from '../../src/ingress/http.js';
import type { RunResult } from '../../machines/run/result.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { scriptedModel, type ScriptedStep } from '../../src/testing/index.js';
import { postgresUrl, testSchema, describePostgres } from '../support/postgres.js';
import { tempDir } from '../support/temp.js';

// The HTTP API a service needs (background runs, listings with cursors, cancel, resumable event
// streams, idempotency keys), on the file store and on PostgreSQL, through a real server.

const acme = generateApiKey();
const globex = generateApiKey();
const apiKeys = [
  { sha256: acme.sha256, tenant: 'acme', principal: 'clerk' },
  { sha256: globex.sha256, tenant: 'globex', principal: 'other' },
];
const rules: PolicyRule[] = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
  { id: 'wait-freely', stage: 'tool', effect: 'allow', capabilities: ['clock.wait'] },
];
const wait = defineCapability({
  name: 'clock.wait', version: '1.0.0', description: 'Wait until cancelled', effects: 'read', timeoutMs: 60_000,
  input: z.object({}), output: z.string(),
  handler: ({}, { signal }) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
});

const closing: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closing.splice(0).reverse()) await close();
});

type StoreConfig = RunchartConfigInput['store'];

async function serve(store: StoreConfig, steps: ScriptedStep[]) {
  const runtime: Runtime = createRuntime({
    config: { store, policy: { rules }, http: { api_keys: apiKeys }, telemetry: { emit_structured_events: false, record_runs: false } },
    model: scriptedModel(steps),
    capabilities: [wait],
    eventLog: true,
    onWarning: () => {},
  });
  if (store?.kind === 'postgres') runtime.work({ concurrency: 4 });
  const listener: HttpListener = await createHttpIngress({ runtime }).listen({ port: 0, host: '127.0.0.1' });
  closing.push(() => listener.close());
  const call = (path: string, init: RequestInit & { key?: string; json?: unknown } = {}) => {
    const { key = acme.key, json, ...rest } = init;
    const headers = new Headers(rest.headers);
    headers.set('authorization', `Bearer ${key}`);
    if (json !== undefined) headers.set('content-type', 'application/json');
    return fetch(`${listener.url}${path}`, { ...rest, headers, ...(json !== undefined ? { method: rest.method ?? 'POST', body: JSON.stringify(json) } : {}) });
  };
  return { runtime, call };
}

/** A text/event-stream body as its events, with their ids. */
function parseEvents(text: string): { id?: number; event: string; data: unknown }[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '' && !block.startsWith(':'))
    .map((block) => {
      const lines = block.split('\n');
      const field = (name: string) => lines.find((line) => line.startsWith(`${name}: `))?.slice(name.length + 2);
      const id = field('id');
      return { ...(id === undefined ? {} : { id: Number(id) }), event: field('event')!, data: JSON.parse(field('data')!) };
    });
}

function describeServiceApi(name: string, store: () => Promise<StoreConfig>, describeIt: (name: string, body: () => void) => void = describe) {
  describeIt(`the service API on ${name}`, () => {
    it('answers a background run with 202 and its location, and streams its events with ids, resuming after Last-Event-ID', async () => {
      const { call } = await serve(await store(), [{ text: 'done in the background' }]);
      const accepted = await call('/v1/runs', { json: { input: 'hi', background: true } });
      expect(accepted.status).toBe(202);
      const body = (await accepted.json()) as { runId: string; location: string };
      expect(accepted.headers.get('location')).toBe(`/v1/runs/${body.runId}`);
      expect(body.location).toBe(`/v1/runs/${body.runId}`);

      const streamed = await call(`${body.location}/events`);
      expect(streamed.headers.get('content-type')).toContain('text/event-stream');
      const raw = await streamed.text();
      const events = parseEvents(raw);
      expect(events.at(-1)).toMatchObject({ event: 'settled', data: { status: 'completed', output: 'done in the background' } });
      expect(events.map((event) => event.event)).toEqual(expect.arrayContaining(['state.enter', 'decision']));
      const ids = events.map((event) => event.id!);
      expect(ids.every((id, index) => index === 0 || id > ids[index - 1]!)).toBe(true);
      // Resumed: exactly the events after the one named.
      const resumedText = await (await call(`${body.location}/events`, { headers: { 'last-event-id': String(ids[2]) } })).text();
      const resumed = parseEvents(resumedText);
      expect(resumed).toEqual(events.slice(3));
      // Bad ids and other tenants are refused.
      expect((await call(`${body.location}/events`, { headers: { 'last-event-id': 'soon' } })).status).toBe(400);
      expect((await call(`${body.location}/events`, { key: globex.key })).status).toBe(404);
    });

    it('lists the caller\'s runs newest first, by status, a page at a time with a cursor', async () => {
      const { call } = await serve(await store(), [{ text: 'a' }, { text: 'b' }, { text: 'c' }]);
      const ids: string[] = [];
      for (const input of ['one', 'two', 'three']) ids.push(((await (await call('/v1/runs', { json: { input } })).json()) as RunResult).runId);
      await call('/v1/runs', { key: globex.key, json: { input: 'not yours' } });
      const first = (await (await call('/v1/runs?limit=2')).json()) as { runs: { runId: string }[]; nextCursor: string | null };
      expect(first.runs.map((run) => run.runId)).toEqual([ids[2], ids[1]]);
      const second = (await (await call(`/v1/runs?limit=2&cursor=${first.nextCursor}`)).json()) as { runs: { runId: string }[]; nextCursor: string | null };
      expect(second).toEqual({ runs: [expect.objectContaining({ runId: ids[0], status: 'completed', tenantId: 'acme' })], nextCursor: null });
      expect(((await (await call('/v1/runs?status=running,awaiting_approval')).json()) as { runs: unknown[] }).runs).toEqual([]);
      const bad = await call('/v1/runs?status=done');
      expect(bad.status).toBe(400);
      expect(await bad.text()).toContain('status: \\"done\\" is not a run status');
      expect((await call('/v1/runs?limit=0')).status).toBe(400);
      expect((await call('/v1/runs?cursor=nonsense')).status).toBe(400);
    });

    it('cancels a busy run, and refuses to cancel a finished one or another tenant\'s', async () => {
      const { call, runtime } = await serve(await store(), [{ toolCalls: [{ name: 'clock_wait', arguments: {} }] }]);
      const { runId } = (await (await call('/v1/runs', { json: { input: 'wait', background: true } })).json()) as { runId: string };
      // Busy in its tool call.
      await new Promise<void>((resolve) => runtime.follow(runId, { tenantId: 'acme' }, (event) => event.kind === 'tool.start' && resolve()));
      expect((await call(`/v1/runs/${runId}/cancel`, { method: 'POST', key: globex.key })).status).toBe(404);
      const cancel = await call(`/v1/runs/${runId}/cancel`, { json: { reason: 'no longer needed' } });
      expect(cancel.status).toBe(202);
      expect(await cancel.json()).toMatchObject({ runId, status: 'cancelling' });
      const events = parseEvents(await (await call(`/v1/runs/${runId}/events`)).text());
      expect(events.at(-1)).toMatchObject({ event: 'settled', data: { status: 'cancelled' } });
      const again = await call(`/v1/runs/${runId}/cancel`, { method: 'POST' });
      expect(again.status).toBe(409);
      expect(await again.text()).toContain('nothing to cancel');
    });

    it('returns the first run for a repeated Idempotency-Key instead of starting a second', async () => {
      const { call } = await serve(await store(), [{ text: 'once' }, { text: 'twice' }]);
      const headers = { 'idempotency-key': 'order-17' };
      const first = (await (await call('/v1/runs', { headers, json: { input: 'pay order 17' } })).json()) as RunResult;
      const repeat = await call('/v1/runs', { headers, json: { input: 'pay order 17' } });
      expect(repeat.headers.get('idempotent-replayed')).toBe('true');
      expect((await repeat.json()) as RunResult).toMatchObject({ runId: first.runId, output: 'once' });
      const backgroundRepeat = (await (await call('/v1/runs', { headers, json: { input: 'pay order 17', background: true } })).json()) as { runId: string; existing: boolean };
      expect(backgroundRepeat).toMatchObject({ runId: first.runId, existing: true });
      expect(((await (await call('/v1/runs')).json()) as { runs: unknown[] }).runs).toHaveLength(1);
      expect((await call('/v1/runs', { headers: { 'idempotency-key': 'has space' }, json: { input: 'x' } })).status).toBe(400);
    });
  });
}

describeServiceApi('the file store', async () => ({ kind: 'lowdb', dir: await tempDir() }));
describeServiceApi('PostgreSQL', async () => ({ kind: 'postgres', url: postgresUrl!, schema: await testSchema() }), describePostgres);
