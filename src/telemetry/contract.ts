import { z } from 'zod';
import { RunchartErrorData } from '../errors.js';
import { DecisionRecord } from '../policy/contract.js';
import { Usage } from '../models/contract.js';

/** Who and what a run is, as telemetry tags it. */
export const RunIdentity = z.object({
  runId: z.string(),
  traceId: z.string(),
  parentSpanId: z.string().optional(),
  tenantId: z.string(),
  principalId: z.string(),
  sessionId: z.string().optional(),
});
export type RunIdentity = z.infer<typeof RunIdentity>;

/** Everything the chart tells telemetry: state entries and exits, decisions, model steps and tool calls. */
export const TelemetryMark = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('run.accepted'), identity: RunIdentity, input: z.string() }),
  z.object({ kind: z.literal('state.enter'), state: z.string() }),
  z.object({ kind: z.literal('state.exit'), state: z.string() }),
  z.object({ kind: z.literal('decision'), decision: DecisionRecord }),
  /** `text` is content: an adapter keeps it only when `capture_content` is on. */
  z.object({ kind: z.literal('model.step'), model: z.string(), usage: Usage, finishReason: z.string(), toolCalls: z.number().int(), text: z.string().nullable() }),
  /** A tool call starts executing; `arguments` is content. */
  z.object({ kind: z.literal('tool.start'), callId: z.string(), toolName: z.string(), capability: z.string(), version: z.string(), arguments: z.string() }),
  z.object({
    kind: z.literal('tool.call'),
    callId: z.string(),
    toolName: z.string(),
    capability: z.string().optional(),
    outcome: z.enum(['ok', 'error', 'denied', 'rejected', 'invalid']),
    message: z.string().optional(),
    /** What the model is told (content). */
    result: z.string().optional(),
  }),
  z.object({ kind: z.literal('warning'), message: z.string() }),
  z.object({ kind: z.literal('run.error'), error: RunchartErrorData }),
]);
export type TelemetryMark = z.infer<typeof TelemetryMark>;

/** The telemetry of one run; both methods must not throw (the actor guards them anyway). */
export interface RunTelemetry {
  record(mark: TelemetryMark, at: number): void;
  end(status: string, at: number): void;
}

/**
 * Spans and structured events. Invoked once at the root of every run; it never fails a run.
 * @example
 * const telemetry: TelemetryLayer = { startRun: () => ({ record: (mark) => console.log(mark.kind), end: () => {} }) };
 */
export interface TelemetryLayer {
  startRun(identity: RunIdentity, at: number): RunTelemetry;
}

/** The default when nothing is configured: records nothing. */
export const noopTelemetry: TelemetryLayer = {
  startRun: () => ({ record: () => {}, end: () => {} }),
};

/**
 * One layer that feeds several: each gets every mark; one that throws does not stop the others.
 * @example
 * const telemetry = combineTelemetry(progress, createTelemetry({ config }));
 */
export function combineTelemetry(...layers: TelemetryLayer[]): TelemetryLayer {
  const each = (action: () => void) => {
    try {
      action();
    } catch {
      // A broken layer must not silence the others; the runtime reports telemetry failures of its own layer.
    }
  };
  return {
    startRun(identity, at) {
      const runs: RunTelemetry[] = [];
      for (const layer of layers) each(() => void runs.push(layer.startRun(identity, at)));
      return {
        record: (mark, markedAt) => runs.forEach((run) => each(() => run.record(mark, markedAt))),
        end: (status, endedAt) => runs.forEach((run) => each(() => run.end(status, endedAt))),
      };
    },
  };
}
