import { describe, expect, it } from 'vitest';
import { getNextSnapshot } from 'xstate';
import { getStateNodes } from 'xstate/graph';
import { answers } from '../../machines/run/requests.js';
import { runMachine } from '../../machines/run/machine.js';
import { checkPath, checkPolicyCoverage, type CoverageRule } from '../../src/verification/coverage.js';
import {
  enumerateRunPaths,
  sampledEventTypes,
  sampleEventsFor,
  stateKey,
  type PathOptions,
  type PathStep,
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

/** A copy of `path` whose first step that `where` accepts is changed by `change`. */
function mutated(path: RunPath, where: (step: PathStep) => boolean, change: Partial<PathStep>): RunPath {
  const copy = structuredClone(path);
  const index = copy.steps.findIndex(where);
  if (index === -1) throw new Error('the path has no such step to mutate');
  copy.steps[index] = { ...copy.steps[index]!, ...change };
  copy.events = copy.steps.map((step) => step.event);
  return copy;
}

const rulesOf = (path: RunPath, options?: { precheckRequired?: boolean }): CoverageRule[] => [...new Set(checkPath(path, options).map((violation) => violation.rule))];

/** How often a path enters modelStep, and how often it enters the tool loop from outside it. */
function loopCounts(path: RunPath): { modelSteps: number; toolRounds: number } {
  let toolRounds = 0;
  path.states.forEach((state, index) => {
    if (state.startsWith('toolExecution.') && !path.states[index - 1]?.startsWith('toolExecution.')) toolRounds++;
  });
  return { modelSteps: path.states.filter((state) => state === 'modelStep').length, toolRounds };
}

describe('the sample events', () => {
  it('has a sample for every event the chart handles', () => {
    const sampled = sampledEventTypes();
    expect(runMachine.events.filter((type) => !sampled.has(type))).toEqual([]);
  });

  it('samples nothing the chart does not handle', () => {
    const handled = new Set<string>(runMachine.events);
    expect([...sampledEventTypes()].filter((type) => !handled.has(type))).toEqual([]);
  });

  it('invokes two actors for the life of the run, and samples both answers of every layer request', () => {
    const sampled = sampledEventTypes();
    const invoked = invokedActors();
    expect(invoked).toEqual([
      { id: 'telemetry', src: 'recordTelemetry', state: 'run' },
      // Style: an invoked actor uses one verb phrase as both id and src.
      { id: 'callLayers', src: 'callLayers', state: 'run' },
    ]);
    for (const [request, answer] of Object.entries(answers)) {
      for (const type of [answer.done, answer.failed]) {
        expect(runMachine.events, `${request} → ${type}`).toContain(type);
        expect(sampled.has(type), `sample of ${type}`).toBe(true);
      }
    }
    // Neither long-lived actor ends the run: the chart handles no outcome of theirs.
    expect(runMachine.events.filter((type) => type.startsWith('xstate.'))).toEqual([]);
  });

  it('sends the request of every requesting state again on run.resume, and only there', () => {
    const requesting = [runMachine.root, ...getStateNodes(runMachine.root)].filter((node) =>
      node.entry.some((action) => (action as { type?: string }).type === 'request'),
    );
    expect(requesting.map((node) => node.path.join('.')).sort()).toEqual(
      [
        'assembly',
        'background.authorizing',
        'background.queueing',
        'ingress',
        'modelStep',
        'policy',
        'retrieval',
        'toolExecution.authorizing',
        'toolExecution.awaitingApproval',
        'toolExecution.executing',
        'toolExecution.reviewing',
      ].sort(),
    );
    for (const node of requesting) {
      const resume = node.on['run.resume']?.[0];
      expect(resume?.target, node.id).toBeUndefined();
      expect(resume?.actions.map((action) => (action as { type?: string }).type), node.id).toEqual(['request']);
    }
  });

  it('offers policy every verdict, including the default deny', () => {
    const atPolicy = walkSamples({}, [(event) => event.type === 'request.accepted']);
    expect(stateKey(atPolicy.value)).toBe('policy');
    const decisions = sampleEventsFor(atPolicy)
      .filter((event) => event.type === 'policy.decided')
      .map((event) => (event as unknown as { output: { verdict: string; ruleId: string } }).output);
    expect(new Set(decisions.map((decision) => decision.verdict))).toEqual(new Set(['allow', 'deny', 'require_approval']));
    expect(decisions.some((decision) => decision.verdict === 'deny' && decision.ruleId === 'default-deny')).toBe(true);
  });

  it('offers the model an answer for every branch of modelStep', () => {
    const atModel = walkSamples({ maxToolHops: 1 }, [
      (event) => event.type === 'request.accepted',
      (event) => (event as unknown as { output?: { verdict?: string } }).output?.verdict === 'allow',
      (event) => event.type === 'memory.recalled',
    ]);
    expect(stateKey(atModel.value)).toBe('modelStep');
    const reached = new Map<string, string | null>();
    for (const event of sampleEventsFor(atModel).filter((event) => event.type === 'model.answered')) {
      const next = getNextSnapshot(runMachine, atModel, event as never);
      reached.set(`${stateKey(next.value)}:${next.context.error?.kind ?? '-'}`, next.context.error?.message ?? null);
    }
    expect(new Set(reached.keys())).toEqual(
      new Set(['assembly:-', 'toolExecution.authorizing:-', 'modelStep:-', 'failed:budget-exceeded', 'failed:model-behavior']),
    );
    // The budget failures are two different budgets: tokens and tool calls per step.
    const budgetEvents = sampleEventsFor(atModel)
      .filter((event) => event.type === 'model.answered')
      .map((event) => getNextSnapshot(runMachine, atModel, event as never).context.error?.message ?? '')
      .filter((message) => message.includes('budget') || message.includes('max_tool_calls_per_step'));
    expect(budgetEvents).toHaveLength(2);
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
      return path.final === 'failed' && last.from === 'modelStep' && last.event === 'model.answered:tool' && last.hops === maxToolHops;
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
      path.steps.some((step) => step.from === 'modelStep' && step.to === 'modelStep' && step.event === 'model.answered:unknownTool'),
    );
  });

  it('a recall failure that degrades instead of failing', () => {
    // The walk merges a recall failure with a recall (same next state): check the step itself.
    const atRetrieval = walkSamples({}, [
      (event) => event.type === 'request.accepted',
      (event) => (event as unknown as { output?: { verdict?: string } }).output?.verdict === 'allow',
    ]);
    expect(stateKey(atRetrieval.value)).toBe('retrieval');
    const failure = sampleEventsFor(atRetrieval).find((event) => event.type === 'memory.failed')!;
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
    expect(passed.events[1]).toBe('policy.decided:deny(default)');
    // An explicit deny still denies.
    expect(lenient.some((path) => path.steps.some((step) => step.from === 'policy' && step.to === 'retrieval' && step.event === 'policy.decided:deny'))).toBe(false);
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

  it.each([0, 1])('finds the state sequences getSimplePaths finds, with max_tool_hops %i', (maxToolHops) => {
    const oracle = simplePathStates({ maxToolHops });
    expect(oracle.endings).toEqual(new Set(['"completed"', '"denied"', '"failed"', '"cancelled"']));
    expect(new Set(enumerateRunPaths({ maxToolHops }).map((path) => joined(path.states)))).toEqual(oracle.sequences);
  });
});

describe('checkPath', () => {
  const paths = enumerateRunPaths({ maxToolHops: 1 });
  const approved = pathWhere(paths, 'approved and executed', (path) =>
    passesThrough(path, 'toolExecution.awaitingApproval', 'toolExecution.reviewing', 'toolExecution.executing'),
  );
  const allowed = pathWhere(paths, 'allowed, executed and completed with a write-back', (path) =>
    passesThrough(path, 'toolExecution.authorizing', 'toolExecution.executing') && path.states.includes('background.queueing') && path.final === 'completed',
  );
  const parked = pathWhere(paths, 'parked, then cancelled', (path) => passesThrough(path, 'toolExecution.authorizing', 'toolExecution.awaitingApproval', 'cancelled'));

  it('passes the paths it is mutated from', () => {
    for (const path of [approved, allowed, parked]) expect(checkPath(path)).toEqual([]);
  });

  it('reports precheck-before-effects when the model is reached after a precheck deny', () => {
    const bad = mutated(allowed, (step) => step.from === 'policy', { verdict: 'deny', event: 'policy.decided:deny' });
    expect(rulesOf(bad)).toEqual(['precheck-before-effects']);
  });

  it('lets a default deny through only when precheck is not required', () => {
    const lenient = enumerateRunPaths({ maxToolHops: 0, precheckRequired: false });
    const passed = pathWhere(lenient, 'past a default deny', (path) => path.events[1] === 'policy.decided:deny(default)' && path.states.includes('modelStep'));
    expect(checkPath(passed, { precheckRequired: false })).toEqual([]);
    expect(rulesOf(passed, { precheckRequired: true })).toContain('precheck-before-effects');
  });

  it('reports tool-allow-before-execute for an execution after a tool deny', () => {
    const bad = mutated(allowed, (step) => step.from === 'toolExecution.authorizing', { verdict: 'deny', event: 'policy.decided:deny' });
    expect(rulesOf(bad)).toEqual(['tool-allow-before-execute']);
  });

  it('reports tool-allow-before-execute for an execution after a reject', () => {
    const bad = mutated(approved, (step) => step.to === 'toolExecution.reviewing', { event: 'tool.reject' });
    expect(rulesOf(bad)).toEqual(['tool-allow-before-execute']);
  });

  it('reports tool-allow-before-execute for an execution after a refused approver', () => {
    const bad = mutated(approved, (step) => step.from === 'toolExecution.reviewing', { verdict: 'deny', event: 'policy.decided:deny' });
    expect(rulesOf(bad)).toEqual(['tool-allow-before-execute']);
  });

  it('reports tool-allow-before-execute for an approval without a require_approval in front of it', () => {
    const bad = mutated(approved, (step) => step.from === 'toolExecution.authorizing', { verdict: 'allow', event: 'policy.decided:allow' });
    expect(rulesOf(bad)).toEqual(expect.arrayContaining(['tool-allow-before-execute', 'approval-before-park']));
  });

  it('reports approval-before-park for a park without a require_approval', () => {
    const bad = mutated(parked, (step) => step.to === 'toolExecution.awaitingApproval', { verdict: 'allow', event: 'policy.decided:allow' });
    expect(rulesOf(bad)).toEqual(['approval-before-park']);
    const fromElsewhere = mutated(parked, (step) => step.to === 'toolExecution.awaitingApproval', { from: 'modelStep', verdict: undefined, event: 'model.answered:tool' });
    expect(rulesOf(fromElsewhere)).toContain('approval-before-park');
  });

  it('reports output-allow-before-release for a release after an output deny', () => {
    const bad = mutated(allowed, (step) => step.from === 'assembly', { verdict: 'deny', event: 'policy.decided:deny' });
    expect(rulesOf(bad)).toEqual(['output-allow-before-release']);
  });

  it('reports memory-write-allow-before-queue for a write-back after a memory.write deny', () => {
    const bad = mutated(allowed, (step) => step.to === 'background.queueing', { verdict: 'require_approval', event: 'policy.decided:require_approval' });
    expect(rulesOf(bad)).toEqual(['memory-write-allow-before-queue']);
  });

  it('reports ends-in-final-state for a path that gets stuck', () => {
    const stuck: RunPath = { ...structuredClone(allowed), final: 'stuck' };
    expect(rulesOf(stuck)).toEqual(['ends-in-final-state']);
  });

  it('reports telemetry-sees-every-state for a state that sends no marks', () => {
    // `toolExecution.next` exists but is transient and untraced.
    const bad = structuredClone(allowed);
    bad.states.splice(5, 0, 'toolExecution.next');
    expect(rulesOf(bad)).toEqual(['telemetry-sees-every-state']);
  });

  it('reports telemetry-sees-every-state for a state the chart does not have', () => {
    const bad = structuredClone(allowed);
    bad.states.splice(3, 0, 'noSuchState');
    expect(rulesOf(bad)).toEqual(['telemetry-sees-every-state']);
  });

  it('reports every broken rule of one path at once', () => {
    let bad = mutated(allowed, (step) => step.from === 'policy', { verdict: 'deny' });
    bad = mutated(bad, (step) => step.from === 'toolExecution.authorizing', { verdict: 'deny' });
    bad = mutated(bad, (step) => step.from === 'assembly', { verdict: 'deny' });
    bad = mutated(bad, (step) => step.to === 'background.queueing', { verdict: 'deny' });
    bad.final = 'stuck';
    expect(new Set(rulesOf(bad))).toEqual(
      new Set(['precheck-before-effects', 'tool-allow-before-execute', 'output-allow-before-release', 'memory-write-allow-before-queue', 'ends-in-final-state']),
    );
  });
});

describe('too many hops to walk', () => {
  it('stops with an error that says to check at fewer hops, rather than running out of memory', () => {
    expect(() => enumerateRunPaths({ maxToolHops: 8 })).toThrow(/more than 200,000 paths at max_tool_hops 8.*smaller --max-tool-hops/);
  });
});
