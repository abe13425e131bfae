// Runs a generated scenario (test/support/arbitraries.ts) through the real runtime and records what happened, for the run properties.
import { defineCapability } from '../../src/catalog/capability.js';
import type { PolicyRule } from '../../src/config.js';
import { createRuntime } from '../../src/runtime.js';
import { recordingTelemetry, scriptedModel, type ScriptedModel } from '../../src/testing/index.js';
import { toRunResult, type RunResult } from '../../machines/run/result.js';
import { probe, ProbeInput, scriptOf, type Scenario } from './arbitraries.js';
import type { RunSnapshot } from './graph.js';

/** Everything a scenario run leaves behind for the properties to check. */
export interface ScenarioRun {
  runId: string;
  /** Distinct snapshots the actor emitted, starting with the one it had when we subscribed. */
  snapshots: RunSnapshot[];
  /** The result of the finished run. */
  result: RunResult;
  /** Every result the runtime settled with: the first, then one per approve / reject. */
  settled: RunResult[];
  model: ScriptedModel;
  /** How many model calls the script holds. */
  scripted: number;
  telemetry: ReturnType<typeof recordingTelemetry>;
  /** Each time the probe's handler ran: its arguments and call id. */
  handlerCalls: { args: unknown; callId: string }[];
  warnings: string[];
}

/** The rules of a scenario: runs may start, answer and remember; the probe gets `toolPolicy`; only `approver` approves. */
export function rulesFor(value: Scenario): PolicyRule[] {
  return [
    { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
    { id: 'probe-rule', stage: 'tool', effect: value.toolPolicy, capabilities: [probe.name] },
    { id: 'approvers', stage: 'approval', effect: 'allow', principals: ['approver'] },
  ];
}

const runId = 'run-1';

/** Runs `value` to a final state through `createRuntime` with the scripted model, the probe and recording telemetry. */
export async function runScenario(value: Scenario): Promise<ScenarioRun> {
  const handlerCalls: ScenarioRun['handlerCalls'] = [];
  const warnings: string[] = [];
  const echo = defineCapability({
    name: probe.name,
    version: probe.version,
    description: 'echoes its text',
    input: ProbeInput,
    output: ProbeInput.shape.text,
    effects: 'read',
    timeoutMs: 5,
    handler: (args: unknown, { callId, signal }) => {
      handlerCalls.push({ args, callId });
      const hop = Number(/^c(\d+)\./.exec(callId)?.[1] ?? Number.NaN);
      switch (value.faults[hop]) {
        case 'ok':
          return (args as { text: string }).text;
        case 'throws':
          throw new Error('the probe broke');
        default:
          // A timeout: never answers; the gateway's deadline aborts it.
          return new Promise<string>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
      }
    },
  });
  const script = scriptOf(value);
  const model = scriptedModel(script.map((step) => ({ response: step.response })));
  const telemetry = recordingTelemetry();
  const runtime = createRuntime({
    config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false },
      runtime: { max_tool_hops: value.maxToolHops, max_tool_calls_per_step: 1, max_total_tokens: 1000 },
      policy: { rules: rulesFor(value) },
    },
    model,
    capabilities: [echo],
    telemetry,
    idFor: (kind) => (kind === 'run' ? runId : '4bf92f3577b34da6a3ce929d0e0e4736'),
    onWarning: (message) => void warnings.push(message),
  });

  const handle = runtime.start({ input: 'echo something', tenantId: 'acme', principalId: 'user-1' });
  const { actor } = handle;
  // `start` has already emitted the first snapshot to the runtime's own observer: take it from the actor.
  const snapshots: RunSnapshot[] = [actor.getSnapshot()];
  let seen = 0;
  const finished = new Promise<RunSnapshot>((resolve, reject) => {
    actor.subscribe({
      next(snapshot) {
        // Observers hear every processed event; an event that changed nothing leaves the snapshot as it was.
        if (snapshot === snapshots.at(-1)) return;
        snapshots.push(snapshot);
        seen++;
        if (snapshot.status === 'done') resolve(snapshot);
        else if (seen === value.cancelAfter) handle.cancel('the scenario cancels');
      },
      error: reject,
    });
  });
  if (value.cancelAfter === 0) handle.cancel('the scenario cancels');

  const settled: RunResult[] = [];
  let result = await handle.result;
  settled.push(result);
  let parked = 0;
  while (result.status === 'awaiting_approval' && actor.getSnapshot().status === 'active') {
    const callId = result.toolCalls.at(-1)!.callId;
    const action = value.approvals[parked++] ?? 'cancel';
    if (action === 'cancel') {
      handle.cancel('the approver cancels');
      break;
    }
    result =
      action === 'approve'
        ? await runtime.approve(runId, callId, { principalId: 'approver' })
        : await runtime.reject(runId, callId, { principalId: 'approver', reason: 'not this time' });
    settled.push(result);
  }
  const last = await finished;
  await runtime.close();
  return {
    runId,
    snapshots,
    result: toRunResult(last.value, last.context),
    settled,
    model,
    scripted: script.length,
    telemetry,
    handlerCalls,
    warnings,
  };
}
