import type { PolicyDecision, PolicyLayer, PolicyRequest } from '../policy/contract.js';
import type { RunIdentity, TelemetryLayer, TelemetryMark } from '../telemetry/contract.js';

/** What the recording telemetry saw of one run. */
export interface RecordedRun {
  identity: RunIdentity;
  marks: TelemetryMark[];
  endedWith: string | null;
}

/**
 * Telemetry that keeps every mark in memory, per run, for assertions.
 * @example
 * const telemetry = recordingTelemetry(); createRuntime({ telemetry }); telemetry.runs[0].marks;
 */
export function recordingTelemetry(): TelemetryLayer & { runs: RecordedRun[]; statesOf(runId: string): string[] } {
  const runs: RecordedRun[] = [];
  return {
    runs,
    statesOf: (runId) =>
      (runs.find((run) => run.identity.runId === runId)?.marks ?? []).flatMap((mark) => (mark.kind === 'state.enter' ? [mark.state] : [])),
    startRun(identity) {
      const run: RecordedRun = { identity, marks: [], endedWith: null };
      runs.push(run);
      return { record: (mark) => void run.marks.push(mark), end: (status) => void (run.endedWith = status) };
    },
  };
}

/**
 * A policy answered by a function, recording every request: for tests that script decisions.
 * @example
 * const policy = scriptedPolicy((request) => ({ verdict: 'allow', ruleId: 'test', reason: request.stage }));
 */
export function scriptedPolicy(decide: (request: PolicyRequest) => PolicyDecision | Promise<PolicyDecision>): PolicyLayer & { requests: PolicyRequest[] } {
  const requests: PolicyRequest[] = [];
  return {
    requests,
    evaluate: async (request) => {
      requests.push(request);
      return decide(request);
    },
  };
}
