// Runs a generated scenario (test/support/arbitraries.ts) through the real runtime and records what happened, for the run properties.
import type { AnyEventObject, InspectionEvent } from 'xstate';
import { defineCapability } from '../../src/catalog/capability.js';
import type { PolicyRule } from '../../src/config.js';
import type { ExecutionJournal } from '../../src/execution/contract.js';
import type { MemoryLayer } from '../../src/memory/contract.js';
import type { PolicyDecision, PolicyLayer, PolicyRequest } from '../../src/policy/contract.js';
import { createRulesPolicy } from '../../src/policy/rules.js';
import { createRuntime } from '../../src/runtime.js';
import { createInMemoryMemory, createMemoryJournal, recordingTelemetry, scriptedModel, scriptedPolicy, type ScriptedModel } from '../../src/testing/index.js';
import type { TelemetryMark } from '../../src/telemetry/contract.js';
import { markLabel, transitionKey } from '../../src/verification/paths.js';
import { statusOf, toRunResult, type RunResult } from '../../machines/run/result.js';
import { modelFailure, probe, ProbeInput, scriptOf, type Scenario } from './arbitraries.js';
import type { RunSnapshot } from './graph.js';

/** One step of a real run as the inspector saw it: the snapshot it reached, the event that led there, the transitions taken, the marks sent to telemetry. */
export interface ObservedStep {
  snapshot: RunSnapshot;
  event: AnyEventObject;
  transitions: string[];
  marks: string[];
}

/** Everything a scenario run leaves behind for the properties to check. */
export interface ScenarioRun {
  runId: string;
  /** The run's distinct snapshots from its start, each with what led to it (the first: `xstate.init`). */
  observed: ObservedStep[];
  /** The same snapshots alone. */
  snapshots: RunSnapshot[];
  /** The result of the finished run. */
  result: RunResult;
  /** Every result the runtime settled with: the first, then one per approve / reject. */
  settled: RunResult[];
  /** Approvals the runtime refused (a reviewer policy does not allow): the error each was refused with. */
  refusals: unknown[];
  model: ScriptedModel;
  /** How many model calls the script holds. */
  scripted: number;
  telemetry: ReturnType<typeof recordingTelemetry>;
  /** Each time the probe's handler ran: its arguments and call id. */
  handlerCalls: { args: unknown; callId: string }[];
  warnings: string[];
}

/** The rules of a scenario: runs may start, answer and remember unless a stage says otherwise; the probe gets `toolPolicy`; only `approver` approves. */
export function rulesFor(value: Scenario): PolicyRule[] {
  const { precheck, output, memoryWrite } = value.stages;
  return [
    ...(precheck === 'unmatched' ? [] : [{ id: precheck === 'deny' ? 'no-runs' : 'allow-runs', stage: 'precheck' as const, effect: precheck === 'deny' ? ('deny' as const) : ('allow' as const) }]),
    { id: output === 'deny' ? 'no-answers' : 'allow-answers', stage: 'output', effect: output === 'deny' ? 'deny' : 'allow' },
    { id: memoryWrite === 'deny' ? 'no-memory' : 'allow-memory', stage: 'memory.write', effect: memoryWrite === 'deny' ? 'deny' : 'allow' },
    { id: 'probe-rule', stage: 'tool', effect: value.toolPolicy, capabilities: [probe.name] },
    { id: 'approvers', stage: 'approval', effect: 'allow', principals: ['approver'] },
  ];
}

const stageKey = { precheck: 'precheck', output: 'output', 'memory.write': 'memoryWrite', approval: 'approval' } as const;

/**
 * The scenario's policy: its rules through the rules engine, except where a stage is told to
 * fail, and, at call time (a tool request with a `callId`), the tool stage's `toolAtCall`: so
 * a call can be denied after its capability was pinned.
 */
export function policyFor(value: Scenario): PolicyLayer & { requests: PolicyRequest[] } {
  const rules = createRulesPolicy(rulesFor(value));
  return scriptedPolicy((request): Promise<PolicyDecision> | PolicyDecision => {
    const atCall = request.stage === 'tool' && request.callId !== undefined;
    const outcome = atCall ? value.stages.toolAtCall : request.stage === 'tool' ? 'pinned' : value.stages[stageKey[request.stage]];
    if (outcome === 'throws') throw new Error(`the policy engine failed at stage ${request.stage}`);
    if (atCall && outcome === 'deny') return { verdict: 'deny', ruleId: 'revoked-at-call', reason: 'the capability was revoked after the run pinned it' };
    return rules.evaluate(request, { signal: new AbortController().signal });
  });
}

/** A journal that fails where the scenario says: reading approval deadlines, or writing tool calls. */
function journalFor(value: Scenario): ExecutionJournal {
  const journal = createMemoryJournal();
  return {
    get: (key) => (value.failures.approvalWait && key.endsWith(':approval') ? Promise.reject(new Error('the journal cannot be read')) : journal.get(key)),
    put: (entry) => (value.failures.journal && !entry.key.endsWith(':approval') ? Promise.reject(new Error('the journal cannot be written')) : journal.put(entry)),
    release: (runId) => journal.release!(runId),
  };
}

function memoryFor(value: Scenario): MemoryLayer {
  const memory = createInMemoryMemory();
  return value.failures.recall ? { recall: () => Promise.reject(new Error('the memory store is down')), remember: memory.remember } : memory;
}

const runId = 'run-1';

/**
 * Records what the inspector shows of the run: each snapshot of the run's actor with the event
 * that led to it, the transitions of its microsteps and the marks it sent its telemetry actor.
 */
function inspector(observed: ObservedStep[]) {
  let transitions: string[] = [];
  let marks: string[] = [];
  return (event: InspectionEvent) => {
    if (event.type === '@xstate.microstep' && (event.actorRef as { id?: string }).id === runId) {
      for (const transition of event._transitions) transitions.push(transitionKey(transition as never));
    } else if (event.type === '@xstate.event' && (event.sourceRef as { id?: string } | undefined)?.id === runId && (event.actorRef as { id?: string }).id === 'telemetry' && event.event.type === 'telemetry.mark') {
      marks.push(markLabel((event.event as unknown as { mark: TelemetryMark }).mark));
    } else if (event.type === '@xstate.snapshot' && (event.actorRef as { id?: string }).id === runId) {
      // An event that changed nothing (a review of another call) leaves the snapshot as it was.
      if (event.snapshot === observed.at(-1)?.snapshot) return;
      observed.push({ snapshot: event.snapshot as RunSnapshot, event: event.event, transitions, marks });
      transitions = [];
      marks = [];
    }
  };
}

/** Runs `value` to a final state through `createRuntime` with the scripted model, the probe, the scenario's policy and layers, and recording telemetry. */
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
  const model = scriptedModel(script.map((step) => (step.kind === 'modelError' ? { error: modelFailure } : { response: step.response })));
  const telemetry = recordingTelemetry();
  const observed: ObservedStep[] = [];
  // Every reading moves the clock on by 1 ms: with a 1 ms approval timeout, a wait's deadline has passed once it is read.
  let time = Date.UTC(2026, 0, 1);
  const runtime = createRuntime({
    config: {
      store: { kind: 'memory' },
      telemetry: { emit_structured_events: false },
      runtime: {
        max_tool_hops: value.maxToolHops,
        max_tool_calls_per_step: 1,
        max_total_tokens: 1000,
        enable_background_updates: value.backgroundUpdates,
        approval_timeout_ms: value.approvalTimeout === 'instant' ? 1 : 86_400_000,
      },
      policy: { precheck_required: value.precheckRequired },
    },
    model,
    policy: policyFor(value),
    memory: memoryFor(value),
    journal: journalFor(value),
    ...(value.failures.enqueue ? { background: { enqueue: () => Promise.reject(new Error('the queue is full')), drain: async () => {} } } : {}),
    capabilities: [echo],
    telemetry,
    clock: { now: () => (time += 1) },
    inspect: inspector(observed),
    idFor: (kind) => (kind === 'run' ? runId : '4bf92f3577b34da6a3ce929d0e0e4736'),
    onWarning: (message) => void warnings.push(message),
  });

  const request = value.request === 'valid' ? { input: 'echo something', tenantId: 'acme', principalId: 'user-1' } : { input: 'echo something', principalId: 'user-1' };
  const handle = runtime.start(request);
  const { actor } = handle;
  let seen = 0;
  let latest = actor.getSnapshot();
  const finished = new Promise<void>((resolve, reject) => {
    if (latest.status === 'done') return resolve();
    actor.subscribe({
      next(snapshot) {
        // Observers hear every processed event; an event that changed nothing leaves the snapshot as it was.
        if (snapshot === latest) return;
        latest = snapshot;
        if (snapshot.status === 'done') return resolve();
        if (++seen === value.cancelAfter) handle.cancel('the scenario cancels');
      },
      error: reject,
    });
  });
  if (value.cancelAfter === 0) handle.cancel('the scenario cancels');

  const settled: RunResult[] = [];
  const refusals: unknown[] = [];
  let result = await handle.result;
  settled.push(result);
  let parked = 0;
  // With an instant approval timeout every parked call expires on its own; nobody reviews it.
  while (value.approvalTimeout === 'day' && result.status === 'awaiting_approval' && actor.getSnapshot().status === 'active') {
    const callId = result.toolCalls.at(-1)!.callId;
    const action = value.approvals[parked++] ?? 'cancel';
    if (action === 'cancel') {
      handle.cancel('the approver cancels');
      break;
    }
    if (action === 'refuse') {
      // Refused, the call stays parked for the approver; a reviewer policy that fails ends the run instead.
      const ended = await runtime.approve(runId, callId, { principalId: 'intruder' }).then(
        (next) => (settled.push(next), (result = next)),
        (error: unknown) => void refusals.push(error),
      );
      // Refused, it may also have been cancelled meanwhile (the scenario cancels after so many snapshots).
      if (ended || statusOf(actor.getSnapshot().value) !== 'awaiting_approval') continue;
    }
    result =
      action === 'reject'
        ? await runtime.reject(runId, callId, { principalId: 'approver', reason: 'not this time' })
        : await runtime.approve(runId, callId, { principalId: 'approver' });
    settled.push(result);
  }
  await finished;
  await runtime.close();
  const last = observed.at(-1)!.snapshot;
  return {
    runId,
    observed,
    snapshots: observed.map((step) => step.snapshot),
    result: toRunResult(last.value, last.context),
    settled,
    refusals,
    model,
    scripted: script.length,
    telemetry,
    handlerCalls,
    warnings,
  };
}
