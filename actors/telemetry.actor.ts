import { fromCallback } from 'xstate';
import type { RunTelemetry, TelemetryLayer, TelemetryMark } from '../src/telemetry/contract.js';
import type { TelemetryEvent, TelemetryInput } from '../machines/run/setup.js';

/**
 * Lives as long as the run and forwards every mark to the telemetry layer. Marks before the
 * request is accepted are held until the run's identity is known. Telemetry never fails a run:
 * a throwing layer is reported once to `onFailure` and then ignored.
 */
export function telemetryActor(layer: TelemetryLayer, options: { now: () => number; onFailure?: (error: unknown) => void }) {
  return fromCallback<TelemetryEvent, TelemetryInput>(({ input, receive }) => {
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
    const start = (identity: Parameters<TelemetryLayer['startRun']>[0], at: number) =>
      guard(() => {
        run = layer.startRun(identity, at);
        for (const entry of held.splice(0)) run.record(entry.mark, entry.at);
      });

    receive((event) => {
      const at = options.now();
      const { mark } = event;
      if (mark.kind === 'state.enter') last = mark.state;
      if (mark.kind === 'run.accepted') return start(mark.identity, at);
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
