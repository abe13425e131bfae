import { afterEach, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCapability } from '../../src/catalog/capability.js';
import type { PolicyRule } from '../../src/config.js';
import { createRuntime, type LoggedRunEvent, type Runtime } from '../../src/runtime.js';
import { scriptedModel } from '../../src/testing/index.js';
import { describePostgres, postgresUrl, sql, testSchema } from '../support/postgres.js';

// Two runtimes on one PostgreSQL schema, as a server (no worker) and a worker: a run submitted to
// the server runs on the worker; approvals, cancels and event streams sent to the server reach it.

const rules: PolicyRule[] = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
  { id: 'record-freely', stage: 'tool', effect: 'allow', capabilities: ['effects.record', 'effects.slow', 'effects.once'] },
  { id: 'pay-needs-approval', stage: 'tool', effect: 'require_approval', capabilities: ['effects.pay'] },
  { id: 'managers-approve', stage: 'approval', effect: 'allow', capabilities: ['effects.pay'], principals: ['manager'] },
];

const effects: string[] = [];
const record = defineCapability({
  name: 'effects.record', version: '1.0.0', description: 'Record a key', effects: 'write',
  input: z.object({ key: z.string() }), output: z.string(),
  handler: async ({ key }) => (effects.push(key), key),
});
const pay = defineCapability({
  name: 'effects.pay', version: '1.0.0', description: 'Pay', effects: 'external',
  input: z.object({ cents: z.number() }), output: z.string(),
  handler: async ({ cents }) => `paid ${cents}`,
});
const slow = defineCapability({
  name: 'effects.slow', version: '1.0.0', description: 'Wait until cancelled', effects: 'read', timeoutMs: 60_000,
  input: z.object({}), output: z.string(),
  handler: ({}, { signal }) => new Promise((resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
});

// The first attempt hangs, ignoring its signal, as a call on a worker that dies mid-call would; the next answers.
const onceAttempts: number[] = [];
const once = defineCapability({
  name: 'effects.once', version: '1.0.0', description: 'Hang on the first attempt', effects: 'write', timeoutMs: 8_000,
  input: z.object({}), output: z.string(),
  handler: () => (onceAttempts.push(onceAttempts.length + 1), onceAttempts.length === 1 ? new Promise<string>(() => {}) : Promise.resolve('answered')),
});

const open: Runtime[] = [];
afterEach(async () => {
  for (const runtime of open.splice(0).reverse()) await runtime.close();
});

function runtimeOn(schema: string, model: Parameters<typeof scriptedModel>[0], options: { acceptOnly?: boolean } = {}) {
  const runtime = createRuntime({
    ...options,
    config: { store: { kind: 'postgres', url: postgresUrl!, schema, lease_ms: 1_000 }, policy: { rules }, telemetry: { emit_structured_events: false, record_runs: false } },
    capabilities: [record, pay, slow, once],
    model: scriptedModel(model),
    onWarning: (message, error) => process.env.DEBUG_CLUSTER && console.log('WARN', message, (error as Error)?.message ?? ''),
  });
  open.push(runtime);
  return runtime;
}

const request = (input: string, principalId = 'u') => ({ input, tenantId: 'acme', principalId, sessionId: 's' });

describePostgres('runtimes sharing a PostgreSQL store', () => {
  it('runs a submitted run on the worker; the server follows its events with ids and resumes after one', async () => {
    const schema = await testSchema();
    const server = runtimeOn(schema, []);
    const worker = runtimeOn(schema, [{ toolCalls: [{ name: 'effects_record', arguments: { key: 'k1' } }] }, { text: 'recorded' }]);
    worker.work({ concurrency: 2 });
    const submitted = await server.submit(request('record k1'));
    const events: LoggedRunEvent[] = [];
    server.follow(submitted.runId, { tenantId: 'acme' }, (event) => events.push(event));
    expect(await submitted.result()).toMatchObject({ status: 'completed', output: 'recorded' });
    await expect.poll(() => events.at(-1)?.kind).toBe('settled');
    expect(events.map((event) => event.kind)).toContain('tool.call');
    expect(events.map((event) => event.id)).toEqual([...events.map((event) => event.id)].sort((a, b) => a - b));
    // Resumed after the third event: the rest, exactly.
    const resumed: LoggedRunEvent[] = [];
    server.follow(submitted.runId, { tenantId: 'acme', after: events[2]!.id }, (event) => resumed.push(event));
    await expect.poll(() => resumed.length).toBe(events.length - 3);
    expect(resumed).toEqual(events.slice(3));
    // Another tenant hears nothing of it.
    const foreign: LoggedRunEvent[] = [];
    server.follow(submitted.runId, { tenantId: 'globex' }, (event) => foreign.push(event));
    expect(await sql(`SELECT status, lease_owner FROM ${schema}.runs`)).toEqual([{ status: 'completed', lease_owner: null }]);
    expect(foreign).toEqual([]);
  });

  it('approves, through the server, a run parked on the worker, and refuses a non-approver there', async () => {
    const schema = await testSchema();
    const server = runtimeOn(schema, []);
    const worker = runtimeOn(schema, [{ toolCalls: [{ name: 'effects_pay', arguments: { cents: 5 } }] }, { text: 'paid' }]);
    worker.work({ concurrency: 2 });
    const submitted = await server.submit(request('pay 5'));
    const parked = await submitted.result();
    expect(parked.status).toBe('awaiting_approval');
    const callId = parked.toolCalls.at(-1)!.callId;
    // Held by the worker (parked runs stay with it): the review goes through the inbox.
    expect((await sql<{ lease_owner: string | null }>(`SELECT lease_owner FROM ${schema}.runs`))[0]!.lease_owner).not.toBeNull();
    await expect(server.approve(submitted.runId, callId, { principalId: 'intern', tenantId: 'acme' })).rejects.toThrow(/intern may not review/);
    expect(await server.approve(submitted.runId, callId, { principalId: 'manager', tenantId: 'acme' })).toMatchObject({ status: 'completed', output: 'paid' });
  });

  it('cancels, through the server, a run busy on the worker', async () => {
    const schema = await testSchema();
    const server = runtimeOn(schema, []);
    const worker = runtimeOn(schema, [{ toolCalls: [{ name: 'effects_slow', arguments: {} }] }]);
    worker.work({ concurrency: 2 });
    const submitted = await server.submit(request('wait'));
    await expect.poll(async () => (await sql(`SELECT 1 FROM ${schema}.run_events WHERE kind = 'tool.start'`)).length, { timeout: 10_000 }).toBe(1);
    await server.cancel(submitted.runId, { tenantId: 'acme', reason: 'enough' });
    await expect.poll(async () => (await server.get(submitted.runId, { tenantId: 'acme' }))?.status, { timeout: 10_000 }).toBe('cancelled');
    await expect(server.cancel(submitted.runId, { tenantId: 'acme' })).rejects.toThrow(/is cancelled; there is nothing to cancel/);
    await expect(server.cancel('nope', { tenantId: 'acme' })).rejects.toThrow(/no run "nope"/);
  });

  it('starts one run for a repeated idempotency key, even from two servers at once', async () => {
    const schema = await testSchema();
    const [a, b] = [runtimeOn(schema, []), runtimeOn(schema, [])];
    const worker = runtimeOn(schema, [{ text: 'one' }]);
    worker.work({ concurrency: 2 });
    const [first, second] = await Promise.all([a.submit(request('hi'), { idempotencyKey: 'order-1' }), b.submit(request('hi'), { idempotencyKey: 'order-1' })]);
    expect(first.runId).toBe(second.runId);
    expect([first.existing, second.existing].sort()).toEqual([false, true]);
    expect(await second.result()).toMatchObject({ status: 'completed', output: 'one' });
    expect(await sql(`SELECT count(*)::int AS n FROM ${schema}.runs`)).toEqual([{ n: 1 }]);
    // Keys are per tenant: another tenant's same key is another run.
    const other = await a.submit({ ...request('hi'), tenantId: 'globex' }, { idempotencyKey: 'order-1' });
    expect(other.runId).not.toBe(first.runId);
  });

  it('hands a parked run nobody holds to a worker when an accept-only server is asked to approve it', async () => {
    const schema = await testSchema();
    const server = runtimeOn(schema, [], { acceptOnly: true });
    const first = runtimeOn(schema, [{ toolCalls: [{ name: 'effects_pay', arguments: { cents: 9 } }] }]);
    first.work({ concurrency: 2 });
    const submitted = await server.submit(request('pay 9'));
    const parked = await submitted.result();
    expect(parked.status).toBe('awaiting_approval');
    // The worker shuts down: the parked run is let go, held by nobody.
    await first.close();
    open.splice(open.indexOf(first), 1);
    expect(await sql(`SELECT lease_owner FROM ${schema}.runs`)).toEqual([{ lease_owner: null }]);
    const second = runtimeOn(schema, [{ text: 'paid 9' }]);
    second.work({ concurrency: 2 });
    // The server's own model has no script: the run can only finish on the worker.
    expect(await server.approve(submitted.runId, parked.toolCalls.at(-1)!.callId, { principalId: 'manager', tenantId: 'acme' })).toMatchObject({ status: 'completed', output: 'paid 9' });
  });

  it('finds inbox mail and run events whose NOTIFY never came (a NOTIFY is a wake-up, never the only copy)', async () => {
    const schema = await testSchema();
    const server = runtimeOn(schema, []);
    const worker = runtimeOn(schema, [{ toolCalls: [{ name: 'effects_pay', arguments: { cents: 3 } }] }, { text: 'paid 3' }]);
    worker.work({ concurrency: 2 });
    const submitted = await server.submit(request('pay 3'));
    const parked = await submitted.result();
    expect(parked.status).toBe('awaiting_approval');
    const followed: LoggedRunEvent[] = [];
    server.follow(submitted.runId, { tenantId: 'acme' }, (event) => followed.push(event));
    // Written straight into the tables, with no NOTIFY: only the periodic looks can find them.
    await sql(`INSERT INTO ${schema}.run_events (tenant_id, run_id, kind, data) VALUES ('acme', $1, 'note', '{"quiet": true}')`, [submitted.runId]);
    await expect.poll(() => followed.some((event) => event.kind === 'note'), { timeout: 10_000 }).toBe(true);
    // Mail that names no reviewer (from an older process, say) is answered with the refusal; the call stays parked.
    await sql(`INSERT INTO ${schema}.run_inbox (tenant_id, run_id, event) VALUES ('acme', $1, $2::jsonb)`, [submitted.runId, JSON.stringify({ type: 'tool.approve', callId: parked.toolCalls.at(-1)!.callId })]);
    await expect.poll(() => followed.some((event) => event.kind === 'review' && JSON.stringify(event.data).includes('approve needs options.principalId')), { timeout: 10_000 }).toBe(true);
    expect((await server.get(submitted.runId, { tenantId: 'acme' }))?.status).toBe('awaiting_approval');
    await sql(`INSERT INTO ${schema}.run_inbox (tenant_id, run_id, event) VALUES ('acme', $1, $2::jsonb)`, [submitted.runId, JSON.stringify({ type: 'tool.approve', callId: parked.toolCalls.at(-1)!.callId, principalId: 'manager' })]);
    await expect.poll(async () => (await server.get(submitted.runId, { tenantId: 'acme' }))?.status, { timeout: 10_000 }).toBe('completed');
  });

  it('takes over, on a second worker, the runs of a worker whose leases lapse', async () => {
    const schema = await testSchema();
    const server = runtimeOn(schema, []);
    const doomed = runtimeOn(schema, [{ toolCalls: [{ name: 'effects_pay', arguments: { cents: 7 } }] }]);
    const stopDoomed = doomed.work({ concurrency: 2 });
    const submitted = await server.submit(request('pay 7'));
    expect((await submitted.result()).status).toBe('awaiting_approval');
    // The worker "dies": it takes no more runs, its lease is taken from it, and a second worker sweeps.
    await stopDoomed();
    await sql(`UPDATE ${schema}.runs SET lease_owner = 'dead', lease_expires_at = now() - interval '1 second'`);
    const heir = runtimeOn(schema, [{ text: 'paid 7' }, { text: 'second' }]);
    heir.work({ concurrency: 2 });
    await expect.poll(async () => (await sql<{ lease_owner: string }>(`SELECT lease_owner FROM ${schema}.runs`))[0]!.lease_owner, { timeout: 10_000 }).not.toBe('dead');
    const callId = (await server.get(submitted.runId, { tenantId: 'acme' }))!.toolCalls.at(-1)!.callId;
    const done = await server.approve(submitted.runId, callId, { principalId: 'manager', tenantId: 'acme' });
    expect(done, JSON.stringify(done.error)).toMatchObject({ status: 'completed', output: 'paid 7' });
  });

  it("takes over a dead worker's unfinished tool call once the store's lease lapses, well inside the call's deadline", async () => {
    const schema = await testSchema();
    const server = runtimeOn(schema, []);
    const doomed = runtimeOn(schema, [{ toolCalls: [{ name: 'effects_once', arguments: {} }] }]);
    const stopDoomed = doomed.work({ concurrency: 1 });
    const submitted = await server.submit(request('once'));
    await expect.poll(() => onceAttempts.length, { timeout: 10_000 }).toBe(1);
    // The worker "dies" while its call hangs: it takes no more runs and its run's lease is taken
    // from it; the call's claim stays in the journal, unfinished, in its name.
    const stopping = stopDoomed();
    await sql(`UPDATE ${schema}.runs SET lease_owner = 'dead', lease_expires_at = now() - interval '1 second'`);
    const [claim] = await sql<{ state: string }>(`SELECT state FROM ${schema}.journal`);
    expect(claim?.state).toBe('started');
    const heir = runtimeOn(schema, [{ text: 'done' }]);
    heir.work({ concurrency: 1 });
    await expect.poll(async () => (await server.get(submitted.runId, { tenantId: 'acme' }))?.status, { timeout: 15_000 }).toBe('completed');
    const result = (await server.get(submitted.runId, { tenantId: 'acme' }))!;
    // Before the claim's lease followed the store's, the heir waited out a 30 s claim and the call timed out at its 8 s deadline.
    expect(result.toolCalls.map((call) => call.outcome)).toMatchObject([{ status: 'ok', output: 'answered' }]);
    expect(onceAttempts).toEqual([1, 2]);
    await stopping;
  });
});
