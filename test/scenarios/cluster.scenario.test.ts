import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { generateApiKey } from '../../src/ingress/http.js';
import type { RunResult } from '../../machines/run/result.js';
import { startRunchart, type Started } from '../support/cli-process.js';
import { startOpenAIServer, type ChatCompletionsBody, type ServerStep } from '../support/openai-server.js';
import { describePostgres, postgresUrl, sql, testSchema } from '../support/postgres.js';
import { tempDir } from '../support/temp.js';

// Two `runchart serve --no-worker` and three `runchart worker` processes on one PostgreSQL schema.
// 1,000 runs go in through both servers, each with a tool whose effect is a row under a unique
// key; one worker is killed with SIGKILL five times during the load and started again. Then:
// every run finished exactly once, every effect exists exactly once (its attempts counted), an
// approval sent to server A resumes a run parked by a worker, a cancel sent to server B stops a
// run on a worker, and an SSE stream from server A follows a run on a worker to its end.

const RUNS = 1_000;
const KILLS = 5;
const clerk = generateApiKey();
const manager = generateApiKey();

/** The model's decisions: a tool call for the request, then an answer once the tool has answered. */
function decide(body: ChatCompletionsBody): ServerStep {
  const last = body.messages.at(-1)!;
  if (last.role === 'tool') return { answer: { text: `done: ${last.content}` } };
  const input = String(body.messages.filter((message) => message.role === 'user').at(-1)?.content ?? '');
  const record = /record (\S+)/.exec(input);
  if (record) return { answer: { toolCalls: [{ id: 'call_1', name: 'effects_record', arguments: JSON.stringify({ key: record[1] }) }] } };
  if (input.startsWith('pay')) return { answer: { toolCalls: [{ id: 'call_1', name: 'effects_pay', arguments: '{"cents":500}' }] } };
  if (input.startsWith('wait')) return { answer: { toolCalls: [{ id: 'call_1', name: 'effects_wait', arguments: '{}' }] } };
  return { answer: { text: 'nothing to do' } };
}

/** Reads server-sent events from a response until `stop` says so or the stream ends. */
async function readEvents(response: Response, stop: (event: { id?: number; event: string; data: unknown }) => boolean, seen: { event: string; data: unknown }[]) {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, cut);
      buffered = buffered.slice(cut + 2);
      if (block.startsWith(':')) continue;
      const field = (name: string) => block.split('\n').find((line) => line.startsWith(`${name}: `))?.slice(name.length + 2);
      const id = field('id');
      const event = { ...(id ? { id: Number(id) } : {}), event: field('event')!, data: JSON.parse(field('data')!) as unknown };
      seen.push(event);
      if (stop(event)) return void (await reader.cancel());
    }
  }
}

describePostgres('a cluster: two servers, three workers, one database', () => {
  it(`finishes ${RUNS} runs exactly once with every effect once while a worker is killed ${KILLS} times; approve, cancel and stream cross processes`, { timeout: 600_000 }, async () => {
    const schema = await testSchema();
    await sql(`CREATE TABLE ${schema}.effects (key text PRIMARY KEY, attempts integer NOT NULL)`);
    const model = await startOpenAIServer(decide);
    const dir = await tempDir();
    const config = join(dir, 'runchart.yaml');
    await writeFile(
      config,
      JSON.stringify({
        store: { kind: 'postgres', url: postgresUrl, schema, lease_ms: 2_000, max_connections: 4 },
        runtime: { max_tool_hops: 2 },
        policy: {
          rules: [
            { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
            { id: 'effects-allowed', stage: 'tool', effect: 'allow', capabilities: ['effects.record', 'effects.wait'] },
            { id: 'pay-needs-approval', stage: 'tool', effect: 'require_approval', capabilities: ['effects.pay'] },
            { id: 'managers-approve', stage: 'approval', effect: 'allow', capabilities: ['effects.pay'], principals: ['manager'] },
          ],
        },
        http: {
          api_keys: [
            { sha256: clerk.sha256, tenant: 'acme', principal: 'clerk' },
            { sha256: manager.sha256, tenant: 'acme', principal: 'manager' },
          ],
        },
        telemetry: { emit_structured_events: false, record_runs: false },
        execution: { capability_modules: [fileURLToPath(new URL('../support/cluster-capabilities.ts', import.meta.url))] },
      }),
    );
    const env = { OPENAI_BASE_URL: model.url, OPENAI_API_KEY: 'test-key', CLUSTER_SCHEMA: schema, CLUSTER_DATABASE_URL: postgresUrl! };
    const processes: Started[] = [];
    const start = (args: string[]) => {
      const started = startRunchart([...args, '--config', config], { cwd: dir, env });
      processes.push(started);
      return started;
    };
    try {
      const servers = await Promise.all(
        [0, 1].map(async () => {
          const server = start(['serve', '--no-worker', '--port', '0']);
          return (await server.waitFor(/serving on (http:\/\/\S+)/))[1]!;
        }),
      );
      const startWorker = async () => {
        const worker = start(['worker', '--concurrency', '8']);
        await worker.waitFor(/taking runs/);
        return worker;
      };
      const workers = await Promise.all([startWorker(), startWorker(), startWorker()]);
      const call = (server: string, path: string, init: RequestInit & { key?: string; json?: unknown } = {}) => {
        const { key = clerk.key, json, ...rest } = init;
        const headers = new Headers(rest.headers);
        headers.set('authorization', `Bearer ${key}`);
        if (json !== undefined) headers.set('content-type', 'application/json');
        return fetch(`${server}${path}`, { ...rest, headers, ...(json !== undefined ? { method: 'POST', body: JSON.stringify(json) } : {}) });
      };
      const statuses = async () => Object.fromEntries((await sql<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM ${schema}.runs GROUP BY status`)).map((row) => [row.status, row.n]));

      // The load: through both servers, 40 submissions in flight; a repeated idempotency key on each.
      let submitted = 0;
      const submit = async () => {
        while (submitted < RUNS) {
          const index = submitted++;
          const response = await call(servers[index % 2]!, '/v1/runs', { headers: { 'idempotency-key': `k${index}` }, json: { input: `record k${index}`, background: true } });
          expect(response.status).toBe(202);
        }
      };
      const loading = Promise.all(Array.from({ length: 40 }, submit));

      // Meanwhile the first worker is killed five times, each time while runs are going, and started again.
      let victim = workers[0]!;
      for (let kill = 0; kill < KILLS; kill++) {
        const before = (await statuses()).completed ?? 0;
        for (let waited = 0; ((await statuses()).completed ?? 0) < before + 60 && waited < 200; waited++) await new Promise((resolve) => setTimeout(resolve, 100));
        victim.child.kill('SIGKILL');
        await victim.exited;
        victim = await startWorker();
      }
      await loading;
      // A repeated key starts nothing new.
      const repeat = (await (await call(servers[1]!, '/v1/runs', { headers: { 'idempotency-key': 'k0' }, json: { input: 'record k0', background: true } })).json()) as { existing: boolean };
      expect(repeat.existing).toBe(true);

      // An approval sent to server A resumes a run a worker parked.
      const parked = (await (await call(servers[1]!, '/v1/runs', { json: { input: 'pay the invoice' } })).json()) as RunResult;
      expect(parked.status).toBe('awaiting_approval');
      const approved = await call(servers[0]!, `/v1/runs/${parked.runId}/approvals/${parked.toolCalls.at(-1)!.callId}`, { key: manager.key, json: { decision: 'approve' } });
      expect(approved.status).toBe(200);
      expect((await approved.json()) as RunResult).toMatchObject({ status: 'completed', output: 'done: "paid 500"' });

      // An SSE stream from server A follows a run on a worker; a cancel through server B stops it there.
      const { runId } = (await (await call(servers[0]!, '/v1/runs', { json: { input: 'wait for me', background: true } })).json()) as { runId: string };
      const seen: { event: string; data: unknown }[] = [];
      let busy!: () => void;
      const isBusy = new Promise<void>((resolve) => (busy = resolve));
      const following = readEvents(await call(servers[0]!, `/v1/runs/${runId}/events`), (event) => (event.event === 'tool.start' && busy(), event.event === 'settled' && (event.data as RunResult).status === 'cancelled'), seen);
      await isBusy;
      expect((await call(servers[1]!, `/v1/runs/${runId}/cancel`, { json: { reason: 'not needed' } })).status).toBe(202);
      await following;
      expect(seen.at(-1)).toMatchObject({ event: 'settled', data: { status: 'cancelled' } });
      expect(seen.map((event) => event.event)).toEqual(expect.arrayContaining(['run.accepted', 'state.enter', 'tool.start', 'settled']));

      // Every run finished, once; every effect exists once.
      for (let waited = 0; (((await statuses()).completed ?? 0) < RUNS + 1) && waited < 1_200; waited++) await new Promise((resolve) => setTimeout(resolve, 100));
      const finished = await sql<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM ${schema}.runs GROUP BY status ORDER BY status`);
      expect(finished).toEqual([
        { status: 'cancelled', n: 1 },
        { status: 'completed', n: RUNS + 1 },
      ]);
      const [effects] = await sql<{ keys: number; distinct_keys: number; attempts: number; repeated: number }>(
        `SELECT count(*)::int AS keys, count(DISTINCT key)::int AS distinct_keys, sum(attempts)::int AS attempts, count(*) FILTER (WHERE attempts > 1)::int AS repeated FROM ${schema}.effects`,
      );
      expect(effects).toMatchObject({ keys: RUNS, distinct_keys: RUNS });
      const outputs = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.runs WHERE snapshot->'context'->>'output' LIKE 'done: "recorded k%'`);
      const odd = await sql(`SELECT run_id, status, snapshot->'context'->>'output' AS output FROM ${schema}.runs WHERE coalesce(snapshot->'context'->>'output', '') NOT LIKE 'done: "recorded k%' LIMIT 5`);
      expect(outputs, `runs without their effect's answer: ${JSON.stringify(odd)}`).toEqual([{ n: RUNS }]);
      console.log(`cluster: ${RUNS} runs through 2 servers on 3 workers, ${KILLS} SIGKILLs: ${finished.map((row) => `${row.n} ${row.status}`).join(', ')}; ${effects!.keys} effects, ${effects!.attempts} attempts (${effects!.repeated} keys tried more than once); ${model.requests.length} model requests`);
    } finally {
      for (const started of processes) started.child.kill('SIGKILL');
      await Promise.all(processes.map((started) => started.exited));
    }
  });
});
