import type { AnyStateMachine } from 'xstate';
import { getStateNodes } from 'xstate/graph';
import { runMachine } from '../../machines/run/machine.js';
import type { DecisionRecord, PolicyStage } from '../policy/contract.js';
import { enumerateRunPaths, pathSettings, type PathEffect, type PathOptions, type PathStep, type RunPath } from './paths.js';

/** The invariants every path must keep (DESIGN §9), each over effects read from the chart. */
export type CoverageRule =
  | 'precheck-before-effects'
  | 'decision-answers-its-request'
  | 'tool-allow-before-execute'
  | 'approval-bound-to-call'
  | 'approval-before-park'
  | 'output-allow-before-release'
  | 'memory-write-allow-before-queue'
  | 'hop-budget'
  | 'call-budget'
  | 'ends-in-final-state'
  | 'telemetry-sees-every-state';

export interface CoverageViolation {
  path: RunPath;
  rule: CoverageRule;
  detail: string;
}

export interface CoverageReport {
  ok: boolean;
  paths: number;
  violations: CoverageViolation[];
}

/** The kinds of layer call that are effects, by `src`: none may start before the precheck allows the run. */
export const effectSources = {
  recallMemory: 'memory recall',
  callModel: 'model call',
  executeTool: 'tool execution',
  awaitApproval: 'approval wait',
  enqueueBackground: 'background enqueue',
} as const satisfies Record<string, string>;

type CheckOptions = Pick<PathOptions, 'precheckRequired' | 'maxToolHops' | 'maxToolCallsPerStep' | 'machine'>;

const stageOf = (effect: PathEffect | undefined): PolicyStage | undefined =>
  effect?.src === 'evaluatePolicy' ? ((effect.input as { stage?: PolicyStage } | undefined)?.stage ?? undefined) : undefined;
const callIdOf = (input: unknown): string | undefined => (input as { callId?: string } | undefined)?.callId;

/**
 * Checks the invariants on one path; returns the broken ones. Effects are the layer calls each
 * step started (the invokes of the states it entered), decisions are what the chart recorded,
 * and each decision must answer an `evaluatePolicy` call of its own stage: so a renamed state, a
 * state of your own that calls a layer, or a decision recorded without asking cannot pass unseen.
 */
export function checkPath(path: RunPath, options: CheckOptions = {}): CoverageViolation[] {
  const settings = pathSettings(options);
  const violations: CoverageViolation[] = [];
  const broken = (rule: CoverageRule, detail: string) => violations.push({ path, rule, detail });
  const passes = (decision: DecisionRecord) => decision.verdict === 'allow' || (!settings.precheckRequired && decision.ruleId === 'default-deny');

  if (path.final === 'stuck') broken('ends-in-final-state', `the path stops in ${path.states.at(-1)}, which has no way on`);
  const untraced = untracedStates(options.machine ?? runMachine);
  for (const state of new Set(path.states)) {
    if (untraced.has(state)) broken('telemetry-sees-every-state', `${state} sends no telemetry mark on ${untraced.get(state)}`);
  }

  let precheck = false;
  /** Decisions recorded since the last model call (output and memory.write must follow the answer they release). */
  let sinceAnswer: DecisionRecord[] = [];
  /** This hop's decisions and reviews, by call id. */
  let hop = -1;
  let byCall = new Map<string, { decisions: DecisionRecord[]; review?: PathStep['review'] }>();
  let modelCalls = 0;
  let executions = 0;
  const callState = (callId: string) => {
    let entry = byCall.get(callId);
    if (!entry) byCall.set(callId, (entry = { decisions: [] }));
    return entry;
  };

  path.steps.forEach((step, index) => {
    if (step.hops !== hop) {
      hop = step.hops;
      byCall = new Map();
      executions = 0;
    }
    if (!step.telemetry) broken('telemetry-sees-every-state', `step ${index + 1} (${step.from} → ${step.to}) runs without the telemetry actor`);

    // Decisions: each answers a policy call of its own stage (and call), and is what the step's verdicts come from.
    const askedStage = stageOf(step.answered);
    for (const decision of step.decisions) {
      if (askedStage !== decision.stage) {
        broken(
          'decision-answers-its-request',
          `a ${decision.stage} decision is recorded on ${step.answered ? `the answer of ${step.answered.id} (${step.answered.src}${askedStage ? `, stage ${askedStage}` : ''})` : `${step.event}, which answers no policy call`}`,
        );
      }
      if ((decision.stage === 'tool' || decision.stage === 'approval') && decision.callId !== callIdOf(step.answered?.input)) {
        broken('decision-answers-its-request', `a ${decision.stage} decision for call ${decision.callId} answers a question about call ${callIdOf(step.answered?.input)}`);
      }
      if (decision.stage === 'precheck' && askedStage === 'precheck' && passes(decision)) precheck = true;
      if (decision.callId) callState(decision.callId).decisions.push(decision);
      sinceAnswer.push(decision);
    }
    if (step.review) callState(step.review.callId).review = step.review;

    const effects: { kind: string; effect?: PathEffect }[] = step.started
      .filter((effect) => effect.src in effectSources)
      .map((effect) => ({ kind: effectSources[effect.src as keyof typeof effectSources], effect }));
    if (step.released) effects.push({ kind: 'output release' });
    for (const { kind, effect } of effects) {
      if (!precheck) broken('precheck-before-effects', `${kind}${effect ? ` (${effect.id})` : ''} starts in ${step.to} without a precheck allow`);
      if (effect?.src === 'callModel') {
        modelCalls++;
        sinceAnswer = [];
        if (modelCalls > settings.maxToolHops + 1) broken('hop-budget', `model call ${modelCalls} starts in ${step.to}; max_tool_hops ${settings.maxToolHops} allows ${settings.maxToolHops + 1}`);
      }
      if (effect?.src === 'executeTool') {
        executions++;
        if (executions > settings.maxToolCallsPerStep) broken('call-budget', `tool execution ${executions} of hop ${step.hops}; max_tool_calls_per_step is ${settings.maxToolCallsPerStep}`);
        checkExecution(effect, step, callState, broken);
      }
      if (effect?.src === 'awaitApproval') {
        const callId = callIdOf(effect.input);
        const parked = callId !== undefined && callState(callId).decisions.some((decision) => decision.stage === 'tool' && decision.verdict === 'require_approval');
        if (!parked) broken('approval-before-park', `call ${callId ?? '(none)'} waits for approval in ${step.to} without a tool-stage require_approval for it`);
      }
      if (effect?.src === 'enqueueBackground') {
        const output = sinceAnswer.findIndex((decision) => decision.stage === 'output' && decision.verdict === 'allow');
        const write = sinceAnswer.findIndex((decision, at) => at > output && decision.stage === 'memory.write' && decision.verdict === 'allow');
        if (output === -1 || write === -1) broken('memory-write-allow-before-queue', `background tasks are queued in ${step.to} without an output allow and then a memory.write allow for the answer`);
      }
      if (kind === 'output release' && !sinceAnswer.some((decision) => decision.stage === 'output' && decision.verdict === 'allow')) {
        broken('output-allow-before-release', 'the run completes, releasing its output, without an output allow after the last model answer');
      }
    }
    if (step.from.startsWith('toolExecution') && step.to === 'modelStep' && step.hops >= settings.maxToolHops) {
      broken('hop-budget', `a tool round at hop ${step.hops} returns to the model; max_tool_hops is ${settings.maxToolHops}`);
    }
  });
  return violations;
}

/**
 * A tool execution needs, in the same hop and for the same call: a tool-stage allow; or a
 * tool-stage require_approval, then an approve that names this call (and, when it names
 * arguments, these arguments) and an approval-stage allow for its reviewer.
 */
function checkExecution(
  effect: PathEffect,
  step: PathStep,
  callState: (callId: string) => { decisions: DecisionRecord[]; review?: PathStep['review'] },
  broken: (rule: CoverageRule, detail: string) => void,
) {
  const input = effect.input as { callId?: string; argsHash?: string } | undefined;
  const callId = input?.callId;
  if (callId === undefined) return broken('tool-allow-before-execute', `a tool executes in ${step.to} for no call`);
  const { decisions, review } = callState(callId);
  const tool = decisions.filter((decision) => decision.stage === 'tool').at(-1);
  if (tool?.verdict === 'allow') return;
  if (tool?.verdict !== 'require_approval') {
    return broken('tool-allow-before-execute', `call ${callId} executes in hop ${step.hops} without a tool allow or an approval for it (its tool decision: ${tool?.verdict ?? 'none'})`);
  }
  const approval = decisions.filter((decision) => decision.stage === 'approval').at(-1);
  if (!review || review.kind !== 'approve' || approval?.verdict !== 'allow') {
    return broken('tool-allow-before-execute', `call ${callId} needs approval but executes after ${review ? `a ${review.kind}` : 'no review'}${approval ? ` and an approval ${approval.verdict}` : ''}`);
  }
  if (review.callId !== callId || (review.argsHash !== undefined && review.argsHash !== input?.argsHash)) {
    broken('approval-bound-to-call', `call ${callId} executes on an approval of ${review.callId !== callId ? `call ${review.callId}` : 'other arguments'}`);
  }
  if (approval.argsHash !== undefined && approval.argsHash !== input?.argsHash) {
    broken('approval-bound-to-call', `call ${callId} executes with other arguments than its approval recorded`);
  }
}

const untracedCache = new WeakMap<AnyStateMachine, Map<string, string>>();

/** States without an entry mark (and, unless final, an exit mark) of their own name: what telemetry would not see. */
function untracedStates(machine: AnyStateMachine): Map<string, string> {
  let untraced = untracedCache.get(machine);
  if (untraced) return untraced;
  untraced = new Map();
  const marks = (actions: readonly unknown[], kind: string, state: string) =>
    actions.some((action) => {
      const mark = (action as { params?: { mark?: { kind?: string; state?: string } } }).params?.mark;
      return (action as { type?: string }).type === 'mark' && mark?.kind === kind && mark.state === state;
    });
  for (const node of getStateNodes(machine.root)) {
    const state = node.path.join('.');
    // A transient state (one that only decides, with eventless transitions) is never rested in.
    const transient = node.always !== undefined && node.always.length > 0 && node.invoke.length === 0 && Object.keys(node.on).length === 0;
    if (transient) continue;
    const entered = marks(node.entry, 'state.enter', state);
    const left = node.type === 'final' || marks(node.exit, 'state.exit', state);
    if (!entered || !left) untraced.set(state, !entered ? 'entry' : 'exit');
  }
  untracedCache.set(machine, untraced);
  return untraced;
}

/**
 * Enumerates every path of the run chart (or of `machine`) and checks the policy invariants on
 * each: no effect without the decision in front of it, every decision asked for at its own stage,
 * the hop and call budgets, every path ends in a final state, telemetry sees every state.
 * @example
 * const { ok, paths, violations } = checkPolicyCoverage({ maxToolHops: 3 });
 */
export function checkPolicyCoverage(options: PathOptions = {}): CoverageReport {
  const paths = enumerateRunPaths(options);
  const violations = paths.flatMap((path) => checkPath(path, options));
  return { ok: violations.length === 0, paths: paths.length, violations };
}

export { effectSources as effects };
