import { describe, expect, it } from 'vitest';
import { not, type AnyStateMachine } from 'xstate';
import { runMachine } from '../../machines/run/machine.js';
import { modelRequestFor } from '../../machines/run/plan.js';
import { decisionRecord, markDecision, policyScope, traced } from '../../machines/run/setup.js';
import type { RunContext } from '../../machines/run/types.js';
import type { ModelResponse } from '../../src/models/contract.js';
import type { PolicyDecision } from '../../src/policy/contract.js';
import { checkPolicyCoverage, type CoverageReport, type CoverageRule } from '../../src/verification/coverage.js';
import { enumerateRunPaths, untakenTransitions } from '../../src/verification/paths.js';
import { chartDefinition, chartFrom, marksOf, mutated, onDone, stateAt, type StateDefinition, type TransitionDefinition } from './mutate.js';

type Context = { context: RunContext };
type Done<Output> = Context & { event: { output: Output } };
const current = (context: RunContext) => context.calls[context.cursor]!;

/** The rules a report names, each once. */
const rulesOf = (report: CoverageReport) => [...new Set(report.violations.map((violation) => violation.rule))].sort();

/** The ingress answer goes to `state` instead of `policy`: a state put in front of the precheck. */
function beforePolicy(chart: StateDefinition, state: string, definition: StateDefinition) {
  (stateAt(chart, 'ingress').invoke!.onDone as TransitionDefinition).target = state;
  chart.states![state] = definition;
}

/** Renames `policy` to `precheck`, with its marks: a rename that keeps the behaviour. */
function renamePolicy(chart: StateDefinition) {
  const policy = chart.states!.policy!;
  delete chart.states!.policy;
  chart.states!.precheck = Object.assign(policy, marksOf('precheck'));
  (stateAt(chart, 'ingress').invoke!.onDone as TransitionDefinition).target = 'precheck';
}

/** Renames `toolExecution.authorizing` to `toolExecution.checking`, with its marks. */
function renameAuthorizing(chart: StateDefinition) {
  const tool = stateAt(chart, 'toolExecution');
  const authorizing = tool.states!.authorizing!;
  delete tool.states!.authorizing;
  tool.states!.checking = Object.assign(authorizing, marksOf('toolExecution.checking'));
  stateAt(chart, 'toolExecution.next').always![2]!.target = 'checking';
}

interface Mutation {
  name: string;
  /** The rule that must name the mistake. */
  rule: CoverageRule;
  machine: () => AnyStateMachine;
}

/** Realistic mistakes, each applied alone to a copy of the chart. */
const mutations: Mutation[] = [
  {
    name: 'the tool stage inverts isAllowed (a deny executes)',
    rule: 'tool-allow-before-execute',
    machine: () =>
      mutated((chart) => {
        const allow = onDone(stateAt(chart, 'toolExecution.authorizing'))[0]!;
        allow.guard = not(allow.guard as never);
      }),
  },
  {
    name: 'a precheck deny is routed on to retrieval',
    rule: 'precheck-before-effects',
    machine: () => mutated((chart) => void (onDone(stateAt(chart, 'policy'))[1]!.target = 'retrieval')),
  },
  {
    name: 'a precheck failure is routed on to retrieval (fail open)',
    rule: 'precheck-before-effects',
    machine: () => mutated((chart) => void (stateAt(chart, 'policy').invoke!.onError = { target: 'retrieval' })),
  },
  {
    name: 'an output deny is routed on to background',
    rule: 'output-allow-before-release',
    machine: () => mutated((chart) => void (onDone(stateAt(chart, 'assembly'))[1]!.target = 'background')),
  },
  {
    name: 'an output check that fails releases the answer',
    rule: 'output-allow-before-release',
    machine: () => mutated((chart) => void (stateAt(chart, 'assembly').invoke!.onError = { target: 'background' })),
  },
  {
    name: 'an approval is not bound to its arguments (isForCurrentCall ignores argsHash)',
    rule: 'approval-bound-to-call',
    machine: () => runMachine.provide({ guards: { isForCurrentCall: ({ context }, params: { callId: string }) => context.calls[context.cursor]?.callId === params.callId } }),
  },
  {
    name: 'an approval is not bound to its call (isForCurrentCall ignores callId)',
    rule: 'approval-bound-to-call',
    machine: () =>
      runMachine.provide({
        guards: {
          isForCurrentCall: ({ context }, params: { callId: string; argsHash?: string }) => params.argsHash === undefined || context.calls[context.cursor]?.argsHash === params.argsHash,
        },
      }),
  },
  {
    name: 'an approval need not name its reviewer (isForCurrentCall ignores principalId)',
    rule: 'approval-bound-to-call',
    machine: () =>
      runMachine.provide({
        guards: {
          isForCurrentCall: ({ context }, params: { callId: string; argsHash?: string }) =>
            context.calls[context.cursor]?.callId === params.callId && (params.argsHash === undefined || context.calls[context.cursor]?.argsHash === params.argsHash),
        },
      }),
  },
  {
    name: 'a rejected call executes (isApproval inverted)',
    rule: 'tool-allow-before-execute',
    machine: () => mutated((chart) => void (stateAt(chart, 'toolExecution.reviewed').always![0]!.guard = not('isApproval'))),
  },
  {
    name: 'a call whose reviewer policy refused executes',
    rule: 'tool-allow-before-execute',
    machine: () => mutated((chart) => void (onDone(stateAt(chart, 'toolExecution.reviewing'))[1]!.target = 'reviewed')),
  },
  {
    name: 'the approval is asked for the run’s principal, not the reviewer',
    rule: 'approval-bound-to-call',
    machine: () =>
      mutated((chart) => {
        stateAt(chart, 'toolExecution.reviewing').invoke!.input = ({ context }: Context) => ({
          stage: 'approval' as const,
          ...policyScope(context),
          capability: current(context).capability!,
          version: current(context).version!,
          callId: current(context).callId,
        });
      }),
  },
  {
    name: 'a final answer goes straight to background (output released before its check)',
    rule: 'output-allow-before-release',
    machine: () => mutated((chart) => void (onDone(stateAt(chart, 'modelStep')).at(-1)!.target = 'background')),
  },
  {
    name: 'a final answer completes the run directly',
    rule: 'output-allow-before-release',
    machine: () => mutated((chart) => void (onDone(stateAt(chart, 'modelStep')).at(-1)!.target = 'completed')),
  },
  {
    name: 'background tasks are queued before their memory.write decision (authorizing skipped)',
    rule: 'memory-write-allow-before-queue',
    machine: () => mutated((chart) => void (stateAt(chart, 'background.deciding').always![1]!.target = 'queueing')),
  },
  {
    name: 'a new warmup state recalls memory before the precheck',
    rule: 'precheck-before-effects',
    machine: () =>
      mutated((chart) =>
        beforePolicy(chart, 'warmup', {
          ...marksOf('warmup'),
          invoke: {
            id: 'warmMemory',
            src: 'recallMemory',
            input: ({ context }: Context) => ({ tenantId: context.accepted.tenantId, principalId: context.accepted.principalId, query: context.accepted.input, limit: 5 }),
            onDone: { target: 'policy' },
            onError: { target: 'policy' },
          },
        }),
      ),
  },
  {
    name: 'a new warmup state calls the model before the precheck',
    rule: 'precheck-before-effects',
    machine: () =>
      mutated((chart) =>
        beforePolicy(chart, 'warmup', {
          ...marksOf('warmup'),
          invoke: {
            id: 'warmModel',
            src: 'callModel',
            input: ({ context }: Context) => Object.assign({ runId: context.runId }, modelRequestFor(context)),
            onDone: { target: 'policy' },
            onError: { target: 'policy' },
          },
        }),
      ),
  },
  {
    name: 'the renamed precheck state routes its deny on',
    rule: 'precheck-before-effects',
    machine: () =>
      mutated((chart) => {
        renamePolicy(chart);
        onDone(stateAt(chart, 'precheck'))[1]!.target = 'retrieval';
      }),
  },
  {
    name: 'the renamed tool authorization inverts isAllowed',
    rule: 'tool-allow-before-execute',
    machine: () =>
      mutated((chart) => {
        renameAuthorizing(chart);
        const allow = onDone(stateAt(chart, 'toolExecution.checking'))[0]!;
        allow.guard = not(allow.guard as never);
      }),
  },
  {
    name: 'the precheck invoke asks policy stage output',
    rule: 'decision-answers-its-request',
    machine: () =>
      mutated((chart) => void (stateAt(chart, 'policy').invoke!.input = ({ context }: Context) => ({ stage: 'output' as const, ...policyScope(context) }))),
  },
  {
    name: 'tool.approve records an approval allow without asking policy',
    rule: 'decision-answers-its-request',
    machine: () =>
      mutated((chart) => {
        const approve = stateAt(chart, 'toolExecution.awaitingApproval').on!['tool.approve'] as TransitionDefinition;
        approve.target = 'reviewed';
        approve.actions = [
          approve.actions,
          {
            type: 'recordDecision',
            params: ({ context, event }: Context & { event: { principalId: string } }) => ({
              decision: decisionRecord(context, 'approval', { verdict: 'allow', ruleId: 'named-approver', reason: 'approved' }, { callId: current(context).callId, principalId: event.principalId }),
            }),
          },
          markDecision,
        ];
      }),
  },
  {
    name: 'a precheck deny is recorded as an allow',
    rule: 'decision-answers-its-request',
    machine: () =>
      mutated((chart) => {
        const pass = onDone(stateAt(chart, 'policy'))[0]!;
        delete pass.guard;
        pass.actions = [
          { type: 'recordDecision', params: ({ context, event }: Done<PolicyDecision>) => ({ decision: decisionRecord(context, 'precheck', Object.assign({}, event.output, { verdict: 'allow' as const })) }) },
          markDecision,
        ];
      }),
  },
  {
    name: 'the tool authorization asks about the step’s first call, not the current one',
    // Shown by the hop of variety, the one walk with two calls a step.
    rule: 'tool-allow-before-execute',
    machine: () =>
      mutated((chart) => {
        stateAt(chart, 'toolExecution.authorizing').invoke!.input = ({ context }: Context) => ({
          stage: 'tool' as const,
          ...policyScope(context),
          capability: context.calls[0]!.capability!,
          version: context.calls[0]!.version!,
          callId: current(context).callId,
        });
      }),
  },
  {
    name: 'the hop budget is off by one (asksForToolsPastHopBudget uses >)',
    rule: 'hop-budget',
    machine: () =>
      runMachine.provide({
        guards: { asksForToolsPastHopBudget: ({ context }, params: { response: ModelResponse }) => params.response.toolCalls.length > 0 && context.hops > context.settings.maxToolHops },
      }),
  },
  {
    name: 'the hop budget is gone (asksForToolsPastHopBudget never holds): the walk still ends',
    rule: 'hop-budget',
    machine: () => runMachine.provide({ guards: { asksForToolsPastHopBudget: () => false } }),
  },
  {
    name: 'the call budget is off by one (one call more than max_tool_calls_per_step)',
    rule: 'call-budget',
    machine: () =>
      runMachine.provide({
        guards: { asksForTooManyTools: ({ context }, params: { response: ModelResponse }) => params.response.toolCalls.length > context.settings.maxToolCallsPerStep + 1 },
      }),
  },
  {
    name: 'retrieval has no telemetry marks (its traced entry and exit removed)',
    rule: 'telemetry-sees-every-state',
    machine: () =>
      mutated((chart) => {
        const retrieval = stateAt(chart, 'retrieval');
        delete retrieval.entry;
        delete retrieval.exit;
      }),
  },
  {
    name: 'retrieval marks itself as policy (a copied traced call)',
    rule: 'telemetry-sees-every-state',
    machine: () => mutated((chart) => void Object.assign(stateAt(chart, 'retrieval'), traced('policy'))),
  },
  {
    name: 'a tool decision is recorded without its telemetry mark',
    rule: 'telemetry-sees-every-state',
    machine: () =>
      mutated((chart) => {
        const allow = onDone(stateAt(chart, 'toolExecution.authorizing'))[0]!;
        allow.actions = (allow.actions as { type?: string }[]).filter((action) => action.type !== 'mark');
      }),
  },
  {
    name: 'the root telemetry invoke is removed',
    rule: 'telemetry-sees-every-state',
    machine: () => mutated((chart) => void delete chart.invoke),
  },
  {
    name: 'a deny parks the call for approval (the needsApproval guard dropped, isAllowed ordering trusted)',
    rule: 'approval-before-park',
    machine: () => mutated((chart) => void delete onDone(stateAt(chart, 'toolExecution.authorizing'))[1]!.guard),
  },
  {
    name: 'a require_approval executes straight from authorizing',
    rule: 'tool-allow-before-execute',
    machine: () => mutated((chart) => void (onDone(stateAt(chart, 'toolExecution.authorizing'))[1]!.target = 'executing')),
  },
  {
    name: 'a recall failure goes to a new state with no way on (stuck)',
    rule: 'ends-in-final-state',
    machine: () =>
      mutated((chart) => {
        stateAt(chart, 'retrieval').invoke!.onError!.target = 'recallFailed';
        chart.states!.recallFailed = { ...marksOf('recallFailed') };
      }),
  },
];

describe('the real chart', () => {
  it('keeps every invariant at max_tool_hops 2, as itself and as a copy of its definition', () => {
    expect(rulesOf(checkPolicyCoverage({ maxToolHops: 2 }))).toEqual([]);
    const copy = checkPolicyCoverage({ machine: chartFrom(chartDefinition()), maxToolHops: 2 });
    expect(rulesOf(copy)).toEqual([]);
    expect(copy.paths).toBe(checkPolicyCoverage({ maxToolHops: 2 }).paths);
  });

  it.each([
    ['policy renamed precheck', renamePolicy],
    ['toolExecution.authorizing renamed checking', renameAuthorizing],
  ])('keeps every invariant with %s (a rename that keeps the behaviour)', (_name, rename) => {
    const report = checkPolicyCoverage({ machine: mutated(rename), maxToolHops: 2 });
    expect(report.violations.slice(0, 3).map((violation) => `${violation.rule}: ${violation.detail}`)).toEqual([]);
    expect(report.paths).toBe(checkPolicyCoverage({ maxToolHops: 2 }).paths);
  });
});

describe('a mistake in a copy of the chart', () => {
  it('is at least fifteen kinds of mistake', () => {
    expect(mutations.length).toBeGreaterThanOrEqual(15);
    expect(new Set(mutations.map((mutation) => mutation.rule)).size).toBe(11);
  });

  it('is checked on the default walk, which starts with the loop walk’s paths', () => {
    const loop = enumerateRunPaths({ maxToolHops: 1, variety: false });
    const all = enumerateRunPaths({ maxToolHops: 1 });
    expect(all.length).toBeGreaterThan(loop.length);
    expect(all.slice(0, loop.length).map((path) => path.events.join())).toEqual(loop.map((path) => path.events.join()));
  });

  it.each(mutations.map((mutation) => [mutation.name, mutation] as const))('%s: is caught by name', (_name, mutation) => {
    // What `runchart paths --check --max-tool-hops 1` runs: the loop and the hop of variety.
    const report = checkPolicyCoverage({ machine: mutation.machine(), maxToolHops: 1 });
    expect(report.ok).toBe(false);
    expect(rulesOf(report)).toContain(mutation.rule);
  });
});

describe('transition coverage', () => {
  /** The transitions no enumerated path takes, over the default settings, precheck_required: false and background updates off. */
  const untaken = (machine: AnyStateMachine, maxToolHops: number) =>
    untakenTransitions(machine, [{}, { precheckRequired: false }, { backgroundUpdates: false }].flatMap((options) => enumerateRunPaths({ machine, maxToolHops, ...options })));

  it('takes every transition of the chart on some enumerated path', () => {
    expect(untaken(runMachine, 2)).toEqual([]);
  });

  it('fails for a branch no sample event reaches, though its event type is sampled', () => {
    const machine = mutated((chart) => {
      const candidates = onDone(stateAt(chart, 'modelStep'));
      candidates.unshift({ guard: ({ event }: Done<ModelResponse>) => event.output.finishReason === 'max_tokens', target: 'failed' });
      stateAt(chart, 'modelStep').invoke!.onDone = candidates;
    });
    expect(untaken(machine, 1).map((transition) => transition.label)).toEqual(['modelStep —xstate.done.actor.callModel→ failed']);
  });
});
