import { Writable } from 'node:stream';
import { SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createRuntime, parseConfig, type Capability, type PolicyRule, type RunchartConfigInput } from '../../src/index.js';
import { createTelemetry } from '../../src/telemetry/create.js';
import { scriptedModel, type ScriptedStep } from '../../src/testing/index.js';
import { allowMath, allowRuns, request, spied, spiedAdd } from '../support/scenario.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const CANARY = 'sk-canary0123456789abcdef';
const allowNotes: PolicyRule = { id: 'allow-notes', stage: 'tool', effect: 'allow', capabilities: ['notes.*'] };

/** An SDK tracer provider keeping finished spans in memory, with optional extra processors in front. */
function sdk(options: { processors?: SpanProcessor[]; exporter?: InMemorySpanExporter } = {}) {
  const exporter = options.exporter ?? new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [...(options.processors ?? []), new SimpleSpanProcessor(exporter)] });
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

/** A pino logger at level debug (every event) over a Writable that keeps every line, parsed. */
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

/** A whole runtime on the real telemetry adapter: spans to `traces`, events to `logger`. */
function tracedRuntime(options: {
  steps: ScriptedStep[];
  capabilities?: Capability[];
  rules?: PolicyRule[];
  telemetry?: RunchartConfigInput['telemetry'];
  traces: ReturnType<typeof sdk>;
  logger?: Parameters<typeof createTelemetry>[0]['logger'];
  onError?: (error: unknown) => void;
}) {
  const config = parseConfig({
    store: { kind: 'memory' },
    runtime: { default_model: 'gpt-test' },
    telemetry: options.telemetry ?? {},
    policy: { rules: options.rules ?? [allowRuns, allowMath] },
  });
  const model = scriptedModel(options.steps);
  const warnings: string[] = [];
  const runtime = createRuntime({
    config,
    model,
    capabilities: options.capabilities ?? [spiedAdd().capability],
    telemetry: createTelemetry({
      tracer: options.traces.tracer,
      config,
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.onError ? { onError: options.onError } : {}),
    }),
    onWarning: (message) => void warnings.push(message),
  });
  return { runtime, model, warnings };
}

/** Runs one request to the end and waits for every span to be exported. */
async function runToEnd(setup: ReturnType<typeof tracedRuntime>, traces: ReturnType<typeof sdk>, overrides: Record<string, unknown> = {}) {
  const result = await setup.runtime.run(request(overrides));
  await setup.runtime.drain();
  await setup.runtime.close();
  await traces.provider.forceFlush().catch(() => undefined);
  return result;
}

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const idOf = (span: ReadableSpan) => span.spanContext().spanId;
const millis = (time: readonly [number, number]) => time[0] * 1000 + time[1] / 1e6;
const dump = (spans: readonly ReadableSpan[]) => JSON.stringify(spans.map((span) => ({ name: span.name, attributes: span.attributes, events: span.events, status: span.status })));
const addTwoAndThree: ScriptedStep = { toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] };

describe('telemetry of a one-hop tool run', () => {
  it('traces the run: root, a span per state under its parent, two chat spans, one execute_tool span, decisions', async () => {
    const traces = sdk();
    const setup = tracedRuntime({ steps: [addTwoAndThree, { text: '2 + 3 = 5' }], traces, logger: memoryLogger().logger });

    const result = await runToEnd(setup, traces, { traceId: TRACE, sessionId: 'session-1' });

    expect(result.status).toBe('completed');
    const root = traces.one('invoke_agent runchart');
    expect(root.attributes).toMatchObject({
      'gen_ai.operation.name': 'invoke_agent',
      'gen_ai.agent.name': 'runchart',
      'runchart.run_id': result.runId,
      'runchart.tenant_id': 'acme',
      'runchart.principal_id': 'user-7',
      'runchart.session_id': 'session-1',
      'runchart.run.status': 'completed',
    });
    expect(root.status.code).toBe(SpanStatusCode.UNSET);
    expect(traces.spans().every((span) => span.spanContext().traceId === TRACE)).toBe(true);

    for (const state of ['ingress', 'policy', 'retrieval', 'toolExecution', 'assembly', 'background', 'completed']) {
      expect(parentOf(traces.one(state)), state).toBe(idOf(root));
    }
    const steps = traces.named('modelStep');
    expect(steps.map(parentOf)).toEqual([idOf(root), idOf(root)]);
    const toolExecution = traces.one('toolExecution');
    expect(parentOf(traces.one('toolExecution.authorizing'))).toBe(idOf(toolExecution));
    const executing = traces.one('toolExecution.executing');
    expect(parentOf(executing)).toBe(idOf(toolExecution));
    expect(parentOf(traces.one('background.authorizing'))).toBe(idOf(traces.one('background')));

    const chats = traces.named('chat gpt-test');
    expect(chats).toHaveLength(2);
    expect(chats.map(parentOf).sort()).toEqual(steps.map(idOf).sort());
    const [first, second] = [...chats].sort((a, b) => millis(a.startTime) - millis(b.startTime));
    expect(first!.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'gpt-test',
      'gen_ai.usage.input_tokens': 10,
      'gen_ai.usage.output_tokens': 5,
      'gen_ai.response.finish_reasons': ['tool_calls'],
    });
    expect(second!.attributes['gen_ai.response.finish_reasons']).toEqual(['stop']);

    const tool = traces.one('execute_tool math_add');
    expect(parentOf(tool)).toBe(idOf(executing));
    expect(tool.attributes).toMatchObject({
      'gen_ai.operation.name': 'execute_tool',
      'gen_ai.tool.name': 'math_add',
      'gen_ai.tool.call.id': 'c0.0',
      'runchart.capability': 'math.add',
      'runchart.tool.outcome': 'ok',
    });

    const decisions: [string, string, string][] = [
      ['policy', 'precheck', 'allow-runs'],
      ['toolExecution.authorizing', 'tool', 'allow-math'],
      ['assembly', 'output', 'allow-runs'],
      ['background.authorizing', 'memory.write', 'allow-runs'],
    ];
    for (const [state, stage, ruleId] of decisions) {
      const span = traces.one(state);
      expect(span.attributes, state).toMatchObject({ 'runchart.policy.verdict': 'allow', 'runchart.policy.rule_id': ruleId, 'runchart.policy.stage': stage });
      expect(span.events.map((event) => event.name), state).toContain('runchart.policy.decision');
    }
    // Every span has ended, no earlier than it started, and none before the root started.
    for (const span of traces.spans()) {
      expect(span.ended).toBe(true);
      expect(millis(span.endTime)).toBeGreaterThanOrEqual(millis(span.startTime));
      expect(millis(span.startTime)).toBeGreaterThanOrEqual(millis(root.startTime));
    }
    expect(setup.warnings).toEqual([]);
    setup.model.verify();
  });

  it('puts the run identity, the trace and the span of the mark on every pino line', async () => {
    const traces = sdk();
    const { logger, lines } = memoryLogger();
    const setup = tracedRuntime({ steps: [addTwoAndThree, { text: '5' }], traces, logger });

    const result = await runToEnd(setup, traces, { traceId: TRACE });

    const spanNames = new Map(traces.spans().map((span) => [idOf(span), span.name]));
    expect(lines.length).toBeGreaterThan(20);
    for (const line of lines) {
      expect(line).toMatchObject({ trace_id: TRACE, run_id: result.runId, tenant_id: 'acme', principal_id: 'user-7' });
      expect(line.event).toEqual(expect.any(String));
      expect(spanNames.has(line.span_id as string), `${String(line.event)} names an exported span`).toBe(true);
    }
    const events = lines.map((line) => line.event);
    expect(events[0]).toBe('run.accepted');
    expect(events.at(-1)).toBe('run.end');
    for (const event of ['state.enter', 'state.exit', 'policy.decision', 'model.step', 'tool.start', 'tool.call']) expect(events).toContain(event);
    expect(spanNames.get(lines.find((line) => line.event === 'tool.call')!.span_id as string)).toBe('execute_tool math_add');
    expect(lines.filter((line) => line.event === 'model.step').map((line) => spanNames.get(line.span_id as string))).toEqual(['chat gpt-test', 'chat gpt-test']);
    expect(lines.at(-1)).toMatchObject({ event: 'run.end', status: 'completed' });
  });
});

describe('the caller trace', () => {
  it('is the trace of every span and line when given as a traceparent, and its span is the root parent', async () => {
    const traces = sdk();
    const { logger, lines } = memoryLogger();
    const setup = tracedRuntime({ steps: [addTwoAndThree, { text: '5' }], traces, logger });

    await runToEnd(setup, traces, { traceparent: `00-${TRACE}-${PARENT}-01` });

    const root = traces.one('invoke_agent runchart');
    expect(parentOf(root)).toBe(PARENT);
    expect(root.parentSpanContext?.traceId).toBe(TRACE);
    expect(traces.spans().map((span) => span.spanContext().traceId)).toEqual(traces.spans().map(() => TRACE));
    expect(lines.every((line) => line.trace_id === TRACE)).toBe(true);
  });

  it('is a new trace id of the run when the caller sends none, still shared by every span', async () => {
    const traces = sdk();
    const setup = tracedRuntime({ steps: [{ text: 'hi' }], traces, logger: memoryLogger().logger });

    const result = await runToEnd(setup, traces);

    expect(new Set(traces.spans().map((span) => span.spanContext().traceId))).toEqual(new Set([result.traceId]));
  });
});

describe('secrets and content', () => {
  const echo = () =>
    spied({
      name: 'notes.echo',
      input: z.object({ note: z.string() }),
      output: z.string(),
      handler: ({ note }) => `echoed ${note} and ${CANARY}`,
    }).capability;
  const steps = (): ScriptedStep[] => [
    { toolCalls: [{ name: 'notes_echo', arguments: { note: `tool-argument ${CANARY}` } }] },
    { text: `the-final-answer ${CANARY}` },
  ];

  for (const captureContent of [true, false]) {
    it(`never lets the canary secret out, with capture_content ${captureContent ? 'on' : 'off'}`, async () => {
      const traces = sdk();
      const { logger, lines } = memoryLogger();
      const setup = tracedRuntime({
        steps: steps(),
        capabilities: [echo()],
        rules: [allowRuns, allowNotes],
        telemetry: { capture_content: captureContent },
        traces,
        logger,
      });

      const result = await runToEnd(setup, traces, { input: `the-user-question ${CANARY}`, traceId: TRACE });

      expect(result.status).toBe('completed');
      const spans = dump(traces.spans());
      const logs = JSON.stringify(lines);
      expect(spans).not.toContain('sk-canary');
      expect(logs).not.toContain('sk-canary');
      expect(traces.named('execute_tool notes_echo')).toHaveLength(1);
      if (captureContent) {
        const tool = traces.one('execute_tool notes_echo');
        expect(tool.attributes['gen_ai.tool.call.arguments']).toBe('{"note":"tool-argument [redacted]"}');
        expect(tool.attributes['gen_ai.tool.call.result']).toContain('[redacted]');
        expect(spans).toContain('the-final-answer [redacted]');
        expect(logs).toContain('tool-argument [redacted]');
      } else {
        for (const text of ['the-user-question', 'tool-argument', 'echoed', 'the-final-answer']) {
          expect(spans, text).not.toContain(text);
          expect(logs, text).not.toContain(text);
        }
      }
    });
  }

  it('redacts the configured patterns too', async () => {
    const traces = sdk();
    const { logger, lines } = memoryLogger();
    const setup = tracedRuntime({
      steps: [{ toolCalls: [{ name: 'notes_echo', arguments: { note: 'ticket internal-4242' } }] }, { text: 'done' }],
      capabilities: [echo()],
      rules: [allowRuns, allowNotes],
      telemetry: { capture_content: true, redact_patterns: ['internal-[0-9]+'] },
      traces,
      logger,
    });

    await runToEnd(setup, traces);

    expect(dump(traces.spans())).not.toContain('internal-4242');
    expect(JSON.stringify(lines)).not.toContain('internal-4242');
    expect(dump(traces.spans())).toContain('ticket [redacted]');
  });
});

describe('broken telemetry never fails a run', () => {
  it('completes when the exporter throws', async () => {
    const exporter = new InMemorySpanExporter();
    exporter.export = () => {
      throw new Error('collector unreachable');
    };
    const traces = sdk({ exporter });
    const setup = tracedRuntime({ steps: [addTwoAndThree, { text: '5' }], traces, logger: memoryLogger().logger });

    const result = await runToEnd(setup, traces);

    expect(result.status).toBe('completed');
    expect(result.output).toBe('5');
  });

  it('completes when a span processor throws, and tells onError once', async () => {
    const broken: SpanProcessor = {
      onStart: () => {
        throw new Error('processor broke');
      },
      onEnd: () => {
        throw new Error('processor broke');
      },
      forceFlush: async () => {},
      shutdown: async () => {},
    };
    const traces = sdk({ processors: [broken] });
    const onError = vi.fn();
    const setup = tracedRuntime({ steps: [addTwoAndThree, { text: '5' }], traces, logger: memoryLogger().logger, onError });

    const result = await runToEnd(setup, traces);

    expect(result.status).toBe('completed');
    expect(onError).toHaveBeenCalledTimes(1);
  });

  it('completes when the logger stream throws on write, or fails later', async () => {
    for (const stream of [
      new Writable({
        write() {
          throw new Error('disk full');
        },
      }),
      new Writable({
        write(_chunk, _encoding, callback) {
          callback(new Error('pipe closed'));
        },
      }),
    ]) {
      const traces = sdk();
      const onError = vi.fn();
      const setup = tracedRuntime({ steps: [addTwoAndThree, { text: '5' }], traces, logger: pino({}, stream), onError });

      const result = await runToEnd(setup, traces);
      await new Promise((resolve) => setTimeout(resolve, 10));

      expect(result.status).toBe('completed');
      expect(onError).toHaveBeenCalled();
      // Spans are unaffected by the broken logger.
      expect(traces.named('execute_tool math_add')).toHaveLength(1);
    }
  });
});

describe('how a run ends', () => {
  it('ends the root span of a denied run without an error, naming the denial', async () => {
    const traces = sdk();
    const { logger, lines } = memoryLogger();
    const setup = tracedRuntime({ steps: [], traces, logger, rules: [] });

    const result = await runToEnd(setup, traces, { traceId: TRACE });

    expect(result.status).toBe('denied');
    const root = traces.one('invoke_agent runchart');
    expect(root.status.code).toBe(SpanStatusCode.UNSET);
    expect(root.attributes['runchart.run.status']).toBe('denied');
    expect(traces.one('policy').attributes).toMatchObject({ 'runchart.policy.verdict': 'deny', 'runchart.policy.stage': 'precheck' });
    expect(parentOf(traces.one('denied'))).toBe(idOf(root));
    expect(lines.at(-1)).toMatchObject({ event: 'run.end', status: 'denied' });
  });

  it('ends the root span of a failed run with ERROR, and the model step that failed', async () => {
    const traces = sdk();
    const { logger, lines } = memoryLogger();
    const setup = tracedRuntime({ steps: [{ error: new Error(`upstream exploded ${CANARY}`) }], traces, logger });

    const result = await runToEnd(setup, traces, { traceId: TRACE });

    expect(result.status).toBe('failed');
    const root = traces.one('invoke_agent runchart');
    expect(root.status.code).toBe(SpanStatusCode.ERROR);
    expect(root.status.message).toContain('upstream exploded [redacted]');
    expect(root.attributes).toMatchObject({ 'runchart.run.status': 'failed', 'error.type': result.error!.kind });
    expect(traces.one('modelStep').status.code).toBe(SpanStatusCode.ERROR);
    expect(traces.one('chat gpt-test').status.code).toBe(SpanStatusCode.ERROR);
    expect(lines.find((line) => line.event === 'run.error')).toMatchObject({ level: 50, error_kind: result.error!.kind, layer: 'model' });
    expect(JSON.stringify(lines) + dump(traces.spans())).not.toContain('sk-canary');
  });

  it('ends the root span of a run whose request was refused at ingress with ERROR', async () => {
    const traces = sdk();
    const { logger, lines } = memoryLogger();
    const setup = tracedRuntime({ steps: [], traces, logger });

    const result = await setup.runtime.run({ input: '', tenantId: 'acme', principalId: 'user-7' });
    await setup.runtime.close();

    expect(result.status).toBe('failed');
    const root = traces.one('invoke_agent runchart');
    expect(root.status.code).toBe(SpanStatusCode.ERROR);
    expect(parentOf(traces.one('ingress'))).toBe(idOf(root));
    expect(traces.one('ingress').status.code).toBe(SpanStatusCode.ERROR);
    expect(lines.map((line) => line.event)).toEqual(['run.accepted', 'state.enter', 'state.exit', 'run.error', 'state.enter', 'run.end']);
  });
});
