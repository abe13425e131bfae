import type { AnyStateMachine } from 'xstate';
import { getStateNodes } from 'xstate/graph';
import { runMachine } from '../../machines/run/machine.js';
import type { DecisionRecord, PolicyStage } from '../policy/contract.js';
import { hashArguments } from '../execution/contract.js';
import { enumerateRunPaths, pathSettings, type PathEffect, type PathOptions, type PathStep, type RunPath } from './paths.js';

/**
 * The invariants every path must keep (DESIGN §9), each over effects read from the chart:
 * - `precheck-before-effects`: no memory recall, model call, approval wait, tool execution,
 *   background enqueue or output release before a precheck allow (a default deny passes only
 *   with `precheck_required: false`);
 * - `decision-answers-its-request`: every decision the chart records is the answer, verdict and
 *   rule as given, of an `evaluatePolicy` call of the same stage (and, for tool and approval, call);
 * - `tool-allow-before-execute`: a tool runs only on its round's tool allow, or a require_approval
 *   followed by an approve and an approval allow; and only the capability policy was asked about;
 * - `approval-bound-to-call`: that approve named this call (and these arguments when it named
 *   any), the approval was asked for the reviewer, and the arguments run are the ones hashed;
 * - `approval-before-park`: a call waits for approval only after a tool-stage require_approval;
 * - `output-allow-before-release`: a run completes only after an output allow for its last answer;
 * - `memory-write-allow-before-queue`: background tasks are queued only after an output allow and
 *   then a memory.write allow for the answer;
 * - `hop-budget`: at most `max_tool_hops + 1` model calls, tool work only after the first
 *   `max_tool_hops`, and no run past `max_tool_hops` tool rounds;
 * - `call-budget`: at most `max_tool_calls_per_step` calls of one model answer reach policy or the gateway;
 * - `ends-in-final-state`: no path stops where only `run.cancel` leads on, and the chart never throws;
 * - `telemetry-sees-every-state`: a telemetry actor is invoked at the root, and every step marks
 *   the state it left, the state it reached and each decision it recorded.
 */
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

/** What one round (the tool calls of one model answer) has seen of a call. */
interface CallState {
  /** The latest tool-stage decision, and the capability policy was asked about for it. */
  tool?: DecisionRecord;
  asked?: { capability?: string; version?: string };
  /** The review that moved the chart while the call was parked, and the approval decision after it. */
  review?: NonNullable<PathStep['review']>;
  approval?: DecisionRecord;
  /** Whom the approval-stage question named. */
  reviewer?: string;
}

/** What a step shows on its own, whatever path it is on: the effects it starts, its tool work, how it marks telemetry. */
interface StepFacts {
  effects: { kind: string; effect?: PathEffect }[];
  /** Tool-stage questions, approval waits and executions: the work the budgets count. */
  toolWork: PathEffect[];
  askedStage: PolicyStage | undefined;
  /** What telemetry is not told of the step (the state it left or reached, a decision). */
  unmarked: string[];
}

/** Steps are shared by the paths through them, so what each shows on its own is worked out once. */
const stepFacts = new WeakMap<PathStep, StepFacts>();

function factsOf(step: PathStep): StepFacts {
  let facts = stepFacts.get(step);
  if (facts) return facts;
  const effects: StepFacts['effects'] = step.started
    .filter((effect) => effect.src in effectSources)
    .map((effect) => ({ kind: effectSources[effect.src as keyof typeof effectSources], effect }));
  if (step.released) effects.push({ kind: 'output release' });
  const unmarked: string[] = [];
  const left = step.marks.includes(`state.exit ${step.from}`);
  const entered = step.marks.includes(`state.enter ${step.to}`);
  // A step that stays in its state without leaving it (a targetless transition) marks nothing.
  if ((step.from !== step.to || left) && (!left || !entered)) unmarked.push(`goes ${step.from} → ${step.to} without marking ${!left ? `the exit of ${step.from}` : `the entry of ${step.to}`}`);
  const marked = step.marks.filter((mark) => mark === 'decision').length;
  if (marked < step.decisions.length) unmarked.push(`records ${step.decisions.length} decision(s) and marks ${marked}`);
  facts = {
    effects,
    toolWork: step.started.filter((effect) => effect.src === 'executeTool' || effect.src === 'awaitApproval' || stageOf(effect) === 'tool'),
    askedStage: stageOf(step.answered),
    unmarked,
  };
  stepFacts.set(step, facts);
  return facts;
}

/**
 * Checks the invariants on one path; returns the broken ones. Effects are the layer calls each
 * step started (the invokes of the states it entered), decisions are what the chart recorded,
 * each of which must be the answer of an `evaluatePolicy` call of its own stage, and telemetry
 * is what the steps sent the telemetry actor: so a renamed state, a state of your own that calls
 * a layer, or a decision recorded without asking cannot pass unseen. Tool calls are checked per
 * round: against the decisions and reviews since the model answer that asked for them.
 */
export function checkPath(path: RunPath, options: CheckOptions = {}): CoverageViolation[] {
  // A path knows what it was walked under (the variety walk allows more calls a step than the loop).
  const settings = path.settings ?? pathSettings(options);
  const machine = options.machine ?? runMachine;
  const violations: CoverageViolation[] = [];
  const broken = (rule: CoverageRule, detail: string) => violations.push({ path, rule, detail });
  const passes = (decision: DecisionRecord) => decision.verdict === 'allow' || (!settings.precheckRequired && decision.ruleId === 'default-deny');

  if (path.final === 'stuck') broken('ends-in-final-state', `the path stops in ${path.states.at(-1)}, from which only chart-wide events (run.cancel) lead on`);
  if (path.final === 'error') broken('ends-in-final-state', `the chart throws in ${path.states.at(-1)}: ${path.thrown ?? 'an error'}`);
  if (path.final === 'over-budget') broken('hop-budget', `the run goes on to tool work past ${settings.maxToolHops} tool rounds (in ${path.states.at(-1)}), where the walk stops`);
  checkTelemetry(path, machine, broken);

  let precheck = false;
  /** Decisions recorded since the last model call (output and memory.write must follow the answer they release). */
  let sinceAnswer: DecisionRecord[] = [];
  let modelCalls = 0;
  /** The calls of this round, by call id; the call parked for approval; the last review. */
  let round = new Map<string, CallState>();
  let parked: string | undefined;
  let lastReview: PathStep['review'];
  const call = (callId: string) => {
    let entry = round.get(callId);
    if (!entry) round.set(callId, (entry = {}));
    return entry;
  };

  path.steps.forEach((step, index) => {
    if (!step.telemetry) broken('telemetry-sees-every-state', `step ${index + 1} (${step.from} → ${step.to}) runs without the telemetry actor`);

    // A review (the step's event) binds to the call that is parked, whichever call it names.
    if (step.review) {
      lastReview = step.review;
      const entry = call(parked ?? step.review.callId);
      entry.review = step.review;
      entry.approval = undefined;
    }

    // Decisions: each is the answer of a policy call of its own stage (and call).
    const { effects, toolWork, askedStage } = factsOf(step);
    const asked = step.answered;
    const answer = asked?.outcome === 'done' ? (asked.output as Partial<DecisionRecord> | undefined) : undefined;
    for (const decision of step.decisions) {
      if (askedStage !== decision.stage) {
        broken(
          'decision-answers-its-request',
          `a ${decision.stage} decision is recorded on ${asked ? `the answer of ${asked.id} (${asked.src}${askedStage ? `, stage ${askedStage}` : ''})` : `${step.event}, which answers no policy call`}`,
        );
      } else if (answer?.verdict !== decision.verdict || answer.ruleId !== decision.ruleId) {
        broken('decision-answers-its-request', `a ${decision.stage} ${decision.verdict} (${decision.ruleId}) is recorded where policy answered ${answer ? `${answer.verdict} (${answer.ruleId})` : 'with a failure'}`);
      }
      if ((decision.stage === 'tool' || decision.stage === 'approval') && decision.callId !== callIdOf(asked?.input)) {
        broken('decision-answers-its-request', `a ${decision.stage} decision for call ${decision.callId} answers a question about call ${callIdOf(asked?.input)}`);
      }
      if (decision.stage === 'precheck' && askedStage === 'precheck' && answer?.verdict === decision.verdict && passes(decision)) precheck = true;
      if (decision.callId && decision.stage === 'tool') {
        const entry = call(decision.callId);
        entry.tool = decision;
        entry.asked = asked?.input as CallState['asked'];
        entry.review = undefined;
        entry.approval = undefined;
      }
      if (decision.callId && decision.stage === 'approval') {
        const entry = call(decision.callId);
        entry.approval = decision;
        entry.reviewer = (asked?.input as { principalId?: string } | undefined)?.principalId;
      }
      sinceAnswer.push(decision);
    }

    for (const { kind, effect } of effects) {
      if (!precheck) broken('precheck-before-effects', `${kind}${effect ? ` (${effect.id})` : ''} starts in ${step.to} without a precheck allow`);
      if (effect?.src === 'callModel') {
        modelCalls++;
        sinceAnswer = [];
        round = new Map();
        parked = undefined;
        lastReview = undefined;
        if (modelCalls > settings.maxToolHops + 1) broken('hop-budget', `model call ${modelCalls} starts in ${step.to}; max_tool_hops ${settings.maxToolHops} allows ${settings.maxToolHops + 1}`);
      }
      if (effect?.src === 'executeTool') checkExecution(effect, step, round, lastReview, broken);
      if (effect?.src === 'awaitApproval') {
        const callId = callIdOf(effect.input);
        parked = callId;
        if (callId === undefined || call(callId).tool?.verdict !== 'require_approval') {
          broken('approval-before-park', `call ${callId ?? '(none)'} waits for approval in ${step.to} without a tool-stage require_approval for it (its tool decision: ${callId ? (call(callId).tool?.verdict ?? 'none') : 'none'})`);
        }
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
    for (const effect of toolWork) {
      // Tool rounds follow the first max_tool_hops model answers only.
      if (modelCalls > settings.maxToolHops) broken('hop-budget', `tool call ${callIdOf(effect.input) ?? '(none)'} reaches ${effect.id} after model call ${modelCalls}; max_tool_hops ${settings.maxToolHops} allows tool rounds after ${settings.maxToolHops} model call(s)`);
      const callId = callIdOf(effect.input);
      if (callId !== undefined) call(callId);
    }
    if (toolWork.length > 0 && round.size > settings.maxToolCallsPerStep) {
      broken('call-budget', `${round.size} tool calls of one model answer reach policy or the gateway (${[...round.keys()].join(', ')}); max_tool_calls_per_step is ${settings.maxToolCallsPerStep}`);
    }
  });
  return violations;
}

/**
 * A tool execution needs, in the same round and for the same call: a tool-stage allow; or a
 * tool-stage require_approval, then an approve of this call (and, when it names arguments,
 * these arguments) while it was parked, and an approval-stage allow asked for that approver.
 * Either way policy must have been asked about the capability that runs.
 */
function checkExecution(
  effect: PathEffect,
  step: PathStep,
  round: Map<string, CallState>,
  lastReview: PathStep['review'],
  broken: (rule: CoverageRule, detail: string) => void,
) {
  const input = effect.input as { callId?: string; argsHash?: string; arguments?: string; capability?: string; version?: string } | undefined;
  const callId = input?.callId;
  if (callId === undefined) return broken('tool-allow-before-execute', `a tool executes in ${step.to} for no call`);
  const { tool, asked, review = lastReview, approval, reviewer } = round.get(callId) ?? {};
  if (tool?.verdict !== 'allow' && tool?.verdict !== 'require_approval') {
    return broken('tool-allow-before-execute', `call ${callId} executes in ${step.to} without a tool allow or an approval for it (its tool decision this round: ${tool?.verdict ?? 'none'})`);
  }
  if (asked?.capability !== input?.capability || asked?.version !== input?.version) {
    broken('tool-allow-before-execute', `call ${callId} executes ${input?.capability}@${input?.version}, but policy was asked about ${asked?.capability}@${asked?.version}`);
  }
  if (input?.arguments !== undefined && input.argsHash !== hashArguments(input.arguments)) {
    broken('approval-bound-to-call', `call ${callId} executes arguments that do not hash to the argsHash it hands the gateway`);
  }
  if (tool.verdict === 'allow') return;
  if (!review || review.kind !== 'approve' || approval?.verdict !== 'allow') {
    return broken('tool-allow-before-execute', `call ${callId} needs approval but executes after ${review ? `a ${review.kind}` : 'no review'}${approval ? ` and an approval ${approval.verdict}` : ' and no approval allow'}`);
  }
  if (review.principalId === '') broken('approval-bound-to-call', `call ${callId} executes on an approval that names no reviewer`);
  if (review.callId !== callId || (review.argsHash !== undefined && review.argsHash !== input?.argsHash)) {
    broken('approval-bound-to-call', `call ${callId} executes on an approval of ${review.callId !== callId ? `call ${review.callId}` : 'other arguments'}`);
  }
  if (approval.argsHash !== undefined && approval.argsHash !== input?.argsHash) {
    broken('approval-bound-to-call', `call ${callId} executes with other arguments than its approval recorded`);
  }
  if (reviewer !== undefined && reviewer !== approval.principalId) {
    broken('approval-bound-to-call', `call ${callId} executes on an approval policy gave ${reviewer}, recorded for ${approval.principalId}`);
  }
}

/**
 * Telemetry sees every state: the chart invokes a telemetry actor at its root, every state it
 * can rest in marks its entry and exit (read from the definition), and on the path every step
 * marks the state it left and the state it reached, and every decision it recorded.
 */
function checkTelemetry(path: RunPath, machine: AnyStateMachine, broken: (rule: CoverageRule, detail: string) => void) {
  if (!machine.root.invoke.some((definition) => definition.id === 'telemetry')) broken('telemetry-sees-every-state', 'the chart invokes no telemetry actor (id "telemetry") at its root');
  const untraced = untracedStates(machine);
  if (untraced.size > 0) {
    for (const state of new Set(path.states)) {
      if (untraced.has(state)) broken('telemetry-sees-every-state', `${state} sends no telemetry mark on ${untraced.get(state)}`);
    }
  }
  if (path.states[0] !== undefined && !path.startMarks.includes(`state.enter ${path.states[0]}`)) broken('telemetry-sees-every-state', `the run starts in ${path.states[0]} without marking its entry`);
  path.steps.forEach((step, index) => {
    if (path.final === 'error' && index === path.steps.length - 1) return; // the throw has its own violation
    for (const problem of factsOf(step).unmarked) broken('telemetry-sees-every-state', `step ${index + 1} (${step.event}) ${problem}`);
  });
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
