import { fromCallback } from 'xstate';
import type { RunTelemetry, TelemetryLayer, TelemetryMark } from '../src/telemetry/contract.js';
import type { TelemetryEvent, TelemetryInput } from '../machines/run/setup.js';
import type { RunContext } from '../machines/run/types.js';

/**
 * Lives as long as the run and forwards every mark to the telemetry layer. Marks before the
 * request is accepted are held until the run's identity is known. Telemetry never fails a run:
 * a throwing layer is reported once to `onFailure` and then ignored.
 */
export function telemetryActor(layer: TelemetryLayer, options: { now: () => number; onFailure?: (error: unknown) => void; router?: MarkRouter }) {
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
    const restored = (self as unknown as { _parent?: { getSnapshot(): { context?: Partial<RunContext> } } })._parent?.getSnapshot().context?.accepted;
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

    const accept = (mark: TelemetryMark) => {
      const at = options.now();
      if (mark.kind === 'state.enter') last = mark.state;
      if (mark.kind === 'run.accepted') return start(mark.identity, at, mark);
      if (!run) return void held.push({ mark, at });
      if (broken) return;
      try {
        run.record(mark, at);
      } catch (error) {
        broken = true;
        options.onFailure?.(error);
      }
    };
    receive((event) => accept(event.mark));
    options.router?.attach(input.runId, accept);

    return () => {
      options.router?.detach(input.runId, accept);
      const at = options.now();
      if (!run) start({ runId: input.runId, traceId: '', tenantId: '', principalId: '' }, at);
      guard(() => run?.end(last, at));
    };
  });
}

/**
 * Routes marks from the chart's `mark` action straight to the run's telemetry actor, instead of an
 * event per mark through the actor's mailbox (a run makes about forty). Marks made before the actor
 * has started (the first state's entry) wait for it.
 */
export interface MarkRouter {
  deliver(runId: string, mark: TelemetryMark): void;
  attach(runId: string, accept: (mark: TelemetryMark) => void): void;
  detach(runId: string, accept: (mark: TelemetryMark) => void): void;
}

export function createMarkRouter(): MarkRouter {
  const routes = new Map<string, (mark: TelemetryMark) => void>();
  const early = new Map<string, TelemetryMark[]>();
  return {
    deliver(runId, mark) {
      const accept = routes.get(runId);
      if (accept) return accept(mark);
      const waiting = early.get(runId);
      if (waiting) waiting.push(mark);
      else early.set(runId, [mark]);
    },
    attach(runId, accept) {
      routes.set(runId, accept);
      const waiting = early.get(runId);
      early.delete(runId);
      for (const mark of waiting ?? []) accept(mark);
    },
    detach(runId, accept) {
      if (routes.get(runId) === accept) routes.delete(runId);
      early.delete(runId);
    },
  };
}
