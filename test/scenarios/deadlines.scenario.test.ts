// A model that never answers: the step's absolute deadline ends it, in this process or after a
// restart, and close() is bounded whatever a layer does.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createInMemoryRunStore, createRuntime, type ModelAdapter } from '../../src/index.js';
import { deferred } from '../support/scenario.js';
import { tempDir } from '../support/temp.js';

/** A model that never answers and never looks at its signal. */
function silentModel() {
  const called = deferred();
  let calls = 0;
  const model: ModelAdapter = {
    name: 'silent',
    step: () => {
      calls++;
      called.resolve();
      return new Promise(() => {});
    },
  };
  return { model, called: called.promise, calls: () => calls };
}

const quiet = { telemetry: { emit_structured_events: false } } as const;

describe('the model deadline (runtime.model_deadline_ms)', () => {
  it('ends a step the model never answers with a timeout error, though the model ignores its signal', async () => {
    const silent = silentModel();
    const runtime = createRuntime({ model: silent.model, config: { ...quiet, store: { kind: 'memory' }, runtime: { model_deadline_ms: 50 } } });
    const result = await runtime.run({ input: 'hello?', tenantId: 'acme', principalId: 'u' });
    expect(result).toMatchObject({ status: 'failed', error: { kind: 'timeout', layer: 'model', message: expect.stringContaining('runtime.model_deadline_ms') } });
    expect(silent.calls()).toBe(1);
    await runtime.close();
  });

  it('is absolute: a run restored after its step’s deadline passed fails at once, without asking the model again', async () => {
    const runStore = createInMemoryRunStore();
    let time = Date.UTC(2026, 5, 1);
    const clock = { now: () => time };
    const first = silentModel();
    const before = createRuntime({ model: first.model, runStore, clock, config: { ...quiet, store: { kind: 'memory' }, runtime: { model_deadline_ms: 60_000 }, http: { shutdown_grace_ms: 10 } } });
    const handle = before.start({ input: 'hello?', tenantId: 'acme', principalId: 'u' });
    await first.called;
    await before.close();
    expect((await runStore.load(handle.runId))?.status).toBe('running');

    time += 61_000;
    const second = silentModel();
    const after = createRuntime({ model: second.model, runStore, clock, config: { ...quiet, store: { kind: 'memory' }, runtime: { model_deadline_ms: 60_000 } } });
    const [restored] = await after.recover();
    expect(await restored!.result).toMatchObject({ runId: handle.runId, status: 'failed', error: { kind: 'timeout', layer: 'model' } });
    expect(second.calls()).toBe(0);
    await after.close();
  });

  it('keeps what is left of the deadline for a run restored before it passed', async () => {
    const runStore = createInMemoryRunStore();
    // The first process ran 30 s ago: its step's deadline of 30.1 s has 100 ms left now.
    const clock = { now: () => Date.now() - 30_000 };
    const first = silentModel();
    const before = createRuntime({ model: first.model, runStore, clock, config: { ...quiet, store: { kind: 'memory' }, runtime: { model_deadline_ms: 30_100 }, http: { shutdown_grace_ms: 10 } } });
    const handle = before.start({ input: 'hello?', tenantId: 'acme', principalId: 'u' });
    await first.called;
    await before.close();
    const second = silentModel();
    const after = createRuntime({ model: second.model, runStore, config: { ...quiet, store: { kind: 'memory' }, runtime: { model_deadline_ms: 30_100 } } });
    const started = Date.now();
    const [restored] = await after.recover();
    expect(await restored!.result).toMatchObject({ runId: handle.runId, status: 'failed', error: { kind: 'timeout' } });
    expect(second.calls()).toBe(1);
    // Well under the full 30 s a fresh deadline would give (no timing bound beyond that).
    expect(Date.now() - started).toBeLessThan(20_000);
    await after.close();
  });
});

describe('close()', () => {
  it('is bounded by http.shutdown_grace_ms when a model ignores its signal, and releases the store lock', async () => {
    const dir = await tempDir();
    const silent = silentModel();
    const runtime = createRuntime({ model: silent.model, config: { ...quiet, store: { kind: 'lowdb', dir }, http: { shutdown_grace_ms: 100 } } });
    const handle = runtime.start({ input: 'hello?', tenantId: 'acme', principalId: 'u' });
    await silent.called;
    expect(existsSync(join(dir, 'lock'))).toBe(true);
    const closing = runtime.close();
    await expect(closing).resolves.toBeUndefined();
    await expect(handle.result).rejects.toMatchObject({ kind: 'cancelled', layer: 'runtime' });
    expect(existsSync(join(dir, 'lock'))).toBe(false);
    // The run stays in the store and resumes in the next runtime.
    const next = createRuntime({ model: silentModel().model, config: { ...quiet, store: { kind: 'lowdb', dir }, http: { shutdown_grace_ms: 100 } } });
    const [restored] = await next.recover();
    expect(restored?.runId).toBe(handle.runId);
    await next.close();
  });
});
