import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getInitialSnapshot, getNextSnapshot, type AnyEventObject } from 'xstate';
import { runMachine } from '../../machines/run/machine.js';
import type { ModelResponse } from '../../src/models/contract.js';
import { isRunchartError, RunchartErrorData } from '../../src/errors.js';
import { DecisionRecord } from '../../src/policy/contract.js';
import { checkPath } from '../../src/verification/coverage.js';
import { enumerateRunPaths, sampleEventsFor, stateKey, transitionsOf, transitionsTaken, type PathOptions, type RunPath } from '../../src/verification/paths.js';
import { plainScenario, ProbeInput, runEvent, scenario, type Scenario, type StepKind } from '../support/arbitraries.js';
import { joined, observedPath, pathInput, verdictsOf, type RunSnapshot } from '../support/graph.js';
import { runScenario, type ScenarioRun } from '../support/run-scenario.js';

type RunSettingsKey = Pick<Scenario, 'maxToolHops' | 'precheckRequired' | 'backgroundUpdates'>;

/** The enumerated paths per setting, by state sequence; computed once per setting. */
const enumerated = new Map<string, Map<string, RunPath[]>>();
function pathsFor({ maxToolHops, precheckRequired, backgroundUpdates }: RunSettingsKey): Map<string, RunPath[]> {
  const key = `${maxToolHops}|${precheckRequired}|${backgroundUpdates}`;
  let byStates = enumerated.get(key);
  if (!byStates) {
    byStates = new Map();
    for (const path of enumerateRunPaths({ maxToolHops, precheckRequired, backgroundUpdates })) {
      const states = joined(path.states);
      byStates.set(states, [...(byStates.get(states) ?? []), path]);
    }
    enumerated.set(key, byStates);
  }
  return byStates;
}

/** The transitions each step of a path took, as one string to compare. */
const transitionsAlong = (path: RunPath) => path.steps.map((step) => step.transitions.join(',')).join(' | ');

/** Every transition a real run in this file took. */
const taken = new Set<string>();

/** Telemetry's view of the states: entries of leaf states (the compound parents are entered too, but never rest). */
const telemetryStates = (run: ScenarioRun) => run.telemetry.statesOf(run.runId).filter((state) => state !== 'toolExecution' && state !== 'background');

/** Checks every property of one scenario run; returns nothing, throws on the first broken one. */
function checkRun(value: Scenario, run: ScenarioRun): void {
  const { result } = run;
  const states = run.snapshots.map((snapshot) => stateKey(snapshot.value));
  const final = run.snapshots.at(-1)!;
  expect(final.status).toBe('done');
  expect(states[0]).toBe('ingress');
  const observed = observedPath(run.observed);
  for (const step of observed.steps) for (const transition of step.transitions) taken.add(transition);

  // (a) The run followed an enumerated path: the same states, verdicts and chart transitions.
  const candidates = pathsFor(value).get(joined(states));
  expect(candidates, `no enumerated path ${joined(states)}`).toBeDefined();
  const matching = candidates!.filter((path) => verdictsOf(path) === verdictsOf(observed) && transitionsAlong(path) === transitionsAlong(observed));
  expect(matching.length, `no enumerated path ${joined(states)} with verdicts ${verdictsOf(observed)} and transitions ${transitionsAlong(observed)}`).toBeGreaterThan(0);

  // (b) …and neither that path nor the run's own breaks an invariant.
  expect(checkPath(observed).map((violation) => `${violation.rule}: ${violation.detail}`)).toEqual([]);
  for (const path of matching) expect(checkPath(path)).toEqual([]);

  // (c) Result invariants.
  expect(result.status).toBe(final.value);
  // An error says why a run failed or was cancelled, and is there for nothing else.
  expect(result.status === 'failed' || result.status === 'cancelled').toBe(result.error !== undefined);
  if (result.error) RunchartErrorData.parse(result.error);
  if (result.status === 'cancelled') expect(result.error?.kind).toBe('cancelled');
  expect(result.usage.modelCalls).toBeLessThanOrEqual(value.maxToolHops + 1);
  for (const decision of result.decisions) {
    DecisionRecord.parse(decision);
    expect(decision.ruleId).not.toBe('');
  }
  const authorized = (callId: string) =>
    result.decisions.some(
      (decision) => decision.callId === callId && decision.verdict === 'allow' && (decision.stage === 'tool' || decision.stage === 'approval'),
    );
  for (const call of result.toolCalls) {
    if (call.outcome.status === 'ok' || call.outcome.status === 'error') expect(authorized(call.callId), `call ${call.callId} ran`).toBe(true);
  }
  // No handler ran without an allow for its call, nor with arguments its schema refuses.
  for (const { args, callId } of run.handlerCalls) {
    expect(authorized(callId), `handler ran for ${callId}`).toBe(true);
    expect(ProbeInput.safeParse(args).success).toBe(true);
  }
  expect(result.usage.toolCalls).toBe(result.toolCalls.filter((call) => call.outcome.status === 'ok' || call.outcome.status === 'error').length);
  // A refused reviewer is told so by the runtime, and policy's refusal is on the record.
  for (const refusal of run.refusals) {
    expect(isRunchartError(refusal) && refusal.layer === 'policy' && /intruder may not review/.test(refusal.message), String(refusal)).toBe(true);
  }
  expect(result.decisions.filter((decision) => decision.stage === 'approval' && decision.principalId === 'intruder' && decision.verdict !== 'allow')).toHaveLength(run.refusals.length);

  // Telemetry saw every state the run was in, in order.
  expect(telemetryStates(run)).toEqual(states);

  // The model was asked once per model step, and a completed run used its whole script.
  expect(run.model.requests).toHaveLength(states.filter((state) => state === 'modelStep').length);
  if (result.status === 'completed') run.model.verify();
  if (result.status !== 'cancelled') {
    const handlerRan = result.toolCalls.filter((call) => call.outcome.status === 'ok' || (call.outcome.status === 'error' && call.outcome.error.kind !== 'invalid-input'));
    expect(run.handlerCalls.map((call) => call.callId)).toEqual(handlerRan.map((call) => call.callId));
  }
  // Every settled result the runtime handed out was a resting state of this run.
  for (const settled of run.settled) expect(['awaiting_approval', 'completed', 'denied', 'failed', 'cancelled']).toContain(settled.status);
}

const usage = { inputTokens: 1, outputTokens: 1 };
/** A fixed model answer of each kind, for the scenarios that must be taken whatever the generator draws. */
const answers: Record<StepKind, ModelResponse> = {
  final: { text: 'done', toolCalls: [], usage, finishReason: 'stop' },
  validCall: { text: null, toolCalls: [{ id: 'call_1', name: 'probe_echo', arguments: '{"text":"hi"}' }], usage, finishReason: 'tool_calls' },
  malformedJson: { text: null, toolCalls: [{ id: 'call_1', name: 'probe_echo', arguments: '{"text":' }], usage, finishReason: 'tool_calls' },
  unknownTool: { text: null, toolCalls: [{ id: 'call_1', name: 'no_such_tool', arguments: '{}' }], usage, finishReason: 'tool_calls' },
  schemaViolation: { text: null, toolCalls: [{ id: 'call_1', name: 'probe_echo', arguments: '{"text":42}' }], usage, finishReason: 'tool_calls' },
  empty: { text: null, toolCalls: [], usage, finishReason: 'stop' },
  twoCalls: {
    text: null,
    toolCalls: [
      { id: 'call_1', name: 'probe_echo', arguments: '{"text":"a"}' },
      { id: 'call_2', name: 'probe_echo', arguments: '{"text":"b"}' },
    ],
    usage,
    finishReason: 'tool_calls',
  },
  truncated: { text: 'do', toolCalls: [], usage, finishReason: 'length' },
  filtered: { text: null, toolCalls: [], usage, finishReason: 'content_filter' },
  overBudget: { text: 'done', toolCalls: [], usage: { inputTokens: 2_000, outputTokens: 1 }, finishReason: 'stop' },
  modelError: { text: null, toolCalls: [], usage: { inputTokens: 0, outputTokens: 0 }, finishReason: 'error' },
};
const steps = (...kinds: StepKind[]) => kinds.map((kind) => ({ kind, response: answers[kind] }));
const toolThenAnswer = steps('validCall', 'final', 'final');
const answer = steps('final', 'final', 'final');

/** What a fixed scenario must end in: the run's status, and what else shows the outcome. */
interface Outcome {
  status: 'completed' | 'denied' | 'failed' | 'cancelled';
  call?: string;
  error?: string;
  background?: string;
  check?: (run: ScenarioRun) => void;
}

/** Every kind of outcome, each in a fixed scenario, so each is taken whatever the generator draws. */
const outcomes: [string, Partial<Scenario>, Outcome][] = [
  ['an allowed call that runs', { steps: toolThenAnswer }, { status: 'completed', call: 'ok', background: 'queued' }],
  ['an approved call', { steps: toolThenAnswer, toolPolicy: 'require_approval' }, { status: 'completed', call: 'ok' }],
  ['a rejected call', { steps: toolThenAnswer, toolPolicy: 'require_approval', approvals: ['reject', 'reject', 'reject'] }, { status: 'completed', call: 'rejected' }],
  ['a cancelled approval', { steps: toolThenAnswer, toolPolicy: 'require_approval', approvals: ['cancel', 'cancel', 'cancel'] }, { status: 'cancelled', error: 'cancelled' }],
  [
    'a reviewer policy refuses, then the approver approves',
    { maxToolHops: 1, steps: toolThenAnswer, toolPolicy: 'require_approval', approvals: ['refuse', 'approve', 'approve'] },
    { status: 'completed', call: 'ok', check: (run) => expect(run.refusals).toHaveLength(1) },
  ],
  ['an approval that expires', { steps: toolThenAnswer, toolPolicy: 'require_approval', approvalTimeout: 'instant' }, { status: 'completed', call: 'rejected' }],
  ['an approval wait that fails', { steps: toolThenAnswer, toolPolicy: 'require_approval', failures: { ...plainScenario().failures, approvalWait: true } }, { status: 'failed', error: 'runtime' }],
  ['an approval-stage policy failure', { steps: toolThenAnswer, toolPolicy: 'require_approval', stages: { ...plainScenario().stages, approval: 'throws' } }, { status: 'failed', error: 'policy' }],
  ['a hidden tool (denied when the run pinned its capabilities)', { steps: toolThenAnswer, toolPolicy: 'deny' }, { status: 'completed', call: 'invalid' }],
  ['a call denied at call time, though pinned', { steps: toolThenAnswer, stages: { ...plainScenario().stages, toolAtCall: 'deny' } }, { status: 'completed', call: 'denied' }],
  ['a tool-stage policy failure at call time', { steps: toolThenAnswer, stages: { ...plainScenario().stages, toolAtCall: 'throws' } }, { status: 'failed', error: 'policy' }],
  ['a tool handler that throws', { steps: toolThenAnswer, faults: ['throws', 'ok', 'ok'] }, { status: 'completed', call: 'error' }],
  ['a tool handler that times out', { steps: toolThenAnswer, faults: ['timeout', 'ok', 'ok'] }, { status: 'completed', call: 'error' }],
  ['arguments the tool’s schema refuses', { steps: steps('schemaViolation', 'final', 'final') }, { status: 'completed', call: 'error' }],
  ['a tool call the journal cannot record', { steps: toolThenAnswer, failures: { ...plainScenario().failures, journal: true } }, { status: 'failed', error: 'execution' }],
  ['an unknown tool', { steps: steps('unknownTool', 'final', 'final') }, { status: 'completed', call: 'invalid' }],
  ['malformed arguments', { steps: steps('malformedJson', 'final', 'final') }, { status: 'completed', call: 'invalid' }],
  ['a precheck deny', { steps: answer, stages: { ...plainScenario().stages, precheck: 'deny' } }, { status: 'denied' }],
  ['a precheck no rule answers, when one is required', { steps: answer, stages: { ...plainScenario().stages, precheck: 'unmatched' } }, { status: 'denied' }],
  ['a precheck no rule answers, when none is required', { steps: answer, precheckRequired: false, stages: { ...plainScenario().stages, precheck: 'unmatched' } }, { status: 'completed' }],
  ['a precheck failure (fail closed)', { steps: answer, stages: { ...plainScenario().stages, precheck: 'throws' } }, { status: 'failed', error: 'policy' }],
  ['a bad request', { steps: answer, request: 'invalid' }, { status: 'failed', error: 'ingress' }],
  ['a memory recall failure, which degrades', { steps: answer, failures: { ...plainScenario().failures, recall: true } }, { status: 'completed', check: (run) => expect(run.result.warnings).toHaveLength(1) }],
  ['a model failure', { steps: steps('modelError') }, { status: 'failed', error: 'model' }],
  ['an answer over the token budget', { steps: steps('overBudget') }, { status: 'failed', error: 'model' }],
  ['a truncated answer', { steps: steps('truncated') }, { status: 'failed', error: 'model' }],
  ['a filtered answer', { steps: steps('filtered') }, { status: 'failed', error: 'model' }],
  ['an empty answer', { steps: steps('empty') }, { status: 'failed', error: 'model' }],
  ['a tool asked for past the hop budget', { maxToolHops: 0, steps: steps('validCall') }, { status: 'failed', error: 'model' }],
  ['more tool calls than a step may make', { steps: steps('twoCalls') }, { status: 'failed', error: 'model' }],
  ['an output deny', { steps: answer, stages: { ...plainScenario().stages, output: 'deny' } }, { status: 'denied' }],
  ['an output check failure', { steps: answer, stages: { ...plainScenario().stages, output: 'throws' } }, { status: 'failed', error: 'policy' }],
  ['a memory.write deny', { steps: answer, stages: { ...plainScenario().stages, memoryWrite: 'deny' } }, { status: 'completed', background: 'denied' }],
  ['a memory.write check failure', { steps: answer, stages: { ...plainScenario().stages, memoryWrite: 'throws' } }, { status: 'completed', background: 'failed' }],
  ['a background queue that refuses the tasks', { steps: answer, failures: { ...plainScenario().failures, enqueue: true } }, { status: 'completed', background: 'failed' }],
  ['background updates off', { steps: answer, backgroundUpdates: false }, { status: 'completed', background: 'skipped' }],
  ['a cancel right at the start', { steps: answer, cancelAfter: 0 }, { status: 'cancelled', error: 'cancelled' }],
];

/** Each fixed scenario's run, run once and shared by the tests that read it. */
const outcomeRuns = new Map<string, Promise<ScenarioRun>>();
function outcomeRun(name: string): Promise<ScenarioRun> {
  let run = outcomeRuns.get(name);
  if (!run) {
    const [, overrides] = outcomes.find(([candidate]) => candidate === name)!;
    const value = plainScenario(overrides);
    run = runScenario(value).then((finished) => (checkRun(value, finished), finished));
    outcomeRuns.set(name, run);
  }
  return run;
}

describe('a real run', () => {
  it('follows an enumerated path and keeps every invariant, whatever the model, the policy, the layers and the approvers do', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (value) => {
        const run = await runScenario(value);
        checkRun(value, run);
      }),
      { numRuns: 200 },
    );
  });

  it.each(outcomes)('reaches %s', async (name, _overrides, expected) => {
    const run = await outcomeRun(name);
    expect(run.result.status).toBe(expected.status);
    if (expected.call) expect(run.result.toolCalls.map((call) => call.outcome.status)).toContain(expected.call);
    if (expected.error) expect(run.result.error?.kind === 'cancelled' ? 'cancelled' : run.result.error?.layer).toBe(expected.error);
    if (expected.background) expect(run.result.background).toBe(expected.background);
    expected.check?.(run);
  });
});

describe('the transitions real runs take', () => {
  const settings: PathOptions[] = [{}, { precheckRequired: false }, { backgroundUpdates: false }];
  /** What the enumeration takes with one tool call per step (the runs' own budget), and with its variety too. */
  const reachable = transitionsTaken(settings.flatMap((options) => enumerateRunPaths({ maxToolHops: 2, variety: false, ...options })));
  const enumeratedAll = transitionsTaken(settings.flatMap((options) => enumerateRunPaths({ maxToolHops: 2, ...options })));

  it('are every transition the enumeration takes with one tool call per step', async () => {
    for (const [name] of outcomes) await outcomeRun(name);
    const share = (keys: Set<string>) => `${[...keys].filter((key) => taken.has(key)).length} of ${keys.size}`;
    console.log(
      `run properties: real runs took ${share(enumeratedAll)} enumerated transitions (${Math.round((100 * [...enumeratedAll].filter((key) => taken.has(key)).length) / enumeratedAll.size)}%), ${share(reachable)} of those reachable with one tool call per step; the chart has ${transitionsOf(runMachine).length}`,
    );
    expect([...reachable].filter((key) => !taken.has(key))).toEqual([]);
    // …and none the enumeration does not know.
    expect([...taken].filter((key) => !enumeratedAll.has(key))).toEqual([]);
  });
});

describe('the pure step function', () => {
  /** An event: either one the current state handles (by index into its samples) or any generated event. */
  const step = fc.oneof(
    { arbitrary: fc.nat().map((index) => ({ sample: index }) as const), weight: 2 },
    { arbitrary: runEvent.map((event) => ({ event }) as const), weight: 1 },
  );

  const settings = fc.record({ maxToolHops: fc.integer({ min: 0, max: 3 }), precheckRequired: fc.boolean(), backgroundUpdates: fc.boolean() });

  /** Applies the steps from the initial snapshot; stops once the run is no longer active. */
  function walk(options: { maxToolHops: number; precheckRequired: boolean; backgroundUpdates: boolean }, steps: ({ sample: number } | { event: AnyEventObject })[]) {
    let snapshot: RunSnapshot = getInitialSnapshot(runMachine, pathInput(options));
    const visited: RunSnapshot[] = [snapshot];
    for (const next of steps) {
      if (snapshot.status !== 'active') break; // an actor ignores events once done; the pure step does not
      let event: AnyEventObject;
      if ('sample' in next) {
        const samples = sampleEventsFor(snapshot);
        if (samples.length === 0) break;
        event = samples[next.sample % samples.length]!;
      } else event = next.event;
      snapshot = getNextSnapshot(runMachine, snapshot, event as never); // done/error events are outside RunEvent
      visited.push(snapshot);
    }
    return visited;
  }

  it('records an error exactly when the run fails or is cancelled', () => {
    fc.assert(
      fc.property(settings, fc.array(step, { maxLength: 30 }), (options, steps) => {
        for (const snapshot of walk(options, steps)) {
          expect(snapshot.context.error !== null).toBe(snapshot.matches('failed') || snapshot.matches('cancelled'));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('never leaves the hop budget, and ends a handled sequence in an active or final state', () => {
    fc.assert(
      fc.property(settings, fc.array(fc.nat().map((index) => ({ sample: index })), { maxLength: 40 }), (options, steps) => {
        for (const snapshot of walk(options, steps)) {
          // Only handled events: the chart itself never errors.
          expect(snapshot.status).not.toBe('error');
          expect(snapshot.context.hops).toBeLessThanOrEqual(options.maxToolHops);
          expect(snapshot.context.usage.modelCalls).toBeLessThanOrEqual(options.maxToolHops + 1);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keeps a persisted snapshot intact through a JSON round trip', () => {
    fc.assert(
      fc.property(settings, fc.array(step, { maxLength: 30 }), (options, steps) => {
        for (const snapshot of walk(options, steps)) {
          if (snapshot.status === 'error') continue; // holds the thrown Error itself: not a state a run is saved in
          const persisted = runMachine.getPersistedSnapshot(snapshot);
          expect(JSON.parse(JSON.stringify(persisted))).toEqual(persisted);
        }
      }),
      { numRuns: 200 },
    );
  });
});
