import type { RunchartConfig } from '../config.js';
import type { TelemetryLayer } from './contract.js';
import { otelTelemetry, type TelemetryTracer } from './otel.js';
import { pinoTelemetry, type EventLogger } from './pino.js';

export interface CreateTelemetryOptions {
  /** Spans go to this tracer; defaults to the global `trace.getTracer('runchart')`. */
  tracer?: TelemetryTracer;
  /**
   * Structured events go to this logger, and only to it: without one there are none (an embedded
   * runtime writes nothing to stdout or stderr of its own accord). None either when the config's
   * `telemetry.emit_structured_events` is false, even with a logger.
   */
  logger?: EventLogger;
  /** The parsed config: its `telemetry` section (content capture, redaction) and `runtime.default_model`. */
  config: RunchartConfig;
  /** Told about the first telemetry failure of each run, per sink (spans, events); runs never fail for it. */
  onError?: (error: unknown) => void;
}

/**
 * The telemetry a runtime uses by default: OpenTelemetry spans and, given a logger, pino events
 * that name those spans. Content is kept only with `capture_content`; secrets are always redacted.
 * @example
 * const config = parseConfig({ telemetry: { capture_content: false } });
 * const runtime = createRuntime({ config, telemetry: createTelemetry({ tracer: provider.getTracer('app'), config }) });
 */
export function createTelemetry(options: CreateTelemetryOptions): TelemetryLayer {
  const { telemetry, runtime } = options.config;
  const logger = telemetry.emit_structured_events ? options.logger : undefined;
  const shared = {
    captureContent: telemetry.capture_content,
    redactPatterns: telemetry.redact_patterns,
    ...(options.onError ? { onError: options.onError } : {}),
  };
  const tracing = otelTelemetry(
    Object.assign({}, shared, {
      requestModel: runtime.default_model,
      // Without events, nothing needs span ids, so an unrecorded run (no OTel SDK registered) costs nothing.
      idleWhenNotRecording: !logger,
      ...(options.tracer ? { tracer: options.tracer } : {}),
    }),
  );
  if (!logger) return tracing;
  return pinoTelemetry(Object.assign({}, shared, { tracing, logger }));
}
