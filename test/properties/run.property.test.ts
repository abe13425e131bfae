import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { getInitialSnapshot, getNextSnapshot, type AnyEventObject } from 'xstate';
import { runMachine } from '../../machines/run/machine.js';
import { RunchartErrorData } from '../../src/errors.js';
import { DecisionRecord } from '../../src/policy/contract.js';
import { checkPath } from '../../src/verification/coverage.js';
import { enumerateRunPaths, sampleEventsFor, stateKey, type RunPath } from '../../src/verification/paths.js';
import { ProbeInput, runEvent, scenario, type Scenario } from '../support/arbitraries.js';
import { joined, observedPath, pathInput, verdictsOf, type RunSnapshot } from '../support/graph.js';
import { runScenario, type ScenarioRun } from '../support/run-scenario.js';

/** The enumerated paths per hop budget, by state sequence; computed once. */
const enumerated = new Map<number, Map<string, RunPath[]>>();
function pathsFor(maxToolHops: number): Map<string, RunPath[]> {
  let byStates = enumerated.get(maxToolHops);
  if (!byStates) {
    byStates = new Map();
    for (const path of enumerateRunPaths({ maxToolHops })) {
      const key = joined(path.states);
      byStates.set(key, [...(byStates.get(key) ?? []), path]);
    }
    enumerated.set(maxToolHops, byStates);
  }
  return byStates;
}

/** Telemetry's view of the states: entries of leaf states (the compound parents are entered too, but never rest). */
const telemetryStates = (run: ScenarioRun) => run.telemetry.statesOf(run.runId).filter((state) => state !== 'toolExecution' && state !== 'background');

/** Checks every property of one scenario run; returns nothing, throws on the first broken one. */
function checkRun(value: Scenario, run: ScenarioRun): void {
  const { result } = run;
  const states = run.snapshots.map((snapshot) => stateKey(snapshot.value));
  const final = run.snapshots.at(-1)!;
  expect(final.status).toBe('done');
  expect(states[0]).toBe('ingress');

  // (a) The run followed an enumerated path…
  const candidates = pathsFor(value.maxToolHops).get(joined(states));
  expect(candidates, `no enumerated path ${joined(states)}`).toBeDefined();
  // …with the same verdicts at the same steps.
  const observed = observedPath(run.snapshots);
  const matching = candidates!.filter((path) => verdictsOf(path) === verdictsOf(observed));
  expect(matching.length, `no enumerated path ${joined(states)} with verdicts ${verdictsOf(observed)}`).toBeGreaterThan(0);

  // (b) …and neither that path nor the run's own keeps any invariant broken.
  expect(checkPath(observed)).toEqual([]);
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

  // Telemetry saw every state the run was in, in order.
  expect(telemetryStates(run)).toEqual(states);

  if (result.status !== 'cancelled') {
    // The run ended on its own: the script was used up, one model call per step.
    run.model.verify();
    expect(result.usage.modelCalls).toBe(run.scripted);
    const handlerRan = result.toolCalls.filter((call) => call.outcome.status === 'ok' || (call.outcome.status === 'error' && call.outcome.error.kind !== 'invalid-input'));
    expect(run.handlerCalls.map((call) => call.callId)).toEqual(handlerRan.map((call) => call.callId));
  }
  // Every settled result the runtime handed out was a resting state of this run.
  for (const settled of run.settled) expect(['awaiting_approval', 'completed', 'denied', 'failed', 'cancelled']).toContain(settled.status);
}

describe('a real run', () => {
  it('follows an enumerated path and keeps every invariant, whatever the model, the tools and the approvers do', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (value) => {
        const run = await runScenario(value);
        checkRun(value, run);
      }),
      { numRuns: 200 },
    );
  });

  it.each<[string, Partial<Scenario>]>([
    ['an allowed call that runs', { toolPolicy: 'allow' }],
    ['an approved call', { toolPolicy: 'require_approval', approvals: ['approve', 'approve', 'approve'] }],
    ['a rejected call', { toolPolicy: 'require_approval', approvals: ['reject', 'reject', 'reject'] }],
    ['a cancelled approval', { toolPolicy: 'require_approval', approvals: ['cancel', 'cancel', 'cancel'] }],
    ['a denied (hidden) tool', { toolPolicy: 'deny' }],
  ])('covers %s', async (_label, overrides) => {
    // Fixed scenarios so each branch is taken at least once, whatever the generator draws.
    const base: Scenario = {
      maxToolHops: 2,
      steps: [
        { kind: 'validCall', response: { text: null, toolCalls: [{ id: 'call_1', name: 'probe_echo', arguments: '{"text":"hi"}' }], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'tool_calls' } },
        { kind: 'final', response: { text: 'done', toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' } },
        { kind: 'final', response: { text: 'unused', toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' } },
      ],
      faults: ['ok', 'ok', 'ok'],
      toolPolicy: 'allow',
      approvals: ['approve', 'approve', 'approve'],
      cancelAfter: null,
      ...overrides,
    };
    const run = await runScenario(base);
    checkRun(base, run);
    const expected = { allow: 'completed', require_approval: base.approvals[0] === 'cancel' ? 'cancelled' : 'completed', deny: 'completed' } as const;
    expect(run.result.status).toBe(expected[base.toolPolicy]);
    const outcome = run.result.toolCalls[0]?.outcome.status;
    if (base.toolPolicy === 'deny') expect(outcome).toBe('invalid');
    else if (base.approvals[0] === 'reject' && base.toolPolicy === 'require_approval') expect(outcome).toBe('rejected');
    else if (base.approvals[0] !== 'cancel') expect(outcome).toBe('ok');
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
