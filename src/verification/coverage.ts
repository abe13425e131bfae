import { runMachine } from '../../machines/run/machine.js';
import { enumerateRunPaths, type PathOptions, type PathStep, type RunPath } from './paths.js';

/** The invariants every path must keep (DESIGN §9). */
export type CoverageRule =
  | 'precheck-before-effects'
  | 'tool-allow-before-execute'
  | 'approval-before-park'
  | 'output-allow-before-release'
  | 'memory-write-allow-before-queue'
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

/** States that are effects or come after one: none may be reached without a passing precheck. */
const afterPrecheck = /^(retrieval|modelStep|toolExecution|assembly|background|completed)/;

/** Checks the invariants on one path; returns the broken ones. */
export function checkPath(path: RunPath, options: { precheckRequired?: boolean } = {}): CoverageViolation[] {
  const violations: CoverageViolation[] = [];
  const broken = (rule: CoverageRule, detail: string) => violations.push({ path, rule, detail });
  const precheckRequired = options.precheckRequired ?? true;
  const passes = (step: PathStep) => step.verdict === 'allow' || (!precheckRequired && step.event.endsWith('(default)'));

  if (path.final === 'stuck') broken('ends-in-final-state', `the path stops in ${path.states.at(-1)}, which has no way on`);
  for (const state of new Set(path.states)) if (!isTraced(state)) broken('telemetry-sees-every-state', `${state} sends no telemetry mark on entry and exit`);

  path.steps.forEach((step, index) => {
    const before = path.steps.slice(0, index);
    if (afterPrecheck.test(step.to) && !before.concat(step).some((earlier) => earlier.from === 'policy' && passes(earlier))) {
      broken('precheck-before-effects', `${step.to} is reached without a precheck allow`);
    }
    if (step.to === 'toolExecution.executing' && !isAuthorizedExecution(path.steps, index)) {
      broken('tool-allow-before-execute', `hop ${step.hops} call ${step.cursor} executes without a tool allow or an approval for it`);
    }
    if (step.to === 'toolExecution.awaitingApproval') {
      const parked = (step.from === 'toolExecution.authorizing' && step.verdict === 'require_approval') || step.from === 'toolExecution.reviewing';
      if (!parked) broken('approval-before-park', `awaitingApproval is entered from ${step.from} (${step.event})`);
    }
    if (step.from === 'assembly' && step.to !== 'denied' && step.to !== 'failed' && step.to !== 'cancelled' && step.verdict !== 'allow') {
      broken('output-allow-before-release', `the output is released to ${step.to} without an output allow`);
    }
    if (step.to === 'completed' && !before.concat(step).some((earlier) => earlier.from === 'assembly' && earlier.verdict === 'allow')) {
      broken('output-allow-before-release', 'the run completes without an output allow');
    }
    if (step.to === 'background.queueing' && !(step.from === 'background.authorizing' && step.verdict === 'allow')) {
      broken('memory-write-allow-before-queue', `background tasks are queued after ${step.from} (${step.event})`);
    }
  });
  return violations;
}

/** An execution needs, in the same hop and call: a tool allow, or a require_approval then an approve the approver was allowed. */
function isAuthorizedExecution(steps: PathStep[], index: number): boolean {
  const step = steps[index]!;
  const sameCall = (other: PathStep) => other.hops === step.hops && other.cursor === step.cursor;
  if (step.from === 'toolExecution.authorizing') return step.verdict === 'allow';
  if (step.from !== 'toolExecution.reviewing' || step.verdict !== 'allow') return false;
  const earlier = steps.slice(0, index).filter(sameCall);
  const review = earlier.findLast((other) => other.to === 'toolExecution.reviewing');
  const park = earlier.find((other) => other.from === 'toolExecution.authorizing');
  return review?.event === 'tool.approve' && park?.verdict === 'require_approval';
}

const traced = new Map<string, boolean>();
function isTraced(state: string): boolean {
  let known = traced.get(state);
  if (known === undefined) {
    let node: ReturnType<typeof runMachine.getStateNodeById>;
    try {
      node = runMachine.getStateNodeById(`run.${state}`);
    } catch {
      traced.set(state, false); // not a state of the chart: nothing can have traced it
      return false;
    }
    const marks = (actions: readonly unknown[], kind: string) =>
      actions.some((action) => {
        const mark = (action as { type?: string; params?: { mark?: { kind?: string; state?: string } } }).params?.mark;
        return (action as { type?: string }).type === 'mark' && mark?.kind === kind && mark.state === state;
      });
    known = marks(node.entry, 'state.enter') && (node.type === 'final' || marks(node.exit, 'state.exit'));
    traced.set(state, known);
  }
  return known;
}

/**
 * Enumerates every path of the run chart and checks the policy invariants on each: no effect
 * without the decision in front of it, every path ends in a final state, telemetry sees every state.
 * @example
 * const { ok, paths, violations } = checkPolicyCoverage({ maxToolHops: 3 });
 */
export function checkPolicyCoverage(options: PathOptions = {}): CoverageReport {
  const paths = enumerateRunPaths(options);
  const violations = paths.flatMap((path) => checkPath(path, options));
  return { ok: violations.length === 0, paths: paths.length, violations };
}
