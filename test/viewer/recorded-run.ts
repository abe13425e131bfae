// Real runs through createRuntime with a run recorder, for the recorder and viewer tests.
import { join } from 'node:path';
import { createRuntime, mathCapabilities, type PolicyRule, type RuntimeOptions } from '../../src/index.js';
import { createRunRecorder, type RunRecorder } from '../../src/inspect/recorder.js';
import { createInMemoryRunStore, scriptedModel, type ScriptedStep } from '../../src/testing/index.js';

export const allowRuns: PolicyRule = { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' };
export const allowMath: PolicyRule = { id: 'allow-math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] };
export const mathNeedsApproval: PolicyRule = { id: 'math-needs-approval', stage: 'tool', effect: 'require_approval', capabilities: ['math.*'] };
export const managersApprove: PolicyRule = { id: 'managers-approve', stage: 'approval', effect: 'allow', principals: ['manager'] };

/** A clock that ticks 5 ms per reading, shared by the runtimes of one test like the wall clock of two processes. */
export function steppingClock(start = Date.UTC(2026, 0, 2, 3, 4, 5)) {
  let time = start;
  return () => (time += 5);
}

/** A runtime on the in-memory store whose runs are recorded under `dir`. */
export function recordedRuntime(
  dir: string,
  options: { rules: PolicyRule[]; steps: ScriptedStep[]; delayMs?: number; runStore?: RuntimeOptions['runStore']; now?: () => number },
) {
  const now = options.now ?? steppingClock();
  const recorder: RunRecorder = createRunRecorder({ dir, now });
  const runtime = createRuntime({
    inspect: recorder.inspect,
    config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules: options.rules } },
    model: scriptedModel(options.steps, options.delayMs ? { delayMs: options.delayMs } : {}),
    capabilities: mathCapabilities,
    clock: { now },
    ...(options.runStore ? { runStore: options.runStore } : {}),
  });
  return { runtime, recorder };
}

export const recordingPath = (dir: string, runId: string) => join(dir, 'inspect', `${runId}.jsonl`);

/**
 * A run that asks for math.add, parks for approval, is approved by a manager in a second
 * runtime (restored from the shared run store, as `runchart approve` does), and completes.
 */
export async function approvedRun(dir: string, answer = '2+3 is 5') {
  const runStore = createInMemoryRunStore();
  const now = steppingClock();
  const rules = [allowRuns, mathNeedsApproval, managersApprove];
  const first = recordedRuntime(dir, { rules, runStore, now, steps: [{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }] });
  const parked = await first.runtime.run({ input: 'what is 2+3?', tenantId: 'acme', principalId: 'user-7' });
  await first.runtime.drain();
  await first.recorder.flush();
  await first.runtime.close();
  const second = recordedRuntime(dir, { rules, runStore, now, steps: [{ text: answer }] });
  const done = await second.runtime.approve(parked.runId, parked.toolCalls[0]!.callId, { principalId: 'manager' });
  await second.runtime.drain();
  await second.recorder.flush();
  await second.runtime.close();
  return { parked, done, path: recordingPath(dir, done.runId) };
}
