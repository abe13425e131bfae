import { describe, expect, it } from 'vitest';
import { getNextSnapshot, type AnyEventObject } from 'xstate';
import { runMachine } from '../../machines/run/machine.js';
import { checkPolicyCoverage } from '../../src/verification/coverage.js';
import type { ModelResponse } from '../../src/models/contract.js';
import type { PolicyDecision } from '../../src/policy/contract.js';
import {
  enumerateRunPaths,
  sampleCapabilities,
  sampleEventsFor,
  sampleModelResponses,
  stateKey,
  type PathOptions,
  type RunPath,
} from '../../src/verification/paths.js';
import { invokedActors, joined, simplePathStates, walkSamples } from '../support/graph.js';

const finals = new Set(['completed', 'denied', 'failed', 'cancelled']);

/** True when `states` appear one right after the other somewhere on the path. */
const passesThrough = (path: RunPath, ...states: string[]) => ` > ${joined(path.states)} > `.includes(` > ${joined(states)} > `);

/** The first path that `predicate` accepts; fails the test naming `what` when there is none. */
function pathWhere(paths: RunPath[], what: string, predicate: (path: RunPath) => boolean): RunPath {
  const found = paths.find(predicate);
  if (!found) throw new Error(`no enumerated path ${what}`);
  return found;
}


/** How often a path enters modelStep, and how often it enters the tool loop from outside it. */
function loopCounts(path: RunPath): { modelSteps: number; toolRounds: number } {
  let toolRounds = 0;
  path.states.forEach((state, index) => {
    if (state.startsWith('toolExecution.') && !path.states[index - 1]?.startsWith('toolExecution.')) toolRounds++;
  });
  return { modelSteps: path.states.filter((state) => state === 'modelStep').length, toolRounds };
}

describe('the sample events', () => {
  it('offer a done and an error event for every layer call the chart invokes, and every event a caller sends', () => {
    const handled = new Set<string>(runMachine.events);
    for (const { id, src } of invokedActors()) {
      if (src === 'recordTelemetry') continue; // lives as long as the run; the chart handles no outcome of it
      expect(handled.has(`xstate.done.actor.${id}`), `done of ${id}`).toBe(true);
      expect(handled.has(`xstate.error.actor.${id}`), `error of ${id}`).toBe(true);
    }
    expect([...handled].filter((type) => !type.startsWith('xstate.')).sort()).toEqual(['run.cancel', 'tool.approve', 'tool.reject']);
  });

  it('invoke one src per kind of call and one id per call site', () => {
    expect(invokedActors()).toEqual([
      { id: 'telemetry', src: 'recordTelemetry', state: 'run' },
      { id: 'acceptRequest', src: 'acceptRequest', state: 'run.ingress' },
      { id: 'checkPrecheck', src: 'evaluatePolicy', state: 'run.policy' },
      { id: 'recallMemory', src: 'recallMemory', state: 'run.retrieval' },
      { id: 'callModel', src: 'callModel', state: 'run.modelStep' },
      { id: 'authorizeTool', src: 'evaluatePolicy', state: 'run.toolExecution.authorizing' },
      { id: 'awaitApproval', src: 'awaitApproval', state: 'run.toolExecution.awaitingApproval' },
      { id: 'reviewApproval', src: 'evaluatePolicy', state: 'run.toolExecution.reviewing' },
      { id: 'executeTool', src: 'executeTool', state: 'run.toolExecution.executing' },
      { id: 'checkOutput', src: 'evaluatePolicy', state: 'run.assembly' },
      { id: 'authorizeWrite', src: 'evaluatePolicy', state: 'run.background.authorizing' },
      { id: 'enqueueBackground', src: 'enqueueBackground', state: 'run.background.queueing' },
    ]);
  });

  it('offers policy every verdict, including the default deny', () => {
    const atPolicy = walkSamples({}, [(event) => event.type === 'xstate.done.actor.acceptRequest']);
    expect(stateKey(atPolicy.value)).toBe('policy');
    const decisions = sampleEventsFor(atPolicy)
      .filter((event) => event.type === 'xstate.done.actor.checkPrecheck')
      .map((event) => (event as unknown as { output: { verdict: string; ruleId: string } }).output);
    expect(new Set(decisions.map((decision) => decision.verdict))).toEqual(new Set(['allow', 'deny', 'require_approval']));
    expect(decisions.some((decision) => decision.verdict === 'deny' && decision.ruleId === 'default-deny')).toBe(true);
  });

  it('offers the model an answer for every branch of modelStep', () => {
    const atModel = walkSamples({ maxToolHops: 1 }, [
      (event) => event.type === 'xstate.done.actor.acceptRequest',
      (event) => (event as unknown as { output?: { verdict?: string } }).output?.verdict === 'allow',
      (event) => event.type === 'xstate.done.actor.recallMemory',
    ]);
    expect(stateKey(atModel.value)).toBe('modelStep');
    const reached = new Set<string>();
    for (const event of sampleEventsFor(atModel).filter((event) => event.type === 'xstate.done.actor.callModel')) {
      const next = getNextSnapshot(runMachine, atModel, event as never);
      reached.add(`${stateKey(next.value)}:${next.context.error?.kind ?? '-'}`);
    }
    expect(reached).toEqual(
      new Set(['assembly:-', 'toolExecution.authorizing:-', 'modelStep:-', 'failed:budget-exceeded', 'failed:model-behavior', 'failed:truncated', 'failed:content-filtered']),
    );
  });
});

describe('the sample event variants', () => {
  const accepted = (event: AnyEventObject) => event.type === 'xstate.done.actor.acceptRequest';
  const verdict = (wanted: string) => (event: AnyEventObject) => (event as unknown as { output?: { verdict?: string } }).output?.verdict === wanted;
  const recalled = (event: AnyEventObject) => event.type === 'xstate.done.actor.recallMemory';
  const answers = (event: AnyEventObject) => event.type === 'xstate.done.actor.callModel';
  const output = (event: AnyEventObject) => (event as unknown as { output: unknown }).output;

  it('offer a parked call every review: bound with its argsHash and without one, with other arguments, for another call, in nobody’s name, and rejects', () => {
    const parked = walkSamples({}, [accepted, verdict('allow'), recalled, (event) => output(event) === sampleModelResponses.tool, verdict('require_approval')]);
    expect(stateKey(parked.value)).toBe('toolExecution.awaitingApproval');
    const call = parked.context.calls[parked.context.cursor]!;
    const reviews = sampleEventsFor(parked).filter((event) => event.type === 'tool.approve' || event.type === 'tool.reject') as unknown as { type: string; callId: string; principalId: string; argsHash?: string }[];
    const kind = (review: (typeof reviews)[number]) =>
      `${review.type} ${review.callId === call.callId ? 'this call' : 'another call'} ${review.argsHash === undefined ? 'no hash' : review.argsHash === call.argsHash ? 'its hash' : 'other arguments'}${review.principalId === '' ? ' no reviewer' : ''}`;
    expect(reviews.map(kind).sort()).toEqual(
      [
        'tool.approve this call its hash',
        'tool.approve this call no hash',
        'tool.approve this call other arguments',
        'tool.approve another call no hash',
        'tool.approve this call its hash no reviewer',
        'tool.reject this call no hash',
        'tool.reject another call no hash',
      ].sort(),
    );
    // The chart takes the bound ones and ignores the others.
    const moves = reviews.filter((review) => getNextSnapshot(runMachine, parked, review as never) !== parked).map(kind);
    expect(moves.sort()).toEqual(['tool.approve this call its hash', 'tool.approve this call no hash', 'tool.reject this call no hash'].sort());
  });

  it('offer the model, in the variety walk, a call to a capability of each effect kind, an unknown tool, two calls and three', () => {
    const atModel = walkSamples({}, [accepted, verdict('allow'), recalled]);
    const offered = (variety: boolean) => sampleEventsFor(atModel, [], variety).filter(answers).map((event) => output(event) as ModelResponse);
    const effects = (responses: ModelResponse[]) =>
      new Set(responses.flatMap((response) => response.toolCalls.map((call) => sampleCapabilities.find((capability) => capability.toolName === call.name)?.effects ?? 'unknown')));
    expect(effects(offered(true))).toEqual(new Set(['read', 'write', 'external', 'unknown']));
    expect(new Set(offered(true).map((response) => response.toolCalls.length))).toEqual(new Set([0, 1, 2, 3]));
    // The loop walk keeps to one kind, and two calls (over its budget of one).
    expect(effects(offered(false))).toEqual(new Set(['read', 'write', 'unknown']));
    expect(Math.max(...offered(false).map((response) => response.toolCalls.length))).toBe(2);
  });

  describe('on the paths at max_tool_hops 1', () => {
    const paths = enumerateRunPaths({ maxToolHops: 1 });
    const answered = paths.flatMap((path) => path.steps.flatMap((step) => (step.answered ? [step.answered] : [])));

    it('take a done and an error event of every layer call the chart invokes', () => {
      const taken = new Set(answered.map((call) => `${call.id} ${call.outcome}`));
      const expected = invokedActors()
        .filter(({ src }) => src !== 'recordTelemetry')
        .flatMap(({ id }) => [`${id} done`, `${id} error`]);
      expect(expected.filter((key) => !taken.has(key))).toEqual([]);
    });

    it('take every verdict at every policy call', () => {
      const taken = new Set(answered.filter((call) => call.src === 'evaluatePolicy' && call.outcome === 'done').map((call) => `${call.id} ${(call.output as PolicyDecision).verdict}`));
      const expected = invokedActors()
        .filter(({ src }) => src === 'evaluatePolicy')
        .flatMap(({ id }) => ['allow', 'deny', 'require_approval'].map((verdict) => `${id} ${verdict}`));
      expect(expected.filter((key) => !taken.has(key))).toEqual([]);
    });

    it('execute two calls of one model answer, each authorized on its own', () => {
      const both = pathWhere(paths, 'executing two calls of one model answer', (path) => path.steps.filter((step) => step.started.some((effect) => effect.src === 'executeTool')).length === 2);
      expect(both.settings?.maxToolCallsPerStep).toBe(2);
      const executed = both.steps.flatMap((step) => step.started.filter((effect) => effect.src === 'executeTool').map((effect) => (effect.input as { callId: string }).callId));
      const authorized = both.steps.flatMap((step) => step.decisions.filter((decision) => decision.stage === 'tool' && decision.verdict === 'allow').map((decision) => decision.callId));
      expect(executed).toEqual(['c0.0', 'c0.1']);
      expect(authorized).toEqual(['c0.0', 'c0.1']);
    });

    it('take a refused reviewer’s way back, then a second review of either kind', () => {
      const after = new Set(
        paths.flatMap((path) =>
          path.steps.flatMap((step, index) => (step.from === 'toolExecution.reviewing' && step.to === 'toolExecution.awaitingApproval' ? [`${path.steps[index - 1]!.review?.kind} then ${path.steps[index + 1]?.review?.kind ?? path.steps[index + 1]?.event}`] : [])),
        ),
      );
      expect([...after].filter((sequence) => /^(approve|reject) then (approve|reject)$/.test(sequence)).sort()).toEqual(['approve then approve', 'approve then reject', 'reject then approve', 'reject then reject']);
    });
  });
});

describe.each([0, 1, 2, 3])('the paths with max_tool_hops %i', (maxToolHops) => {
  const paths = enumerateRunPaths({ maxToolHops });

  it('start in ingress and end in every final state, never stuck', () => {
    expect(paths.length).toBeGreaterThan(0);
    expect(new Set(paths.map((path) => path.final))).toEqual(finals);
    // One expect for all paths: thousands of expect calls would dominate the run time.
    const malformed = paths.filter(
      (path) =>
        path.states[0] !== 'ingress' ||
        path.states.at(-1) !== path.final ||
        path.steps.length !== path.states.length - 1 ||
        path.events.join() !== path.steps.map((step) => step.event).join() ||
        path.steps.some((step, index) => step.from !== path.states[index] || step.to !== path.states[index + 1]),
    );
    expect(malformed.slice(0, 5).map((path) => joined(path.states))).toEqual([]);
  });

  it.each<[string, PathOptions]>([
    ['the default settings', {}],
    ['precheck_required: false', { precheckRequired: false }],
    ['background updates off', { backgroundUpdates: false }],
  ])('keep every policy invariant under %s', (_label, options) => {
    const report = checkPolicyCoverage({ maxToolHops, ...options });
    // The first few are enough to read; the count says how many there are.
    expect(report.violations.slice(0, 5).map((violation) => `${violation.rule}: ${violation.detail} on ${joined(violation.path.states)}`)).toEqual([]);
    expect(report.violations).toHaveLength(0);
    expect(report.ok).toBe(true);
    expect(report.paths).toBeGreaterThan(0);
    if (Object.keys(options).length === 0) expect(report.paths).toBe(paths.length);
  });

  it('unroll the tool loop exactly to the hop budget', () => {
    const counts = paths.map(loopCounts);
    const most = (numbers: number[]) => numbers.reduce((left, right) => Math.max(left, right), 0);
    expect(most(counts.map((count) => count.modelSteps))).toBe(maxToolHops + 1);
    expect(most(counts.map((count) => count.toolRounds))).toBe(maxToolHops);
    expect(paths.filter((path) => path.steps.some((step) => step.hops > maxToolHops)).length).toBe(0);
  });

  it('fail a run whose model asks for a tool once the hops are spent', () => {
    const spent = pathWhere(paths, 'asking for a tool after the last hop', (path) => {
      const last = path.steps.at(-1)!;
      return path.final === 'failed' && last.from === 'modelStep' && last.event === 'callModel:tool' && last.hops === maxToolHops;
    });
    expect(loopCounts(spent).modelSteps).toBe(maxToolHops + 1);
    // …and no path lets the model's tool request through at that hop.
    const overBudget = paths.filter((path) => path.steps.some((step) => step.from === 'modelStep' && step.hops === maxToolHops && step.to.startsWith('toolExecution')));
    expect(overBudget.slice(0, 5).map((path) => joined(path.states))).toEqual([]);
  });
});

describe('the paths that must exist', () => {
  const paths = enumerateRunPaths({ maxToolHops: 2 });

  it.each<[string, string[], string?]>([
    ['a precheck deny', ['ingress', 'policy', 'denied']],
    ['a bad request', ['ingress', 'failed']],
    ['a policy failure (fail closed)', ['ingress', 'policy', 'failed']],
    ['a plain answer', ['ingress', 'policy', 'retrieval', 'modelStep', 'assembly', 'background.authorizing', 'background.queueing', 'completed']],
    ['an output deny', ['ingress', 'policy', 'retrieval', 'modelStep', 'assembly', 'denied']],
  ])('%s', (_label, states) => {
    expect(paths.map((path) => joined(path.states))).toContain(joined(states));
  });

  it('an approved call that executes', () => {
    const approved = pathWhere(paths, 'through an approval into execution', (path) =>
      passesThrough(path, 'toolExecution.authorizing', 'toolExecution.awaitingApproval', 'toolExecution.reviewing', 'toolExecution.executing'),
    );
    expect(approved.events).toContain('tool.approve');
  });

  it('a rejected call that goes back to the model without executing', () => {
    const rejected = pathWhere(
      paths,
      'through a rejection back to the model',
      (path) => passesThrough(path, 'toolExecution.awaitingApproval', 'toolExecution.reviewing', 'modelStep') && !path.states.includes('toolExecution.executing'),
    );
    expect(rejected.events).toContain('tool.reject');
  });

  it('a parked call that is cancelled', () => {
    pathWhere(paths, 'cancelled while parked', (path) => passesThrough(path, 'toolExecution.awaitingApproval', 'cancelled'));
  });

  it('a denied call that goes back to the model', () => {
    const denied = pathWhere(paths, 'from a tool deny back to the model', (path) =>
      path.steps.some((step) => step.from === 'toolExecution.authorizing' && step.to === 'modelStep' && step.verdict === 'deny'),
    );
    expect(denied.final).toBeDefined();
  });

  it('an invalid call (unknown tool) answered to the model without policy or execution', () => {
    pathWhere(paths, 'from modelStep straight back to modelStep', (path) =>
      path.steps.some((step) => step.from === 'modelStep' && step.to === 'modelStep' && step.event === 'callModel:unknownTool'),
    );
  });

  it('a recall failure that degrades instead of failing', () => {
    const degraded = pathWhere(paths, 'from a recall failure on to the model', (path) =>
      path.steps.some((step) => step.from === 'retrieval' && step.to === 'modelStep' && step.event === 'recallMemory:error'),
    );
    expect(degraded.final).toBeDefined();
    const atRetrieval = walkSamples({}, [
      (event) => event.type === 'xstate.done.actor.acceptRequest',
      (event) => (event as unknown as { output?: { verdict?: string } }).output?.verdict === 'allow',
    ]);
    const failure = sampleEventsFor(atRetrieval).find((event) => event.type === 'xstate.error.actor.recallMemory')!;
    const next = getNextSnapshot(runMachine, atRetrieval, failure as never);
    expect(stateKey(next.value)).toBe('modelStep');
    expect(next.context.error).toBeNull();
    expect(next.context.warnings).toHaveLength(1);
  });

  it('a write-back deny that still completes', () => {
    pathWhere(paths, 'completing after a memory.write deny', (path) =>
      path.steps.some((step) => step.from === 'background.authorizing' && step.to === 'completed' && step.verdict === 'deny'),
    );
  });

  it('a default deny at precheck passes only when precheck_required is false', () => {
    const defaultPass = (path: RunPath) => path.steps.some((step) => step.from === 'policy' && step.to === 'retrieval' && step.verdict !== 'allow');
    expect(paths.some(defaultPass)).toBe(false);
    const lenient = enumerateRunPaths({ maxToolHops: 1, precheckRequired: false });
    const passed = pathWhere(lenient, 'past a default deny', defaultPass);
    expect(passed.events[1]).toBe('checkPrecheck:deny(default)');
    // An explicit deny still denies.
    expect(lenient.some((path) => path.steps.some((step) => step.from === 'policy' && step.to === 'retrieval' && step.event === 'checkPrecheck:deny'))).toBe(false);
  });

  it('no background step when background updates are off', () => {
    const quiet = enumerateRunPaths({ maxToolHops: 1, backgroundUpdates: false });
    expect(quiet.some((path) => path.states.some((state) => state.startsWith('background')))).toBe(false);
    pathWhere(quiet, 'from assembly straight to completed', (path) => passesThrough(path, 'assembly', 'completed'));
  });
});

describe('the enumeration', () => {
  it('is deterministic', () => {
    const first = enumerateRunPaths({ maxToolHops: 2 });
    const second = enumerateRunPaths({ maxToolHops: 2 });
    expect(second.map((path) => joined(path.states))).toEqual(first.map((path) => joined(path.states)));
    expect(second.map((path) => path.events)).toEqual(first.map((path) => path.events));
  });

  // getSimplePaths walks every simple path of the whole graph: seconds alone, longer beside the cluster test's processes.
  it.each([0, 1])('finds the state sequences getSimplePaths finds, with max_tool_hops %i', { timeout: 180_000 }, (maxToolHops) => {
    const oracle = simplePathStates({ maxToolHops });
    expect(oracle.endings).toEqual(new Set(['"completed"', '"denied"', '"failed"', '"cancelled"']));
    expect(new Set(enumerateRunPaths({ maxToolHops }).map((path) => joined(path.states)))).toEqual(oracle.sequences);
  });
});

describe('too many hops to walk', () => {
  it('stops with an error that says to check at fewer hops, rather than running out of memory', () => {
    expect(() => enumerateRunPaths({ maxToolHops: 8 })).toThrow(/more than 200,000 paths at max_tool_hops 8.*smaller --max-tool-hops than 8, which/);
  });

  it('refuses options it does not know or cannot walk, rather than walking the defaults', () => {
    expect(() => enumerateRunPaths({ maxToolHop: 2 } as never)).toThrow('paths: unknown option "maxToolHop"; did you mean "maxToolHops"?');
    expect(() => checkPolicyCoverage({ maxToolHops: -1 })).toThrow('paths: maxToolHops must be a whole number from 0 to 50 (got -1)');
    expect(() => enumerateRunPaths({ maxToolHops: 1.5 })).toThrow('paths: maxToolHops must be a whole number from 0 to 50 (got 1.5)');
    expect(() => enumerateRunPaths({ maxToolCallsPerStep: 0 })).toThrow('paths: maxToolCallsPerStep must be a whole number from 1 to 64 (got 0)');
    expect(() => enumerateRunPaths({ variety: 'no' } as never)).toThrow('paths: variety must be true or false (got "no")');
    expect(() => enumerateRunPaths({ machine: {} } as never)).toThrow('paths: machine must be a state machine');
    expect(() => enumerateRunPaths({ samples: [{}] } as never)).toThrow('paths: samples must be a list of events, each with a type');
  });
});
