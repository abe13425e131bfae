import { pino, type Logger } from 'pino';
import { createRedactor } from '../redaction.js';
import type { RunIdentity, RunTelemetry, TelemetryLayer, TelemetryMark } from './contract.js';

/**
 * Where structured events go: a pino logger, or anything with pino's `info`, `warn` and `error`
 * (and `debug` for the per-state events, which a logger without it does not get).
 */
export type EventLogger = Pick<Logger, 'info' | 'warn' | 'error'> & Partial<Pick<Logger, 'debug' | 'isLevelEnabled'>>;

/** Trace and span id an event names. */
export interface EventSpan {
  traceId: string;
  spanId: string;
}

/** A run's tracing as the events see it: it takes each mark first, then names the span the mark landed on. */
export interface CorrelatedRun extends RunTelemetry {
  current(): EventSpan;
  root(): EventSpan;
}

/** Tracing whose spans the events name (the OpenTelemetry adapter is one). */
export interface CorrelatedLayer {
  startRun(identity: RunIdentity, at: number): CorrelatedRun;
}

export interface PinoTelemetryOptions {
  /** Defaults to a pino logger writing JSON lines to stderr (stdout belongs to the application). */
  logger?: EventLogger;
  /** Input, model text, tool arguments and results are logged only when true. */
  captureContent?: boolean;
  /** Secret patterns redacted from every field, besides `defaultSecretPatterns`. */
  redactPatterns?: readonly string[];
  /** Marks pass through this tracing first; each event names the span its mark landed on. */
  tracing?: CorrelatedLayer;
  /** Told about the first failure of each run (a throwing logger or stream); the run goes on. */
  onError?: (error: unknown) => void;
}

/** JSON lines on stdout, for a process whose stdout is its log. */
export function stdoutEventLogger(level: Level = 'info'): EventLogger {
  return pino({ name: 'runchart', level });
}

/** JSON lines on stderr: the default, and what command lines use, whose stdout is the answer. */
export function stderrEventLogger(level: Level = 'info'): EventLogger {
  return pino({ name: 'runchart', level }, pino.destination(2));
}

type Level = 'debug' | 'info' | 'warn' | 'error';
type Fields = Record<string, unknown>;

/**
 * Structured events on pino: one line per mark, each with `event`, `trace_id`, `span_id`,
 * `run_id`, `tenant_id` and `principal_id` (DESIGN §7). With `tracing`, the marks also make its
 * spans and every line names the span its mark landed on. Levels: each state entered and left and
 * each tool call started at `debug`; the run accepted, decisions, model steps, tool results and
 * the run's end at `info`; warnings at `warn`, run errors at `error`.
 * @example
 * const telemetry = pinoTelemetry({ logger: pino(), tracing: otelTelemetry() });
 * createRuntime({ telemetry });
 */
export function pinoTelemetry(options: PinoTelemetryOptions = {}): TelemetryLayer {
  const logger = options.logger ?? stderrEventLogger();
  const redact = createRedactor(options.redactPatterns ?? []);
  const captureContent = options.captureContent ?? false;
  watchStream(logger, options.onError);

  return {
    startRun(identity, startedAt) {
      let reported = false;
      const guard = (action: () => void) => {
        try {
          action();
        } catch (error) {
          if (reported) return;
          reported = true;
          try {
            options.onError?.(error);
          } catch {
            // The error reporter failing too leaves nothing more to tell.
          }
        }
      };
      let traced: CorrelatedRun | undefined;
      guard(() => void (traced = options.tracing?.startRun(identity, startedAt)));
      // Without tracing, events still carry the caller's trace.
      const fallback: EventSpan = { traceId: identity.traceId, spanId: identity.parentSpanId ?? '' };
      const spanOf = (which: 'current' | 'root'): EventSpan => {
        try {
          return traced?.[which]() ?? fallback;
        } catch {
          return fallback;
        }
      };
      const base = {
        run_id: identity.runId,
        tenant_id: identity.tenantId,
        principal_id: identity.principalId,
        ...(identity.sessionId ? { session_id: identity.sessionId } : {}),
      };
      const log = (level: Level, event: string, fields: Fields, span: EventSpan, at: number) =>
        guard(() => {
          const write = logger[level];
          // A line nobody reads is not built (most per-state lines, at pino's default level).
          if (!write || logger.isLevelEnabled?.(level) === false) return;
          const line = redact({ event, trace_id: span.traceId, span_id: span.spanId, ...base, at, ...fields });
          write.call(logger, line, event);
        });

      // `run.accepted` is logged with the first mark: the root span starts then (see the OpenTelemetry adapter).
      let accepted = false;
      const accept = (at: number, input?: string) => {
        accepted = true;
        log('info', 'run.accepted', captureContent && input !== undefined ? { input } : {}, spanOf('root'), at);
      };
      let ended = false;

      return {
        record(mark, at) {
          if (ended) return;
          guard(() => traced?.record(mark, at));
          if (mark.kind === 'run.accepted') {
            if (!accepted) accept(at, mark.input);
            return;
          }
          if (!accepted) accept(Math.min(startedAt, at));
          const [level, event, fields] = describe(mark, captureContent);
          log(level, event, fields, spanOf('current'), at);
        },
        end(status, at) {
          if (ended) return;
          ended = true;
          guard(() => traced?.end(status, at));
          if (!accepted) accept(Math.min(startedAt, at));
          log('info', 'run.end', { status }, spanOf('root'), at);
        },
      };
    },
  };
}

/**
 * A pino destination that fails later (a write callback with an error) emits `error`, which
 * crashes the process when nobody listens; a run must not die of its logs, so we listen unless
 * the owner of the stream already does.
 */
function watchStream(logger: EventLogger, onError: ((error: unknown) => void) | undefined) {
  const stream = (logger as unknown as Record<symbol, { on?: unknown; listenerCount?: unknown } | undefined>)[pino.symbols.streamSym];
  if (!stream || typeof stream.on !== 'function' || typeof stream.listenerCount !== 'function') return;
  const emitter = stream as unknown as NodeJS.EventEmitter;
  if (emitter.listenerCount('error') > 0) return;
  let reported = false;
  emitter.on('error', (error: unknown) => {
    if (reported) return;
    reported = true;
    try {
      onError?.(error);
    } catch {
      // Nothing more to tell.
    }
  });
}

/** The level, event name and fields of a mark; content only when `captureContent`. */
function describe(mark: Exclude<TelemetryMark, { kind: 'run.accepted' }>, captureContent: boolean): [Level, string, Fields] {
  switch (mark.kind) {
    case 'state.enter':
    case 'state.exit':
      return ['debug', mark.kind, { state: mark.state }];
    case 'decision': {
      const { decision } = mark;
      return [
        'info',
        'policy.decision',
        {
          verdict: decision.verdict,
          rule_id: decision.ruleId,
          stage: decision.stage,
          reason: decision.reason,
          decided_for: decision.principalId,
          ...(decision.capability ? { capability: decision.capability } : {}),
          ...(decision.callId ? { call_id: decision.callId } : {}),
        },
      ];
    }
    case 'model.step':
      return [
        'info',
        'model.step',
        {
          model: mark.model,
          input_tokens: mark.usage.inputTokens,
          output_tokens: mark.usage.outputTokens,
          finish_reason: mark.finishReason,
          tool_calls: mark.toolCalls,
          ...(captureContent && mark.text !== null ? { text: mark.text } : {}),
        },
      ];
    case 'tool.start':
      return [
        'debug',
        'tool.start',
        {
          call_id: mark.callId,
          tool: mark.toolName,
          capability: mark.capability,
          version: mark.version,
          ...(captureContent ? { arguments: mark.arguments } : {}),
        },
      ];
    case 'tool.call':
      return [
        mark.outcome === 'error' ? 'warn' : 'info',
        'tool.call',
        {
          call_id: mark.callId,
          tool: mark.toolName,
          ...(mark.capability ? { capability: mark.capability } : {}),
          outcome: mark.outcome,
          ...(mark.message ? { message: mark.message } : {}),
          ...(captureContent && mark.result !== undefined ? { result: mark.result } : {}),
        },
      ];
    case 'warning':
      return ['warn', 'warning', { message: mark.message }];
    case 'run.error':
      return ['error', 'run.error', { error_kind: mark.error.kind, layer: mark.error.layer, message: mark.error.message, retryable: mark.error.retryable }];
  }
}
