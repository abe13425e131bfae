import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  isValidSpanId,
  isValidTraceId,
  trace,
  type Attributes,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import type { RunchartErrorData } from '../errors.js';
import type { DecisionRecord } from '../policy/contract.js';
import { createRedactor } from '../redaction.js';
import type { RunIdentity, RunTelemetry, TelemetryLayer, TelemetryMark } from './contract.js';

/** The OpenTelemetry tracer spans are made with; any `@opentelemetry/api` 1.x tracer. */
export type TelemetryTracer = Tracer;

/** Trace and span id (lower-case hex), as structured events name them. */
export interface SpanIds {
  traceId: string;
  spanId: string;
}

/** A run's tracing that also tells which span a mark landed on, so events beside it can name that span. */
export interface TracedRun extends RunTelemetry {
  /** The span of the last mark (the root before any mark and after the end). */
  current(): SpanIds;
  /** The run's root span, `invoke_agent runchart`. */
  root(): SpanIds;
}

/** A telemetry layer whose runs are traced. */
export interface TracingLayer extends TelemetryLayer {
  startRun(identity: RunIdentity, at: number): TracedRun;
}

export interface OtelTelemetryOptions {
  /** Skip all span work for a run whose root span is not recording (no SDK); only for use without correlated events. */
  idleWhenNotRecording?: boolean;
  /** Defaults to the global tracer `trace.getTracer('runchart')` (a no-op until an SDK registers a provider). */
  tracer?: Tracer;
  /** Input, model text, tool arguments and results go into attributes only when true. */
  captureContent?: boolean;
  /** Secret patterns redacted from every attribute, besides `defaultSecretPatterns`. */
  redactPatterns?: readonly string[];
  /** The model a step asks for until its `model.step` mark names it (`runtime.default_model`). */
  requestModel?: string;
  /** Told about the first failure of each run (a throwing processor or exporter); the run goes on. */
  onError?: (error: unknown) => void;
}

/**
 * Spans on `@opentelemetry/api` (DESIGN §7): a root `invoke_agent runchart` span per run in the
 * caller's trace, a span per state nested as the states are, `chat {model}` per model step and
 * `execute_tool {name}` per executed tool call, policy decisions as events and attributes.
 * @example
 * const telemetry = otelTelemetry({ tracer: provider.getTracer('runchart'), captureContent: false });
 * createRuntime({ telemetry });
 */
export function otelTelemetry(options: OtelTelemetryOptions = {}): TracingLayer {
  const tracer = options.tracer ?? trace.getTracer('runchart');
  const redact = createRedactor(options.redactPatterns ?? []);
  return {
    startRun: (identity, at) =>
      new RunTrace(tracer, identity, at, {
        idleWhenNotRecording: options.idleWhenNotRecording ?? false,
        redact,
        captureContent: options.captureContent ?? false,
        requestModel: options.requestModel ?? null,
        onError: options.onError,
      }),
  };
}

interface RunTraceOptions {
  idleWhenNotRecording: boolean;
  redact: <T>(value: T) => T;
  captureContent: boolean;
  requestModel: string | null;
  onError: ((error: unknown) => void) | undefined;
}

interface StateSpan {
  name: string;
  span: Span;
  exitAt?: number;
}

interface ChildSpan {
  span: Span;
  parent: Span | undefined;
}

const NO_IDS: SpanIds = { traceId: '', spanId: '' };

/**
 * The spans of one run. Marks arrive in XState's order: a state's exit comes before the actions of
 * the transition that left it (its decision, model step, tool result, error), so an exited state's
 * span stays open until the next state is entered and those marks still land on it.
 */
class RunTrace implements TracedRun {
  private rootSpan: Span | undefined;
  private rootContext: Context = ROOT_CONTEXT;
  private readonly open: StateSpan[] = [];
  private exited: StateSpan[] = [];
  private chat: ChildSpan | undefined;
  private readonly tools = new Map<string, ChildSpan>();
  private last: Span | undefined;
  private error: RunchartErrorData | undefined;
  private ended = false;
  private idle = false;
  private reported = false;
  private readonly usage = { inputTokens: 0, outputTokens: 0 };

  constructor(
    private readonly tracer: Tracer,
    private readonly identity: RunIdentity,
    private readonly startedAt: number,
    private readonly options: RunTraceOptions,
  ) {}

  record(mark: TelemetryMark, at: number): void {
    // Most marks of an unrecorded run stop here, before a guarded closure is even made.
    if (this.ended || this.idle) return;
    this.guard(() => {
      const root = this.ensureRoot(at);
      // No SDK records these spans (the global no-op tracer) and nobody needs their ids: build nothing.
      if (this.options.idleWhenNotRecording && !root.isRecording()) {
        this.idle = true;
        return;
      }
      this.last = this.apply(mark, at);
    });
  }

  end(status: string, at: number): void {
    this.guard(() => {
      if (this.ended) return;
      const root = this.ensureRoot(at);
      this.ended = true;
      if (this.idle) return root.end(time(at));
      this.flush();
      for (const child of [this.chat, ...this.tools.values()]) child?.span.end(time(at));
      this.chat = undefined;
      this.tools.clear();
      for (const state of this.open.splice(0).reverse()) state.span.end(time(at));
      root.setAttributes(
        this.attributes({
          'runchart.run.status': status,
          'gen_ai.usage.input_tokens': this.usage.inputTokens,
          'gen_ai.usage.output_tokens': this.usage.outputTokens,
        }),
      );
      // Only a failure is an error: a denial or a cancellation is an outcome the run was built for.
      if (this.error) root.setStatus({ code: SpanStatusCode.ERROR, message: this.options.redact(this.error.message) });
      else if (status === 'failed') root.setStatus({ code: SpanStatusCode.ERROR, message: 'the run failed' });
      root.end(time(at));
      this.last = root;
    });
  }

  current(): SpanIds {
    return idsOf(this.last ?? this.rootSpan);
  }

  root(): SpanIds {
    return idsOf(this.rootSpan);
  }

  /** The root span starts with the earliest of acceptance and the first mark: ingress's marks are held until acceptance. */
  private ensureRoot(at: number): Span {
    if (this.rootSpan) return this.rootSpan;
    const { identity } = this;
    const parent = isValidTraceId(identity.traceId)
      ? trace.setSpanContext(ROOT_CONTEXT, {
          traceId: identity.traceId,
          spanId: identity.parentSpanId && isValidSpanId(identity.parentSpanId) ? identity.parentSpanId : randomSpanId(),
          traceFlags: TraceFlags.SAMPLED,
          isRemote: true,
        })
      : ROOT_CONTEXT;
    this.rootSpan = this.tracer.startSpan(
      'invoke_agent runchart',
      {
        kind: SpanKind.INTERNAL,
        startTime: time(Math.min(this.startedAt, at)),
        attributes: this.attributes({
          'gen_ai.operation.name': 'invoke_agent',
          'gen_ai.agent.name': 'runchart',
          'runchart.run_id': identity.runId,
          'runchart.tenant_id': identity.tenantId,
          'runchart.principal_id': identity.principalId,
          ...(identity.sessionId ? { 'runchart.session_id': identity.sessionId, 'gen_ai.conversation.id': identity.sessionId } : {}),
        }),
      },
      parent,
    );
    this.rootContext = trace.setSpan(parent, this.rootSpan);
    this.last = this.rootSpan;
    return this.rootSpan;
  }

  /** Applies one mark and returns the span it belongs to. */
  private apply(mark: TelemetryMark, at: number): Span {
    switch (mark.kind) {
      case 'run.accepted':
        if (this.options.captureContent) this.rootSpan!.setAttributes(this.attributes({ 'runchart.content.input': mark.input }));
        return this.rootSpan!;
      case 'state.enter':
        return this.enter(mark.state, at);
      case 'state.exit':
        return this.exit(mark.state, at);
      case 'decision':
        return this.decide(mark.decision, at);
      case 'model.step':
        return this.modelStep(mark, at);
      case 'tool.start': {
        const parent = this.innermost();
        const span = this.startChild(`execute_tool ${mark.toolName}`, parent, at, {
          'gen_ai.operation.name': 'execute_tool',
          'gen_ai.tool.name': mark.toolName,
          'gen_ai.tool.call.id': mark.callId,
          'gen_ai.tool.type': 'function',
          'runchart.capability': mark.capability,
          'runchart.capability.version': mark.version,
          ...(this.options.captureContent ? { 'gen_ai.tool.call.arguments': mark.arguments } : {}),
        });
        this.tools.set(mark.callId, { span, parent });
        return span;
      }
      case 'tool.call':
        return this.toolCall(mark, at);
      case 'warning': {
        const span = this.target();
        span.addEvent('runchart.warning', this.attributes({ 'runchart.warning': mark.message }), time(at));
        return span;
      }
      case 'run.error': {
        this.error = mark.error;
        const span = this.target();
        const status = { code: SpanStatusCode.ERROR, message: this.options.redact(mark.error.message) };
        const attributes = this.attributes({ 'error.type': mark.error.kind, 'runchart.error.layer': mark.error.layer, 'runchart.error.retryable': mark.error.retryable });
        span.setStatus(status);
        span.setAttributes(attributes);
        span.addEvent('runchart.error', this.attributes(Object.assign({}, attributes, { 'runchart.error.message': mark.error.message })), time(at));
        // A model call that failed never sends its `model.step` mark: its chat span fails with it.
        if (this.chat) {
          this.chat.span.setStatus(status);
          this.chat.span.setAttributes(attributes);
          this.chat.span.end(time(at));
          this.chat = undefined;
        }
        this.rootSpan!.setStatus(status);
        this.rootSpan!.setAttributes(attributes);
        return span;
      }
    }
  }

  private enter(state: string, at: number): Span {
    this.flush();
    // The parent is the innermost open state this one is a substate of (`toolExecution` for `toolExecution.executing`).
    const parent = [...this.open].reverse().find((candidate) => state.startsWith(`${candidate.name}.`));
    const span = this.startChild(state, parent?.span, at, { 'runchart.state': state });
    this.open.push({ name: state, span });
    if (state === 'modelStep') {
      const model = this.options.requestModel;
      this.chat = {
        span: this.startChild(model ? `chat ${model}` : 'chat', span, at, { 'gen_ai.operation.name': 'chat', ...(model ? { 'gen_ai.request.model': model } : {}) }, SpanKind.CLIENT),
        parent: span,
      };
    }
    return span;
  }

  private exit(state: string, at: number): Span {
    const index = this.open.findLastIndex((candidate) => candidate.name === state);
    if (index === -1) return this.target(); // entered before this telemetry started (a restored run)
    // Substates left open (their exit never came) close with their parent.
    const closing = this.open.splice(index).reverse();
    for (const entry of closing) entry.exitAt = at;
    this.exited.push(...closing);
    return closing.at(-1)!.span;
  }

  private decide(decision: DecisionRecord, at: number): Span {
    const span = this.target();
    const attributes = this.attributes({
      'runchart.policy.verdict': decision.verdict,
      'runchart.policy.rule_id': decision.ruleId,
      'runchart.policy.stage': decision.stage,
      'runchart.policy.reason': decision.reason,
      'runchart.policy.principal_id': decision.principalId,
      ...(decision.capability ? { 'runchart.capability': decision.capability } : {}),
      ...(decision.callId ? { 'gen_ai.tool.call.id': decision.callId } : {}),
    });
    span.setAttributes(attributes);
    span.addEvent('runchart.policy.decision', attributes, time(at));
    return span;
  }

  private modelStep(mark: Extract<TelemetryMark, { kind: 'model.step' }>, at: number): Span {
    const chat =
      this.chat ??
      // No `modelStep` state around it (a restored run): the step still gets its span.
      { span: this.startChild(`chat ${mark.model}`, this.innermost(), at, { 'gen_ai.operation.name': 'chat' }, SpanKind.CLIENT), parent: undefined };
    this.chat = undefined;
    chat.span.updateName(this.options.redact(`chat ${mark.model}`));
    chat.span.setAttributes(
      this.attributes({
        'gen_ai.request.model': mark.model,
        'gen_ai.usage.input_tokens': mark.usage.inputTokens,
        'gen_ai.usage.output_tokens': mark.usage.outputTokens,
        'gen_ai.response.finish_reasons': [mark.finishReason],
        'runchart.model.tool_calls': mark.toolCalls,
        ...(this.options.captureContent && mark.text !== null ? { 'runchart.content.output': mark.text } : {}),
      }),
    );
    chat.span.end(time(at));
    this.usage.inputTokens += mark.usage.inputTokens;
    this.usage.outputTokens += mark.usage.outputTokens;
    return chat.span;
  }

  private toolCall(mark: Extract<TelemetryMark, { kind: 'tool.call' }>, at: number): Span {
    const attributes = this.attributes({
      'runchart.tool.outcome': mark.outcome,
      ...(mark.message ? { 'runchart.tool.message': mark.message } : {}),
      ...(this.options.captureContent && mark.result !== undefined ? { 'gen_ai.tool.call.result': mark.result } : {}),
    });
    const started = this.tools.get(mark.callId);
    if (!started) {
      // Denied, rejected and invalid calls never run: an event on the state that settled them.
      const span = this.target();
      span.addEvent(
        'runchart.tool.call',
        this.attributes({
          'gen_ai.tool.name': mark.toolName,
          'gen_ai.tool.call.id': mark.callId,
          ...(mark.capability ? { 'runchart.capability': mark.capability } : {}),
          ...attributes,
        }),
        time(at),
      );
      return span;
    }
    this.tools.delete(mark.callId);
    started.span.setAttributes(attributes);
    if (mark.outcome === 'error') {
      started.span.setAttribute('error.type', 'tool_error');
      started.span.setStatus({ code: SpanStatusCode.ERROR, message: this.options.redact(mark.message ?? 'the tool failed') });
    }
    started.span.end(time(at));
    return started.span;
  }

  /** Ends the states exited since the last entry, at their exit times, with the model and tool spans they left open. */
  private flush() {
    const closing = this.exited;
    this.exited = [];
    for (const entry of closing) {
      const exitAt = time(entry.exitAt!);
      if (this.chat && this.chat.parent === entry.span) {
        this.chat.span.end(exitAt);
        this.chat = undefined;
      }
      for (const [callId, tool] of this.tools) {
        if (tool.parent !== entry.span) continue;
        tool.span.setAttribute('runchart.tool.outcome', 'abandoned');
        tool.span.end(exitAt);
        this.tools.delete(callId);
      }
      entry.span.end(exitAt);
    }
  }

  /** The span a transition's mark belongs to: the state it left, else the innermost open state, else the root. */
  private target(): Span {
    return this.exited[0]?.span ?? this.innermost() ?? this.rootSpan!;
  }

  private innermost(): Span | undefined {
    return this.open.at(-1)?.span;
  }

  private startChild(name: string, parent: Span | undefined, at: number, attributes: Attributes, kind: SpanKind = SpanKind.INTERNAL): Span {
    const context = parent ? trace.setSpan(this.rootContext, parent) : this.rootContext;
    return this.tracer.startSpan(this.options.redact(name), { kind, startTime: time(at), attributes: this.attributes(attributes) }, context);
  }

  /** Every attribute value passes the redactor: content or not, no secret leaves. */
  private attributes(attributes: Attributes): Attributes {
    return this.options.redact(attributes);
  }

  /** A throwing tracer, processor or exporter is reported once per run and never reaches the run. */
  private guard(action: () => void) {
    try {
      action();
    } catch (error) {
      if (this.reported) return;
      this.reported = true;
      try {
        this.options.onError?.(error);
      } catch {
        // The error reporter failing too leaves nothing more to tell.
      }
    }
  }
}

function time(at: number): Date {
  return new Date(at);
}

function idsOf(span: Span | undefined): SpanIds {
  if (!span) return NO_IDS;
  try {
    const { traceId, spanId } = span.spanContext();
    return { traceId, spanId };
  } catch {
    return NO_IDS;
  }
}

/**
 * The span id of a synthetic remote parent (a trace id given without a parent span). Not a secret:
 * Math.random, as OpenTelemetry's own id generator does; the crypto pool cost a run microseconds.
 */
function randomSpanId(): string {
  let id = '';
  while (id.length < 16) id += Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0');
  return isValidSpanId(id) ? id : randomSpanId();
}
