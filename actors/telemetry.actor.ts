import { fromCallback } from 'xstate';
import type { RunTelemetry, TelemetryLayer, TelemetryMark } from '../src/telemetry/contract.js';
import type { TelemetryEvent, TelemetryInput } from '../machines/run/setup.js';
import type { RunContext } from '../machines/run/types.js';

/**
 * Lives as long as the run and forwards every mark to the telemetry layer. Marks before the
 * request is accepted are held until the run's identity is known. Telemetry never fails a run:
 * a throwing layer is reported once to `onFailure` and then ignored.
 */
export function telemetryActor(layer: TelemetryLayer, options: { now: () => number; onFailure?: (error: unknown) => void }) {
  return fromCallback<TelemetryEvent, TelemetryInput>(({ input, receive, self }) => {
    let run: RunTelemetry | undefined;
    let broken = false;
    let last = 'ingress';
    const held: { mark: TelemetryMark; at: number }[] = [];
    const guard = (action: () => void) => {
      if (broken) return;
      try {
        action();
      } catch (error) {
        broken = true;
        options.onFailure?.(error);
      }
    };
    const start = (identity: Parameters<TelemetryLayer['startRun']>[0], at: number, accepted?: TelemetryMark) =>
      guard(() => {
        // The run began with its first held mark; the acceptance (with the input, for layers that
        // capture content) is recorded first so that everything after it has the run's identity.
        const began = held[0]?.at ?? at;
        run = layer.startRun(identity, began);
        if (accepted) run.record(accepted, began);
        for (const entry of held.splice(0)) run.record(entry.mark, entry.at);
      });
    // A restored run is past ingress: its identity is in the parent's context, so telemetry starts at once.
    const restored = (self as unknown as { _parent?: { getSnapshot(): { context?: Partial<RunContext> } } })._parent?.getSnapshot().context;
    if (restored?.tenantId && restored.traceId) {
      start(
        {
          runId: input.runId,
          traceId: restored.traceId,
          ...(restored.parentSpanId ? { parentSpanId: restored.parentSpanId } : {}),
          tenantId: restored.tenantId,
          principalId: restored.principalId ?? '',
          ...(restored.sessionId ? { sessionId: restored.sessionId } : {}),
        },
        options.now(),
      );
    }

    receive((event) => {
      const at = options.now();
      const { mark } = event;
      if (mark.kind === 'state.enter') last = mark.state;
      if (mark.kind === 'run.accepted') return start(mark.identity, at, mark);
      if (!run) held.push({ mark, at });
      else guard(() => run!.record(mark, at));
    });

    return () => {
      const at = options.now();
      if (!run) start({ runId: input.runId, traceId: '', tenantId: '', principalId: '' }, at);
      guard(() => run?.end(last, at));
    };
  });
}
