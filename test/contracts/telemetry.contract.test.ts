import { Writable } from 'node:stream';
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseConfig, type RunchartConfigInput } from '../../src/config.js';
import { noopTelemetry, type RunIdentity, type TelemetryLayer, type TelemetryMark } from '../../src/telemetry/contract.js';
import { createTelemetry } from '../../src/telemetry/create.js';
import { otelTelemetry } from '../../src/telemetry/otel.js';
import { pinoTelemetry, type EventLogger } from '../../src/telemetry/pino.js';
import { recordingTelemetry } from '../../src/testing/index.js';

const T = 1_700_000_000_000;
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const CANARY = 'sk-canary0123456789abcdef';
const identity: RunIdentity = { runId: 'run-1', traceId: TRACE, parentSpanId: PARENT, tenantId: 'acme', principalId: 'user-7', sessionId: 'session-1' };

type Timed = [TelemetryMark, number];
const enter = (state: string, at: number): Timed => [{ kind: 'state.enter', state }, at];
const exit = (state: string, at: number): Timed => [{ kind: 'state.exit', state }, at];
const decided = (stage: 'precheck' | 'tool' | 'output' | 'memory.write', at: number, extra: { verdict?: 'allow' | 'deny'; ruleId?: string; capability?: string; callId?: string } = {}): Timed => [
  {
    kind: 'decision',
    decision: {
      verdict: extra.verdict ?? 'allow',
      ruleId: extra.ruleId ?? `rule-${stage}`,
      reason: `reason for ${stage}`,
      stage,
      principalId: 'user-7',
      ...(extra.capability ? { capability: extra.capability } : {}),
      ...(extra.callId ? { callId: extra.callId } : {}),
    },
  },
  at,
];
const modelStep = (at: number, toolCalls: number, text: string | null): Timed => [
  { kind: 'model.step', model: 'gpt-test', usage: { inputTokens: 10, outputTokens: 5 }, finishReason: toolCalls ? 'tool_calls' : 'stop', toolCalls, text },
  at,
];

/**
 * The marks of a one-hop run in the order the chart sends them: a state's exit comes before the
 * actions of the transition leaving it. Ingress's marks come before acceptance (at T + 20).
 */
function oneHopRun(content = { args: '{"a":2,"b":3}', result: '5', text: '2 + 3 = 5' }): Timed[] {
  return [
    enter('ingress', T),
    exit('ingress', T + 10),
    enter('policy', T + 20),
    exit('policy', T + 30),
    decided('precheck', T + 30),
    enter('retrieval', T + 30),
    exit('retrieval', T + 40),
    enter('modelStep', T + 40),
    exit('modelStep', T + 50),
    modelStep(T + 50, 1, null),
    enter('toolExecution', T + 50),
    enter('toolExecution.authorizing', T + 51),
    exit('toolExecution.authorizing', T + 60),
    decided('tool', T + 60, { capability: 'math.add', callId: 'c0.0' }),
    enter('toolExecution.executing', T + 60),
    [{ kind: 'tool.start', callId: 'c0.0', toolName: 'math_add', capability: 'math.add', version: '1.0.0', arguments: content.args }, T + 61],
    exit('toolExecution.executing', T + 70),
    [{ kind: 'tool.call', callId: 'c0.0', toolName: 'math_add', capability: 'math.add', outcome: 'ok', result: content.result }, T + 70],
    exit('toolExecution', T + 71),
    enter('modelStep', T + 71),
    exit('modelStep', T + 80),
    modelStep(T + 80, 0, content.text),
    enter('assembly', T + 80),
    exit('assembly', T + 90),
    decided('output', T + 90),
    enter('background', T + 90),
    enter('background.authorizing', T + 91),
    exit('background.authorizing', T + 95),
    decided('memory.write', T + 95),
    enter('background.queueing', T + 95),
    exit('background.queueing', T + 100),
    exit('background', T + 100),
    enter('completed', T + 100),
  ];
}

/** Feeds marks the way the telemetry actor does: held ingress marks right after `startRun`. */
function feed(layer: TelemetryLayer, marks: Timed[], options: { identity?: RunIdentity; startAt?: number; end?: [string, number] | null } = {}) {
  const run = layer.startRun(options.identity ?? identity, options.startAt ?? T + 20);
  for (const [mark, at] of marks) run.record(mark, at);
  const [status, at] = options.end === undefined ? ['completed', T + 110] : (options.end ?? []);
  if (status !== undefined) run.end(status, at!);
  return run;
}

/** An SDK tracer provider that keeps finished spans in memory. */
function sdk(extraProcessors: SpanProcessor[] = []) {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [...extraProcessors, new SimpleSpanProcessor(exporter)] });
  const spans = () => exporter.getFinishedSpans();
  return {
    provider,
    tracer: provider.getTracer('test'),
    spans,
    named: (name: string) => spans().filter((span) => span.name === name),
    one(name: string): ReadableSpan {
      const found = spans().filter((span) => span.name === name);
      expect(found.map((span) => span.name)).toEqual([name]);
      return found[0]!;
    },
  };
}

/** A pino logger at level debug (every event) writing into an array of parsed lines. */
function memoryLogger(level = 'debug') {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

const millis = (time: readonly [number, number]) => time[0] * 1000 + time[1] / 1e6;
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const idOf = (span: ReadableSpan) => span.spanContext().spanId;
const everything = (value: unknown) => JSON.stringify(value, (_key, inner: unknown) => (typeof inner === 'bigint' ? String(inner) : inner));
const dump = (spans: readonly ReadableSpan[]) =>
  everything(spans.map((span) => ({ name: span.name, attributes: span.attributes, events: span.events, status: span.status })));

/**
 * What every telemetry layer promises: any mark in any order, including the odd orders of a
 * restored run, is taken without throwing, and `end` closes the run.
 */
function describeTelemetryContract(name: string, create: () => TelemetryLayer) {
  describe(`${name} satisfies the telemetry contract`, () => {
    it('takes every mark kind of a whole run and ends it', () => {
      const layer = create();
      expect(() =>
        feed(layer, [
          ...oneHopRun(),
          [{ kind: 'run.accepted', identity, input: 'hello' }, T + 100],
          [{ kind: 'warning', message: 'memory write-back was skipped' }, T + 100],
          [{ kind: 'run.error', error: { kind: 'internal', layer: 'runtime', message: 'boom', retryable: false } }, T + 100],
        ]),
      ).not.toThrow();
    });

    it('takes marks out of order: exits never entered, calls never started, steps outside a state, marks after the end', () => {
      const layer = create();
      const run = layer.startRun({ runId: 'restored', traceId: '', tenantId: '', principalId: '' }, T);
      expect(() => {
        run.record({ kind: 'state.exit', state: 'toolExecution.awaitingApproval' }, T);
        run.record({ kind: 'tool.call', callId: 'c9.9', toolName: 'ghost', outcome: 'rejected' }, T + 1);
        run.record({ kind: 'model.step', model: 'm', usage: { inputTokens: 0, outputTokens: 0 }, finishReason: 'stop', toolCalls: 0, text: null }, T + 2);
        run.record({ kind: 'state.enter', state: 'toolExecution.executing' }, T + 3);
        run.record({ kind: 'tool.start', callId: 'c1.0', toolName: 'math_add', capability: 'math.add', version: '1', arguments: '{}' }, T + 3);
        run.end('cancelled', T + 4);
        run.record({ kind: 'state.enter', state: 'late' }, T + 5);
        run.end('cancelled', T + 6);
      }).not.toThrow();
    });

    it('ends a run that recorded nothing', () => {
      expect(() => create().startRun(identity, T).end('failed', T + 1)).not.toThrow();
    });
  });
}

describeTelemetryContract('the recording fake', () => recordingTelemetry());
describeTelemetryContract('the no-op layer', () => noopTelemetry);
describeTelemetryContract('the OpenTelemetry adapter', () => otelTelemetry({ tracer: sdk().tracer, captureContent: true }));
describeTelemetryContract('the pino adapter', () => pinoTelemetry({ logger: memoryLogger().logger, captureContent: true }));
describeTelemetryContract('createTelemetry', () =>
  createTelemetry({ tracer: sdk().tracer, logger: memoryLogger().logger, config: parseConfig({ telemetry: { capture_content: true } }) }),
);

describe('the OpenTelemetry adapter', () => {
  it('makes the root span in the caller trace, under the caller span, with the run identity', () => {
    const traces = sdk();
    feed(otelTelemetry({ tracer: traces.tracer }), oneHopRun());

    const root = traces.one('invoke_agent runchart');
    expect(root.spanContext().traceId).toBe(TRACE);
    expect(parentOf(root)).toBe(PARENT);
    expect(root.parentSpanContext?.isRemote).toBe(true);
    expect(root.attributes).toMatchObject({
      'gen_ai.operation.name': 'invoke_agent',
      'gen_ai.agent.name': 'runchart',
      'runchart.run_id': 'run-1',
      'runchart.tenant_id': 'acme',
      'runchart.principal_id': 'user-7',
      'runchart.session_id': 'session-1',
      'runchart.run.status': 'completed',
      'gen_ai.usage.input_tokens': 20,
      'gen_ai.usage.output_tokens': 10,
    });
    // Ingress ran before the request was accepted: the root starts with it.
    expect(millis(root.startTime)).toBe(T);
    expect(millis(root.endTime)).toBe(T + 110);
    expect(traces.spans().every((span) => span.spanContext().traceId === TRACE)).toBe(true);
    expect(root.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('continues the caller trace under a made-up remote parent when no parent span is given', () => {
    const traces = sdk();
    const { parentSpanId: _dropped, ...withoutParent } = identity;
    feed(otelTelemetry({ tracer: traces.tracer }), oneHopRun(), { identity: withoutParent });

    const root = traces.one('invoke_agent runchart');
    expect(root.spanContext().traceId).toBe(TRACE);
    expect(parentOf(root)).toMatch(/^[0-9a-f]{16}$/);
    expect(parentOf(root)).not.toBe('0000000000000000');
  });

  it('starts a new trace when the run has no valid trace id (a restored run)', () => {
    const traces = sdk();
    feed(otelTelemetry({ tracer: traces.tracer }), oneHopRun(), { identity: { runId: 'r', traceId: '', tenantId: '', principalId: '' } });

    const root = traces.one('invoke_agent runchart');
    expect(root.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(root.parentSpanContext).toBeUndefined();
  });

  it('makes one span per state, from its entry to its exit, nested as the states are', () => {
    const traces = sdk();
    feed(otelTelemetry({ tracer: traces.tracer }), oneHopRun());
    const root = traces.one('invoke_agent runchart');

    for (const name of ['ingress', 'policy', 'retrieval', 'toolExecution', 'assembly', 'background', 'completed']) {
      expect(parentOf(traces.one(name)), name).toBe(idOf(root));
    }
    expect(traces.named('modelStep').map(parentOf)).toEqual([idOf(root), idOf(root)]);
    expect(parentOf(traces.one('toolExecution.authorizing'))).toBe(idOf(traces.one('toolExecution')));
    expect(parentOf(traces.one('toolExecution.executing'))).toBe(idOf(traces.one('toolExecution')));
    expect(parentOf(traces.one('background.authorizing'))).toBe(idOf(traces.one('background')));
    expect(parentOf(traces.one('background.queueing'))).toBe(idOf(traces.one('background')));

    const policy = traces.one('policy');
    expect([millis(policy.startTime), millis(policy.endTime)]).toEqual([T + 20, T + 30]);
    const executing = traces.one('toolExecution.executing');
    expect([millis(executing.startTime), millis(executing.endTime)]).toEqual([T + 60, T + 70]);
    // A final state has no exit: it ends with the run.
    expect(millis(traces.one('completed').endTime)).toBe(T + 110);
    expect(traces.one('policy').attributes['runchart.state']).toBe('policy');
  });

  it('makes a chat span per model step under its modelStep span, with the GenAI attributes', () => {
    const traces = sdk();
    feed(otelTelemetry({ tracer: traces.tracer, requestModel: 'gpt-test' }), oneHopRun());

    const chats = traces.named('chat gpt-test');
    const steps = traces.named('modelStep');
    expect(chats).toHaveLength(2);
    expect(chats.map(parentOf)).toEqual(steps.map(idOf));
    expect(chats.map((chat) => [millis(chat.startTime), millis(chat.endTime)])).toEqual([
      [T + 40, T + 50],
      [T + 71, T + 80],
    ]);
    expect(chats[0]!.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'gpt-test',
      'gen_ai.usage.input_tokens': 10,
      'gen_ai.usage.output_tokens': 5,
      'gen_ai.response.finish_reasons': ['tool_calls'],
    });
    expect(chats[1]!.attributes['gen_ai.response.finish_reasons']).toEqual(['stop']);
  });

  it('makes an execute_tool span per executed call, from its start to its result', () => {
    const traces = sdk();
    feed(otelTelemetry({ tracer: traces.tracer }), oneHopRun());

    const tool = traces.one('execute_tool math_add');
    expect(parentOf(tool)).toBe(idOf(traces.one('toolExecution.executing')));
    expect([millis(tool.startTime), millis(tool.endTime)]).toEqual([T + 61, T + 70]);
    expect(tool.attributes).toMatchObject({
      'gen_ai.operation.name': 'execute_tool',
      'gen_ai.tool.name': 'math_add',
      'gen_ai.tool.call.id': 'c0.0',
      'runchart.capability': 'math.add',
      'runchart.tool.outcome': 'ok',
    });
    expect(tool.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('marks a failed tool call as an error, and a call that never ran as an event on the state that settled it', () => {
    const traces = sdk();
    feed(otelTelemetry({ tracer: traces.tracer }), [
      enter('toolExecution', T),
      enter('toolExecution.executing', T + 1),
      [{ kind: 'tool.start', callId: 'c0.0', toolName: 'math_add', capability: 'math.add', version: '1.0.0', arguments: '{}' }, T + 1],
      exit('toolExecution.executing', T + 2),
      [{ kind: 'tool.call', callId: 'c0.0', toolName: 'math_add', capability: 'math.add', outcome: 'error', message: 'math.add: division by zero' }, T + 2],
      enter('toolExecution.authorizing', T + 3),
      exit('toolExecution.authorizing', T + 4),
      decided('tool', T + 4, { verdict: 'deny', ruleId: 'no-refunds', capability: 'payments.refund', callId: 'c0.1' }),
      [{ kind: 'tool.call', callId: 'c0.1', toolName: 'payments_refund', capability: 'payments.refund', outcome: 'denied', message: 'denied by no-refunds' }, T + 4],
    ], { startAt: T });

    const tool = traces.one('execute_tool math_add');
    expect(tool.status).toEqual({ code: SpanStatusCode.ERROR, message: 'math.add: division by zero' });
    expect(traces.named('execute_tool payments_refund')).toEqual([]);
    const authorizing = traces.one('toolExecution.authorizing');
    expect(authorizing.attributes).toMatchObject({ 'runchart.policy.verdict': 'deny', 'runchart.policy.rule_id': 'no-refunds', 'runchart.policy.stage': 'tool' });
    expect(authorizing.events.map((event) => event.name)).toEqual(['runchart.policy.decision', 'runchart.tool.call']);
    expect(authorizing.events[1]!.attributes).toMatchObject({ 'runchart.tool.outcome': 'denied', 'gen_ai.tool.call.id': 'c0.1', 'gen_ai.tool.name': 'payments_refund' });
  });

  it('puts each policy decision on the span of the state that made it, as attributes and an event', () => {
    const traces = sdk();
    feed(otelTelemetry({ tracer: traces.tracer }), oneHopRun());

    const expected: [string, string][] = [
      ['policy', 'precheck'],
      ['toolExecution.authorizing', 'tool'],
      ['assembly', 'output'],
      ['background.authorizing', 'memory.write'],
    ];
    for (const [state, stage] of expected) {
      const span = traces.one(state);
      expect(span.attributes, state).toMatchObject({ 'runchart.policy.verdict': 'allow', 'runchart.policy.rule_id': `rule-${stage}`, 'runchart.policy.stage': stage });
      expect(span.events.map((event) => [event.name, event.attributes?.['runchart.policy.stage']])).toEqual([['runchart.policy.decision', stage]]);
      expect(millis(span.events[0]!.time)).toBe(millis(span.endTime));
    }
    expect(traces.one('toolExecution.authorizing').attributes).toMatchObject({ 'runchart.capability': 'math.add', 'gen_ai.tool.call.id': 'c0.0' });
    expect(traces.one('retrieval').events).toEqual([]);
  });

  it('sets ERROR on the failing state, its open chat span and the root when the model call fails', () => {
    const traces = sdk();
    feed(
      otelTelemetry({ tracer: traces.tracer, requestModel: 'gpt-test' }),
      [
        enter('modelStep', T),
        exit('modelStep', T + 5),
        [{ kind: 'run.error', error: { kind: 'tool-failed', layer: 'model', message: 'model: upstream broke', retryable: false } }, T + 5],
        enter('failed', T + 5),
      ],
      { startAt: T, end: ['failed', T + 6] },
    );

    const error = { code: SpanStatusCode.ERROR, message: 'model: upstream broke' };
    expect(traces.one('modelStep').status).toEqual(error);
    expect(traces.one('chat gpt-test').status).toEqual(error);
    expect(millis(traces.one('chat gpt-test').endTime)).toBe(T + 5);
    const root = traces.one('invoke_agent runchart');
    expect(root.status).toEqual(error);
    expect(root.attributes).toMatchObject({ 'error.type': 'tool-failed', 'runchart.run.status': 'failed' });
    expect(traces.one('failed').status.code).toBe(SpanStatusCode.UNSET);
  });

  it('ends a denied run without an error status, naming how it ended', () => {
    const traces = sdk();
    feed(otelTelemetry({ tracer: traces.tracer }), [enter('policy', T), exit('policy', T + 1), decided('precheck', T + 1, { verdict: 'deny', ruleId: 'default-deny' }), enter('denied', T + 1)], {
      startAt: T,
      end: ['denied', T + 2],
    });

    const root = traces.one('invoke_agent runchart');
    expect(root.status.code).toBe(SpanStatusCode.UNSET);
    expect(root.attributes['runchart.run.status']).toBe('denied');
    expect(traces.one('policy').attributes['runchart.policy.verdict']).toBe('deny');
  });

  it('ends every span left open when the run ends (a run parked for approval when the runtime closes)', () => {
    const traces = sdk();
    feed(
      otelTelemetry({ tracer: traces.tracer }),
      [
        enter('modelStep', T),
        enter('toolExecution', T + 1),
        enter('toolExecution.executing', T + 2),
        [{ kind: 'tool.start', callId: 'c0.0', toolName: 'slow', capability: 'slow', version: '1', arguments: '{}' }, T + 2],
      ],
      { startAt: T, end: ['toolExecution.executing', T + 9] },
    );

    const names = traces.spans().map((span) => span.name).sort();
    expect(names).toEqual(['chat', 'execute_tool slow', 'invoke_agent runchart', 'modelStep', 'toolExecution', 'toolExecution.executing'].sort());
    expect(traces.spans().every((span) => span.ended)).toBe(true);
    expect(millis(traces.one('toolExecution').endTime)).toBe(T + 9);
  });

  it('keeps content out of spans unless capture_content is on, and redacts secrets either way', () => {
    const content = { args: `{"token":"${CANARY}","note":"tool-args-text"}`, result: `result-text ${CANARY}`, text: `model-text ${CANARY}` };
    const marks: Timed[] = [[{ kind: 'run.accepted', identity, input: `input-text ${CANARY} internal-4242` }, T], ...oneHopRun(content)];

    const off = sdk();
    feed(otelTelemetry({ tracer: off.tracer, captureContent: false }), marks);
    const hidden = dump(off.spans());
    for (const text of ['input-text', 'tool-args-text', 'result-text', 'model-text', CANARY]) expect(hidden).not.toContain(text);

    const on = sdk();
    feed(otelTelemetry({ tracer: on.tracer, captureContent: true, redactPatterns: ['internal-[0-9]+'] }), marks);
    const shown = dump(on.spans());
    for (const text of ['input-text', 'tool-args-text', 'result-text', 'model-text', '[redacted]']) expect(shown).toContain(text);
    expect(shown).not.toContain(CANARY);
    expect(shown).not.toContain('internal-4242');
    expect(on.one('invoke_agent runchart').attributes['runchart.content.input']).toBe('input-text [redacted] [redacted]');
    expect(on.one('execute_tool math_add').attributes['gen_ai.tool.call.arguments']).toBe('{"token":"[redacted]","note":"tool-args-text"}');
  });

  it('redacts secrets in non-content fields too: warnings, error messages, decision reasons', () => {
    const traces = sdk();
    feed(otelTelemetry({ tracer: traces.tracer }), [
      enter('policy', T),
      [{ kind: 'warning', message: `retrying with ${CANARY}` }, T + 1],
      exit('policy', T + 2),
      [{ kind: 'decision', decision: { verdict: 'deny', ruleId: 'r', reason: `key ${CANARY}`, stage: 'precheck', principalId: 'p' } }, T + 2],
      [{ kind: 'run.error', error: { kind: 'internal', layer: 'policy', message: `policy: ${CANARY}`, retryable: false } }, T + 2],
    ], { startAt: T, end: ['failed', T + 3] });

    expect(dump(traces.spans())).not.toContain(CANARY);
    expect(dump(traces.spans())).toContain('[redacted]');
  });

  it('never throws when a span processor throws, and reports the first failure of the run once', () => {
    const throwing: SpanProcessor = {
      onStart: () => {
        throw new Error('processor start broke');
      },
      onEnd: () => {
        throw new Error('processor end broke');
      },
      forceFlush: async () => {},
      shutdown: async () => {},
    };
    const traces = sdk([throwing]);
    const onError = vi.fn();
    expect(() => feed(otelTelemetry({ tracer: traces.tracer, onError }), oneHopRun())).not.toThrow();
    expect(onError).toHaveBeenCalledTimes(1);
  });

  it('never throws when the exporter throws', async () => {
    const exporter = new InMemorySpanExporter();
    exporter.export = () => {
      throw new Error('collector unreachable');
    };
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    expect(() => feed(otelTelemetry({ tracer: provider.getTracer('test') }), oneHopRun())).not.toThrow();
    // The SDK hands export failures to its own error handler; flushing reports them, the run never sees them.
    await expect(provider.forceFlush()).rejects.toBeDefined();
  });

  it('still names the caller trace with the global no-op tracer (no SDK registered)', () => {
    const layer = otelTelemetry();
    const run = layer.startRun(identity, T);
    run.record({ kind: 'state.enter', state: 'policy' }, T);
    expect(run.current().traceId).toBe(TRACE);
    run.end('completed', T + 1);
    expect(run.root().traceId).toBe(TRACE);
  });
});

describe('the pino adapter', () => {
  const fields = ['event', 'trace_id', 'span_id', 'run_id', 'tenant_id', 'principal_id'];

  it('logs one line per mark, each naming the run and the span its mark landed on', () => {
    const traces = sdk();
    const { logger, lines } = memoryLogger();
    feed(pinoTelemetry({ logger, tracing: otelTelemetry({ tracer: traces.tracer, requestModel: 'gpt-test' }) }), oneHopRun());

    const marks = oneHopRun();
    expect(lines).toHaveLength(marks.length + 2);
    expect(lines.map((line) => line.event)).toEqual([
      'run.accepted',
      ...marks.map(([mark]) => (mark.kind === 'decision' ? 'policy.decision' : mark.kind)),
      'run.end',
    ]);
    for (const line of lines) {
      for (const field of fields) expect(line[field], `${String(line.event)}.${field}`).toEqual(expect.any(String));
      expect(line).toMatchObject({ trace_id: TRACE, run_id: 'run-1', tenant_id: 'acme', principal_id: 'user-7', session_id: 'session-1' });
    }

    const spanIds = new Map(traces.spans().map((span) => [idOf(span), span.name]));
    const spanOfEvent = (event: string, predicate: (line: Record<string, unknown>) => boolean = () => true) =>
      lines.filter((line) => line.event === event && predicate(line)).map((line) => spanIds.get(line.span_id as string));
    expect(spanOfEvent('run.accepted')).toEqual(['invoke_agent runchart']);
    expect(spanOfEvent('run.end')).toEqual(['invoke_agent runchart']);
    expect(spanOfEvent('state.enter', (line) => line.state === 'policy')).toEqual(['policy']);
    expect(spanOfEvent('state.exit', (line) => line.state === 'toolExecution.executing')).toEqual(['toolExecution.executing']);
    expect(spanOfEvent('policy.decision')).toEqual(['policy', 'toolExecution.authorizing', 'assembly', 'background.authorizing']);
    expect(spanOfEvent('model.step')).toEqual(['chat gpt-test', 'chat gpt-test']);
    expect(spanOfEvent('tool.start')).toEqual(['execute_tool math_add']);
    expect(spanOfEvent('tool.call')).toEqual(['execute_tool math_add']);
    expect(lines.find((line) => line.event === 'policy.decision')).toMatchObject({ verdict: 'allow', rule_id: 'rule-precheck', stage: 'precheck' });
    expect(lines.find((line) => line.event === 'model.step')).toMatchObject({ model: 'gpt-test', input_tokens: 10, output_tokens: 5, finish_reason: 'tool_calls' });
    expect(lines.at(-1)).toMatchObject({ event: 'run.end', status: 'completed', at: T + 110 });
  });

  it('logs warnings at warn and run errors at error', () => {
    const { logger, lines } = memoryLogger();
    feed(
      pinoTelemetry({ logger }),
      [
        [{ kind: 'warning', message: 'skipped' }, T],
        [{ kind: 'run.error', error: { kind: 'timeout', layer: 'execution', message: 'too slow', retryable: true } }, T],
      ],
      { startAt: T, end: ['failed', T] },
    );
    expect(lines.map((line) => [line.event, line.level])).toEqual([
      ['run.accepted', 30],
      ['warning', 40],
      ['run.error', 50],
      ['run.end', 30],
    ]);
    // Without tracing, lines carry the caller's trace and span.
    expect(lines[1]).toMatchObject({ trace_id: TRACE, span_id: PARENT, message: 'skipped' });
    expect(lines[2]).toMatchObject({ error_kind: 'timeout', layer: 'execution', message: 'too slow', retryable: true });
  });

  it('logs each state and tool start at debug, decisions, model steps, tool results and the run end at info', () => {
    const all = memoryLogger('debug');
    feed(pinoTelemetry({ logger: all.logger }), oneHopRun());
    const levels = new Map(all.lines.map((line) => [line.event, line.level]));
    expect(Object.fromEntries(levels)).toEqual({
      'run.accepted': 30,
      'state.enter': 20,
      'state.exit': 20,
      'policy.decision': 30,
      'model.step': 30,
      'tool.start': 20,
      'tool.call': 30,
      'run.end': 30,
    });
    // At pino's default level a run is a handful of lines: what was decided and how it ended.
    const quiet = memoryLogger('info');
    feed(pinoTelemetry({ logger: quiet.logger }), oneHopRun());
    expect(quiet.lines.map((line) => line.event)).toEqual(['run.accepted', 'policy.decision', 'model.step', 'policy.decision', 'tool.call', 'model.step', 'policy.decision', 'policy.decision', 'run.end']);
  });

  it('gives a logger without debug only the lines it can take', () => {
    const received: string[] = [];
    const logger = { info: (_line: object, event: string) => void received.push(event), warn: () => {}, error: () => {} } as unknown as EventLogger;
    const onError = vi.fn();
    feed(pinoTelemetry({ logger, onError }), oneHopRun());
    expect(onError).not.toHaveBeenCalled();
    expect(received).not.toContain('state.enter');
    expect(received.at(-1)).toBe('run.end');
  });

  it('keeps content out of the lines unless capture_content is on, and redacts secrets either way', () => {
    const content = { args: `{"token":"${CANARY}","note":"tool-args-text"}`, result: `result-text ${CANARY}`, text: `model-text ${CANARY}` };
    const marks: Timed[] = [[{ kind: 'run.accepted', identity, input: `input-text ${CANARY}` }, T], ...oneHopRun(content)];

    const off = memoryLogger();
    feed(pinoTelemetry({ logger: off.logger, captureContent: false }), marks);
    for (const text of ['input-text', 'tool-args-text', 'result-text', 'model-text', CANARY]) expect(everything(off.lines)).not.toContain(text);

    const on = memoryLogger();
    feed(pinoTelemetry({ logger: on.logger, captureContent: true, redactPatterns: ['tool-args-[a-z]+'] }), marks);
    const shown = everything(on.lines);
    for (const text of ['input-text', 'result-text', 'model-text', '[redacted]']) expect(shown).toContain(text);
    expect(shown).not.toContain(CANARY);
    expect(shown).not.toContain('tool-args-text');
    expect(on.lines.filter((line) => line.event === 'run.accepted')).toHaveLength(1);
    expect(on.lines[0]).toMatchObject({ event: 'run.accepted', input: 'input-text [redacted]' });
  });

  it('never throws when the logger or its stream throws, and reports once per run', () => {
    const onError = vi.fn();
    const throwingStream = new Writable({
      write() {
        throw new Error('disk full');
      },
    });
    const layer = pinoTelemetry({ logger: pino({}, throwingStream), onError, tracing: otelTelemetry({ tracer: sdk().tracer }) });
    expect(() => feed(layer, oneHopRun())).not.toThrow();
    expect(onError).toHaveBeenCalledTimes(1);

    const throwingLogger = {
      info: () => {
        throw new Error('logger broke');
      },
      warn: () => {},
      error: () => {},
    } as unknown as EventLogger;
    expect(() => feed(pinoTelemetry({ logger: throwingLogger, onError }), oneHopRun())).not.toThrow();
    expect(onError).toHaveBeenCalledTimes(2);
  });

  it('keeps spans going when the logger fails', () => {
    const traces = sdk();
    const logger = {
      info: () => {
        throw new Error('logger broke');
      },
      warn: () => {},
      error: () => {},
    } as unknown as EventLogger;
    feed(pinoTelemetry({ logger, tracing: otelTelemetry({ tracer: traces.tracer }) }), oneHopRun());
    expect(traces.named('invoke_agent runchart')).toHaveLength(1);
    expect(traces.named('execute_tool math_add')).toHaveLength(1);
  });

  it('survives a stream that fails later, with an error event instead of a throw', async () => {
    const onError = vi.fn();
    const failing = new Writable({
      write(_chunk, _encoding, callback) {
        callback(new Error('pipe closed'));
      },
    });
    feed(pinoTelemetry({ logger: pino({}, failing), onError }), oneHopRun());
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(onError).toHaveBeenCalledTimes(1);
    expect((onError.mock.calls[0]![0] as Error).message).toBe('pipe closed');
  });
});

describe('createTelemetry', () => {
  afterEach(() => trace.disable());

  const configWith = (telemetry: RunchartConfigInput['telemetry']) => parseConfig({ telemetry, runtime: { default_model: 'gpt-test' } });

  it('combines spans and events, content and redaction from the config', () => {
    const traces = sdk();
    const { logger, lines } = memoryLogger();
    const layer = createTelemetry({ tracer: traces.tracer, logger, config: configWith({ capture_content: true, redact_patterns: ['note-[0-9]+'] }) });
    feed(layer, oneHopRun({ args: '{"note":"note-77"}', result: '5', text: 'done' }));

    expect(traces.named('chat gpt-test')).toHaveLength(2);
    expect(traces.one('execute_tool math_add').attributes['gen_ai.tool.call.arguments']).toBe('{"note":"[redacted]"}');
    expect(lines.find((line) => line.event === 'tool.start')).toMatchObject({ arguments: '{"note":"[redacted]"}' });
    const spanIds = new Set(traces.spans().map(idOf));
    expect(lines.every((line) => spanIds.has(line.span_id as string))).toBe(true);
  });

  it('logs nothing when emit_structured_events is false, even with a logger', () => {
    const traces = sdk();
    const { logger, lines } = memoryLogger();
    feed(createTelemetry({ tracer: traces.tracer, logger, config: configWith({ emit_structured_events: false }) }), oneHopRun());
    expect(lines).toEqual([]);
    expect(traces.named('invoke_agent runchart')).toHaveLength(1);
  });

  it('uses the global tracer by default', () => {
    const traces = sdk();
    trace.setGlobalTracerProvider(traces.provider);
    feed(createTelemetry({ config: configWith({ emit_structured_events: false }) }), oneHopRun());
    expect(traces.one('invoke_agent runchart').instrumentationScope.name).toBe('runchart');
  });
});
