import type { RunResult } from '../../machines/run/result.js';
import type { ModelDelta } from '../models/contract.js';
import type { TelemetryLayer, TelemetryMark } from '../telemetry/contract.js';

/** What a run's subscribers receive. */
export type RunStreamEvent =
  | { type: 'mark'; mark: TelemetryMark }
  | { type: 'delta'; text: string }
  | { type: 'settled'; result: RunResult };

/**
 * The listeners of live runs: every mark, streamed model text, each settled result. Model text is
 * the model's answer and no observer has it before the policy's `output` allow: deltas are held
 * and handed out when the run records that allow (dropped if it never does), and a `model.step`
 * mark reaches listeners without its text.
 */
export interface RunStreams {
  subscribe(runId: string, listener: (event: RunStreamEvent) => void): () => void;
  /** True while someone listens to the run. */
  has(runId: string): boolean;
  emit(runId: string, event: RunStreamEvent): void;
  /** The run has ended: its listeners are let go. */
  end(runId: string): void;
  /** Where the model's streamed text goes for a run, when someone listens. */
  deltasFor(runId: string): ((delta: ModelDelta) => void) | undefined;
  /** Telemetry that also feeds the run's subscribers; they hear every mark even if the telemetry layer fails. */
  feeding(layer: TelemetryLayer, redact: (mark: TelemetryMark) => TelemetryMark, onError: (error: unknown) => void): TelemetryLayer;
}

/**
 * The runtime's run streams. A listener that throws is reported and kept; the others still hear.
 * @example
 * const streams = createRunStreams((message, error) => console.warn(message, error));
 * const stop = streams.subscribe(runId, (event) => console.log(event.type));
 */
export function createRunStreams(warn: (message: string, error?: unknown) => void): RunStreams {
  const listeners = new Map<string, Set<(event: RunStreamEvent) => void>>();
  /** Model text of runs whose output is not allowed yet, in the order it came. */
  const held = new Map<string, string[]>();
  /** Runs whose output policy has allowed: their text goes out as it comes. */
  const released = new Set<string>();
  const hold = (runId: string, text: string) => {
    if (released.has(runId)) return emit(runId, { type: 'delta', text });
    const texts = held.get(runId);
    if (texts) texts.push(text);
    else held.set(runId, [text]);
  };
  const release = (runId: string) => {
    released.add(runId);
    const texts = held.get(runId) ?? [];
    held.delete(runId);
    for (const text of texts) emit(runId, { type: 'delta', text });
  };
  const emit = (runId: string, event: RunStreamEvent) => {
    for (const listener of listeners.get(runId) ?? []) {
      try {
        listener(event);
      } catch (error) {
        warn(`a listener of run ${runId} threw`, error);
      }
    }
  };
  return {
    subscribe(runId, listener) {
      let set = listeners.get(runId);
      if (!set) listeners.set(runId, (set = new Set()));
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0 && listeners.get(runId) === set) listeners.delete(runId);
      };
    },
    has: (runId) => listeners.has(runId),
    emit,
    end: (runId) => {
      listeners.delete(runId);
      held.delete(runId);
      released.delete(runId);
    },
    deltasFor: (runId) => (listeners.get(runId)?.size ? (delta) => hold(runId, delta.text) : undefined),
    feeding(layer, redact, onError) {
      return {
        startRun(identity, at) {
          let inner: ReturnType<TelemetryLayer['startRun']> | undefined;
          try {
            inner = layer.startRun(identity, at);
          } catch (error) {
            onError(error);
          }
          return {
            record(raw, markedAt) {
              // Sensitive argument fields and secret patterns never leave the run, content or not.
              const mark = redact(raw);
              if (listeners.has(identity.runId)) {
                emit(identity.runId, { type: 'mark', mark: mark.kind === 'model.step' && mark.text !== null ? Object.assign({}, mark, { text: null }) : mark });
                // The allow, then the text it releases.
                if (mark.kind === 'decision' && mark.decision.stage === 'output' && mark.decision.verdict === 'allow') release(identity.runId);
              }
              inner?.record(mark, markedAt);
            },
            end: (status, endedAt) => inner?.end(status, endedAt),
          };
        },
      };
    },
  };
}
