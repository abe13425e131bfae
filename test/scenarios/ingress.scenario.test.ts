import { describe, expect, it } from 'vitest';
import { createRuntime, type PolicyRequest, type RunchartConfigInput } from '../../src/index.js';
import { recordingTelemetry, scriptedModel, scriptedPolicy } from '../../src/testing/index.js';
import { countingMemory, request, spiedAdd } from '../support/scenario.js';

/** A runtime whose every layer counts its calls; a bad request must reach none of them. */
function strictRuntime(config: RunchartConfigInput = {}) {
  const model = scriptedModel([]);
  const memory = countingMemory();
  const policy = scriptedPolicy((policyRequest: PolicyRequest) => ({ verdict: 'allow', ruleId: `test-${policyRequest.stage}`, reason: 'scripted' }));
  const add = spiedAdd();
  const telemetry = recordingTelemetry();
  const runtime = createRuntime({ model, memory, policy, capabilities: [add.capability], telemetry, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, ...config } });
  return { runtime, model, memory, policy, add, telemetry };
}

describe('ingress', () => {
  it.each([
    ['a missing tenantId', request({ tenantId: undefined }), 'tenantId'],
    ['a missing principalId', request({ principalId: undefined }), 'principalId'],
    ['an empty input', request({ input: '' }), 'input'],
    ['a missing input', request({ input: undefined }), 'input'],
    ['an unknown field', request({ role: 'admin' }), 'role: unknown key'],
    ['a tenant glob', request({ tenantId: '*' }), 'tenantId'],
    ['a malformed traceId', request({ traceId: 'abc' }), 'traceId'],
    ['a malformed traceparent', request({ traceparent: '00-abc' }), 'traceparent'],
    ['a request that is not an object', 'what is 2+3?', 'expected object'],
  ])('fails %s as invalid-input naming the field, calling no other layer', async (_label, body, named) => {
    const { runtime, model, memory, policy, add, telemetry } = strictRuntime();

    const result = await runtime.run(body);

    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ kind: 'invalid-input', layer: 'ingress' });
    expect(result.error!.message).toContain(named);
    expect(result.decisions).toEqual([]);
    expect(policy.requests).toHaveLength(0);
    expect(memory.recalls).toBe(0);
    expect(add.calls).toHaveLength(0);
    expect(telemetry.statesOf(result.runId)).toEqual(['ingress', 'failed']);
    model.verify();
  });

  it('fails an input over limits.max_input_chars, naming the setting', async () => {
    const { runtime, model, policy, memory } = strictRuntime({ limits: { max_input_chars: 10 } });

    const result = await runtime.run(request({ input: 'x'.repeat(11) }));

    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ kind: 'invalid-input', layer: 'ingress' });
    expect(result.error!.message).toContain('input: 11 characters, over the limit of 10');
    expect(result.error!.message).toContain('limits.max_input_chars');
    expect(policy.requests).toHaveLength(0);
    expect(memory.recalls).toBe(0);
    model.verify();
  });

  it('accepts an input exactly at limits.max_input_chars', async () => {
    const model = scriptedModel([{ text: 'ok' }]);
    const runtime = createRuntime({ model, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, limits: { max_input_chars: 10 } } });
    const result = await runtime.run(request({ input: 'x'.repeat(10) }));
    expect(result.status).toBe('completed');
    model.verify();
  });

  it('fails a request without a trace when require_trace_id is true', async () => {
    const { runtime, model, policy } = strictRuntime({ runtime: { require_trace_id: true } });

    const result = await runtime.run(request());

    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ kind: 'invalid-input', layer: 'ingress' });
    expect(result.error!.message).toContain('require_trace_id');
    expect(policy.requests).toHaveLength(0);
    model.verify();
  });

  it('keeps the caller trace id', async () => {
    const model = scriptedModel([{ text: 'ok' }]);
    const telemetry = recordingTelemetry();
    const runtime = createRuntime({ model, telemetry, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, runtime: { require_trace_id: true } } });

    const result = await runtime.run(request({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736' }));

    expect(result.status).toBe('completed');
    expect(result.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(telemetry.runs[0]!.identity.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    model.verify();
  });

  it('continues the trace of a traceparent', async () => {
    const model = scriptedModel([{ text: 'ok' }]);
    const telemetry = recordingTelemetry();
    const runtime = createRuntime({ model, telemetry, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, runtime: { require_trace_id: true } } });

    const result = await runtime.run(request({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' }));

    expect(result.status).toBe('completed');
    expect(result.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(telemetry.runs[0]!.identity).toMatchObject({ traceId: '0af7651916cd43dd8448eb211c80319c', parentSpanId: 'b7ad6b7169203331' });
    model.verify();
  });

  it('starts a new trace per run when none is given', async () => {
    const model = scriptedModel([{ text: 'ok' }, { text: 'ok' }]);
    const runtime = createRuntime({ model, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } } });

    const first = await runtime.run(request());
    const second = await runtime.run(request());

    expect(first.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(second.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(first.traceId).not.toBe(second.traceId);
    expect(first.runId).not.toBe(second.runId);
    model.verify();
  });
});
