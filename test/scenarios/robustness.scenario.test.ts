import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createInMemoryRunStore, createRuntime, createHttpIngress, defineCapability, generateApiKey, isRunchartError, type PolicyRule, type RunStore } from '../../src/index.js';
import { scriptedModel } from '../../src/testing/index.js';
import { tempDir } from '../support/temp.js';

const rules: PolicyRule[] = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
  { id: 'vault-needs-approval', stage: 'tool', effect: 'require_approval', capabilities: ['vault.*'] },
  { id: 'managers', stage: 'approval', effect: 'allow', principals: ['manager'] },
];
const quiet = { emit_structured_events: false };

function vault(calls: unknown[], sensitive = ['password']) {
  return defineCapability({
    name: 'vault.store',
    version: '1.0.0',
    description: 'Store a secret',
    input: z.object({ name: z.string(), password: z.string() }),
    output: z.object({ stored: z.boolean(), token: z.string() }),
    effects: 'write',
    sensitive,
    handler: async (args) => (calls.push(args), { stored: true, token: 'sk-returned0123456789abcdef' }),
  });
}

describe('robustness', () => {
  it('restores a parked run once when two approvals arrive together: one wins, the tool runs once', async () => {
    const runStore = createInMemoryRunStore();
    const calls: unknown[] = [];
    // (Not sensitive here: a redacted argument would rightly refuse to run after the restore.)
    const first = createRuntime({
      runStore,
      capabilities: [vault(calls, [])],
      model: scriptedModel([{ toolCalls: [{ name: 'vault_store', arguments: { name: 'db', password: 'pw' } }] }]),
      config: { store: { kind: 'memory' }, telemetry: quiet, policy: { rules } },
    });
    const parked = await first.run({ input: 'store it', tenantId: 'acme', principalId: 'clerk' });
    await first.close().catch(() => {});
    const second = createRuntime({ runStore, capabilities: [vault(calls, [])], model: scriptedModel([{ text: 'stored' }]), config: { store: { kind: 'memory' }, telemetry: quiet, policy: { rules } } });
    const outcomes = await Promise.allSettled([
      second.approve(parked.runId, 'c0.0', { principalId: 'manager' }),
      second.approve(parked.runId, 'c0.0', { principalId: 'manager' }),
    ]);
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1);
    expect(outcomes.find((outcome) => outcome.status === 'rejected')).toMatchObject({ reason: expect.objectContaining({ kind: 'invalid-input' }) });
    expect(calls).toHaveLength(1);
  });

  it('does not fail a run for a save that a later save repaired, and a lost result never crashes the process', async () => {
    const inner = createInMemoryRunStore();
    let failures = 1;
    const flaky: RunStore = {
      ...inner,
      save: async (run) => {
        if (failures-- > 0) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
        return inner.save(run);
      },
    };
    const warnings: string[] = [];
    const runtime = createRuntime({ runStore: flaky, model: scriptedModel([{ text: 'fine' }]), onWarning: (message) => warnings.push(message), config: { store: { kind: 'memory' }, telemetry: quiet } });
    const result = await runtime.run({ input: 'hi', tenantId: 'acme', principalId: 'u' });
    expect(result.status).toBe('completed');
    expect(warnings.some((message) => message.includes('saving run'))).toBe(true);
    expect((await inner.load(result.runId))?.status).toBe('completed');
  });

  it('keeps secrets out of the lowdb files: sensitive fields of unpinned calls, the memory write-back and its queued task', async () => {
    const dir = await tempDir();
    const calls: unknown[] = [];
    const runtime = createRuntime({
      capabilities: [vault(calls)],
      model: scriptedModel([
        // A capability the model was not given (no rule allows vault.* here), with a sensitive field.
        { toolCalls: [{ name: 'vault_store', arguments: { name: 'db', password: 'hunter2-plain' } }] },
        { text: 'done, key sk-answer0123456789abcdef' },
      ]),
      config: { store: { dir }, telemetry: quiet, policy: { rules: [rules[0]!] } },
    });
    const result = await runtime.run({ input: 'use sk-input0123456789abcdef', tenantId: 'acme', principalId: 'u', sessionId: 's' });
    await runtime.drain();
    await runtime.close();
    expect(result.toolCalls[0]!.outcome).toMatchObject({ status: 'invalid' });
    const memoryFiles = (await readdir(join(dir, 'memory'))).map((name) => join('memory', name));
    expect(memoryFiles).toHaveLength(1); // the write-back landed: one tenant, one file
    for (const file of ['runs-finished.jsonl', 'runs.jsonl', 'queue.jsonl', 'journal.jsonl', ...memoryFiles]) {
      const text = await readFile(join(dir, file), 'utf8');
      expect(text, file).not.toContain('hunter2-plain');
      expect(text, file).not.toMatch(/sk-(input|answer|returned)0123456789abcdef/);
    }
  });

  it('keeps a tool output’s secret out of the journal while its run is in flight', async () => {
    const dir = await tempDir();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let step = 0;
    const runtime = createRuntime({
      capabilities: [vault([], [])],
      model: {
        name: 'holding',
        async step() {
          if (step++ === 0) return { text: null, toolCalls: [{ id: 'm1', name: 'vault_store', arguments: '{"name":"db","password":"x"}' }], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'tool_calls' };
          await held;
          return { text: 'ok', toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
        },
      },
      config: { store: { dir }, telemetry: quiet, policy: { rules: [rules[0]!, { id: 'vault', stage: 'tool', effect: 'allow', capabilities: ['vault.*'] }] } },
    });
    const handle = runtime.start({ input: 'store it', tenantId: 'acme', principalId: 'u' });
    const journal = join(dir, 'journal.jsonl');
    await expect.poll(async () => (await readFile(journal, 'utf8').catch(() => '')).includes('"completed"'), { timeout: 5_000 }).toBe(true);
    const text = await readFile(journal, 'utf8');
    expect(text).toContain('[redacted]');
    expect(text).not.toContain('sk-returned0123456789abcdef');
    release();
    expect((await handle.result).status).toBe('completed');
    await runtime.close();
  });

  it('starts a trace at the HTTP ingress when the caller sends none, so require_trace_id holds without breaking callers', async () => {
    const { key, sha256 } = generateApiKey();
    const runtime = createRuntime({
      model: scriptedModel([{ text: 'ok' }]),
      config: { store: { kind: 'memory' }, telemetry: quiet, runtime: { require_trace_id: true }, http: { api_keys: [{ sha256, tenant: 'acme', principal: 'ops' }] } },
    });
    const server = await createHttpIngress({ runtime }).listen({ port: 0 });
    try {
      const response = await fetch(`${server.url}/v1/runs`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ input: 'hi' }) });
      expect(response.status).toBe(200);
      expect(((await response.json()) as { traceId: string }).traceId).toMatch(/^[0-9a-f]{32}$/);
    } finally {
      await server.close();
    }
  });

  it('tells a caller still waiting when the runtime closes under its run', async () => {
    const runtime = createRuntime({
      model: { name: 'never', step: (_request, { signal }) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason))) },
      config: { store: { kind: 'memory' }, telemetry: quiet },
    });
    const pending = runtime.run({ input: 'hi', tenantId: 'acme', principalId: 'u' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await runtime.close();
    const error = await pending.catch((caught: unknown) => caught);
    expect(isRunchartError(error) && error.kind).toBe('cancelled');
  });
});
