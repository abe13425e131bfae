// fast-check arbitraries for runs: model answers, tool faults, policy choices, approvals, cancellations, chart events.
import fc from 'fast-check';
import type { AnyEventObject } from 'xstate';
import { z } from 'zod';
import type { AcceptedRequest } from '../../machines/run/types.js';
import type { PinnedCapability } from '../../src/catalog/contract.js';
import { RunchartError } from '../../src/errors.js';
import type { ExecuteResult } from '../../src/execution/contract.js';
import type { RecallResult } from '../../src/memory/contract.js';
import type { ModelResponse, ToolCall } from '../../src/models/contract.js';
import type { PolicyDecision } from '../../src/policy/contract.js';

/** The probe capability every generated run can call, as the catalog knows it and as the model sees it. */
export const probe = { name: 'probe.echo', version: '1.0.0', toolName: 'probe_echo' } as const;

/** The probe's input schema: the arbitraries below generate arguments on both sides of it. */
export const ProbeInput = z.strictObject({ text: z.string().min(1).max(40) });

/** What the model does in one step: answer, call tools (well or badly), or fail in one of the ways the chart tells apart. */
export const stepKinds = ['final', 'validCall', 'malformedJson', 'unknownTool', 'schemaViolation', 'empty', 'twoCalls', 'truncated', 'filtered', 'overBudget', 'modelError'] as const;
export type StepKind = (typeof stepKinds)[number];

/** Steps after which the chart calls the model no more (an answer, or a failure). */
export const terminalKinds: ReadonlySet<StepKind> = new Set<StepKind>(['final', 'empty', 'twoCalls', 'truncated', 'filtered', 'overBudget', 'modelError']);

/** The model's failure: the scripted model throws it instead of answering. */
export const modelFailure = new Error('the model is unavailable');

/** How the probe's handler behaves for one call. */
export const faults = ['ok', 'throws', 'timeout'] as const;
export type Fault = (typeof faults)[number];

/** The tool-stage effect of the policy rule for the probe. */
export const toolPolicies = ['allow', 'require_approval', 'deny'] as const;
export type ToolPolicy = (typeof toolPolicies)[number];

/**
 * What happens to a parked call. `refuse`: a principal the approval rule does not name tries to
 * approve first (policy refuses, the call stays parked), then the approver approves.
 */
export const approvalActions = ['approve', 'reject', 'cancel', 'refuse'] as const;
export type ApprovalAction = (typeof approvalActions)[number];

/** What policy answers at each stage besides the rules' plain allow. */
export const precheckOutcomes = ['allow', 'deny', 'unmatched', 'throws'] as const;
/** At call time the tool stage may answer otherwise than when the run pinned its capabilities. */
export const toolAtCallOutcomes = ['pinned', 'deny', 'throws'] as const;
export const approvalStageOutcomes = ['allow', 'throws'] as const;
export const releaseOutcomes = ['allow', 'deny', 'throws'] as const;

/** Policy's behaviour per stage in one run. */
export interface StageOutcomes {
  precheck: (typeof precheckOutcomes)[number];
  toolAtCall: (typeof toolAtCallOutcomes)[number];
  approval: (typeof approvalStageOutcomes)[number];
  output: (typeof releaseOutcomes)[number];
  memoryWrite: (typeof releaseOutcomes)[number];
}

/** The layers that fail in one run (the model's failure is a step kind, the tool handler's a fault). */
export interface LayerFailures {
  recall: boolean;
  /** The approval deadline cannot be kept (its journal entry cannot be read). */
  approvalWait: boolean;
  /** A tool call cannot be journaled, so the gateway refuses to run it. */
  journal: boolean;
  enqueue: boolean;
}

export const usage = fc.record({ inputTokens: fc.integer({ min: 0, max: 100 }), outputTokens: fc.integer({ min: 0, max: 100 }) });
const callId = fc.stringMatching(/^call_[a-z0-9]{1,8}$/);
const shortText = fc.string({ minLength: 1, maxLength: 40 });

/** Arguments the probe accepts. */
export const validArguments = fc.record({ text: shortText }).map((value) => JSON.stringify(value));

/** JSON objects the probe's schema refuses. */
export const schemaViolatingArguments = fc
  .oneof(
    fc.record({ text: fc.integer() }),
    fc.constant({}),
    fc.constant({ text: '' }),
    fc.constant({ text: null }),
    fc.record({ text: shortText, extra: fc.integer() }),
    fc.string({ minLength: 41, maxLength: 60 }).map((text) => ({ text })),
  )
  .map((value) => JSON.stringify(value));

/** Argument text that is not a JSON object: broken JSON, or JSON of another type. */
export const malformedArguments = fc.oneof(
  fc.constantFrom('', '{', '{"text": ', "{text: 'x'}", '{"text":"a",}', 'null', '[]', '42', '"text"', 'undefined'),
  fc.string({ maxLength: 20 }).filter((text) => {
    try {
      const value: unknown = JSON.parse(text);
      return typeof value !== 'object' || value === null || Array.isArray(value);
    } catch {
      return true;
    }
  }),
);

/** A tool name no pinned capability has. */
export const unknownToolName = fc.stringMatching(/^[a-z][a-z0-9_]{0,15}$/).filter((name) => name !== probe.toolName);

const call = (name: fc.Arbitrary<string>, args: fc.Arbitrary<string>): fc.Arbitrary<ToolCall> =>
  fc.record({ id: callId, name, arguments: args });
const withCalls = (calls: fc.Arbitrary<ToolCall[]>): fc.Arbitrary<ModelResponse> =>
  fc.record({ text: fc.option(shortText, { nil: null }), toolCalls: calls, usage, finishReason: fc.constant('tool_calls') });
const probeName = fc.constant<string>(probe.toolName);

/** A model response of the given kind. */
export function modelResponse(kind: StepKind): fc.Arbitrary<ModelResponse> {
  switch (kind) {
    case 'final':
      return fc.record({ text: shortText, toolCalls: fc.constant([]), usage, finishReason: fc.constant('stop') });
    case 'empty':
      return fc.record({ text: fc.constantFrom(null, ''), toolCalls: fc.constant([]), usage, finishReason: fc.constant('stop') });
    case 'validCall':
      return withCalls(call(probeName, validArguments).map((one) => [one]));
    case 'malformedJson':
      return withCalls(call(probeName, malformedArguments).map((one) => [one]));
    case 'unknownTool':
      return withCalls(call(unknownToolName, fc.oneof(validArguments, malformedArguments)).map((one) => [one]));
    case 'schemaViolation':
      return withCalls(call(probeName, schemaViolatingArguments).map((one) => [one]));
    case 'twoCalls':
      return withCalls(
        fc
          .tuple(call(probeName, validArguments), call(fc.oneof(probeName, unknownToolName), fc.oneof(validArguments, malformedArguments)))
          .map(([first, second]) => [first, { ...second, id: `${second.id}_2` }]),
      );
    case 'truncated':
      return fc.record({ text: shortText, toolCalls: fc.constant([]), usage, finishReason: fc.constant('length') });
    case 'filtered':
      return fc.record({ text: fc.option(shortText, { nil: null }), toolCalls: fc.constant([]), usage, finishReason: fc.constant('content_filter') });
    case 'overBudget':
      return fc.record({ text: shortText, toolCalls: fc.constant([]), usage: fc.record({ inputTokens: fc.integer({ min: 1_001, max: 5_000 }), outputTokens: fc.integer({ min: 0, max: 100 }) }), finishReason: fc.constant('stop') });
    case 'modelError':
      // What the model would have said is never seen: the scripted model throws `modelFailure`.
      return fc.record({ text: fc.constant(null), toolCalls: fc.constant([]), usage: fc.constant({ inputTokens: 0, outputTokens: 0 }), finishReason: fc.constant('error') });
  }
}

/** How often each kind is drawn: enough answers and valid calls that runs get past the first step. */
const stepWeights: Record<StepKind, number> = {
  final: 6,
  validCall: 10,
  malformedJson: 2,
  unknownTool: 2,
  schemaViolation: 2,
  empty: 1,
  twoCalls: 1,
  truncated: 1,
  filtered: 1,
  overBudget: 1,
  modelError: 1,
};

/** One model step: its kind and a response of that kind. */
export const modelStep = fc
  .oneof(...stepKinds.map((kind) => ({ arbitrary: fc.constant(kind), weight: stepWeights[kind] })))
  .chain((kind) => modelResponse(kind).map((response) => ({ kind, response })));
export type GeneratedStep = { kind: StepKind; response: ModelResponse };

/** A whole run as the property drives it. */
export interface Scenario {
  maxToolHops: 0 | 1 | 2;
  /** One per possible model call; the script uses the first `maxToolHops + 1`, up to the first terminal step. */
  steps: GeneratedStep[];
  /** The handler's behaviour in hop k is `faults[k]`. */
  faults: Fault[];
  /** The tool-stage effect of the probe's rule (what pinning sees; `deny` hides the probe). */
  toolPolicy: ToolPolicy;
  /** What happens to the n-th parked call; a `refuse` comes first, and only when `mayRefuse`. */
  approvals: ApprovalAction[];
  /** Cancel once this many snapshots were seen after the start (0: right away); null: never. */
  cancelAfter: number | null;
  /** `invalid`: the caller's request has no tenant, and ingress refuses it. */
  request: 'valid' | 'invalid';
  precheckRequired: boolean;
  backgroundUpdates: boolean;
  stages: StageOutcomes;
  failures: LayerFailures;
  /** `instant`: runtime.approval_timeout_ms is 1 and the injected clock has passed it when the wait starts. */
  approvalTimeout: 'day' | 'instant';
}

/** Mostly the plain outcome, now and then another: so most runs still get to the tool loop. */
const mostly = <T>(usual: T, others: readonly T[], weight = 8): fc.Arbitrary<T> =>
  fc.oneof({ arbitrary: fc.constant(usual), weight }, { arbitrary: fc.constantFrom(...others), weight: 1 });
const rarely = mostly(false, [true], 12);

const action = fc.constantFrom<ApprovalAction>('approve', 'reject', 'cancel');

/**
 * Whether a scenario may draw a refused reviewer: the enumeration walks a refusal's way back in
 * its one hop of variety, which it reaches the plain way (precheck allowed, memory recalled).
 */
export function mayRefuse(value: Omit<Scenario, 'approvals'>): boolean {
  return value.maxToolHops === 1 && value.stages.precheck === 'allow' && !value.failures.recall;
}

export const scenario: fc.Arbitrary<Scenario> = fc
  .constantFrom(0 as const, 1 as const, 2 as const)
  .chain((maxToolHops) =>
    fc.record({
      maxToolHops: fc.constant(maxToolHops),
      steps: fc.array(modelStep, { minLength: 3, maxLength: 3 }),
      faults: fc.array(fc.constantFrom(...faults), { minLength: 3, maxLength: 3 }),
      toolPolicy: fc.constantFrom(...toolPolicies),
      cancelAfter: fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, { arbitrary: fc.nat({ max: 16 }), weight: 1 }),
      request: mostly<Scenario['request']>('valid', ['invalid'], 20),
      precheckRequired: mostly(true, [false], 4),
      backgroundUpdates: mostly(true, [false], 4),
      stages: fc.record({
        precheck: mostly<StageOutcomes['precheck']>('allow', ['deny', 'unmatched', 'throws'], 12),
        toolAtCall: mostly<StageOutcomes['toolAtCall']>('pinned', ['deny', 'throws']),
        approval: mostly<StageOutcomes['approval']>('allow', ['throws'], 12),
        output: mostly<StageOutcomes['output']>('allow', ['deny', 'throws']),
        memoryWrite: mostly<StageOutcomes['memoryWrite']>('allow', ['deny', 'throws']),
      }),
      failures: fc.record({ recall: rarely, approvalWait: rarely, journal: rarely, enqueue: rarely }),
      approvalTimeout: mostly<Scenario['approvalTimeout']>('day', ['instant'], 10),
    }),
  )
  .chain((value) =>
    fc
      .tuple(mayRefuse(value) ? fc.oneof(action, fc.constant<ApprovalAction>('refuse')) : action, action, action)
      .map((approvals): Scenario => Object.assign({}, value, { approvals })),
  );

/** A scenario in which nothing but the model's steps is out of the ordinary: every stage allows, every layer works. */
export function plainScenario(overrides: Partial<Scenario> = {}): Scenario {
  return {
    maxToolHops: 2,
    steps: [],
    faults: ['ok', 'ok', 'ok'],
    toolPolicy: 'allow',
    approvals: ['approve', 'approve', 'approve'],
    cancelAfter: null,
    request: 'valid',
    precheckRequired: true,
    backgroundUpdates: true,
    stages: { precheck: 'allow', toolAtCall: 'pinned', approval: 'allow', output: 'allow', memoryWrite: 'allow' },
    failures: { recall: false, approvalWait: false, journal: false, enqueue: false },
    approvalTimeout: 'day',
    ...overrides,
  };
}

/** The steps the scripted model gets: at most `maxToolHops + 1`, ending with the first terminal one. */
export function scriptOf(value: Scenario): GeneratedStep[] {
  const steps = value.steps.slice(0, value.maxToolHops + 1);
  const end = steps.findIndex((step) => terminalKinds.has(step.kind));
  return end === -1 ? steps : steps.slice(0, end + 1);
}

// ── Chart events, for the pure step function ────────────────────────────────────────────────

export const pinnedProbe: PinnedCapability = {
  name: probe.name,
  version: probe.version,
  toolName: probe.toolName,
  description: 'echoes its text',
  effects: 'read',
  parameters: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
};

export const policyDecision: fc.Arbitrary<PolicyDecision> = fc.record({
  verdict: fc.constantFrom('allow', 'deny', 'require_approval'),
  ruleId: fc.oneof(fc.constant('default-deny'), fc.stringMatching(/^[a-z][a-z-]{0,15}$/)),
  reason: fc.string({ maxLength: 20 }),
});

export const recallResult: fc.Arbitrary<RecallResult> = fc.record({
  items: fc.array(fc.record({ id: fc.string({ maxLength: 8 }), text: fc.string({ maxLength: 20 }), score: fc.double({ min: 0, max: 1, noNaN: true, noDefaultInfinity: true }) }), { maxLength: 3 }),
  history: fc.array(fc.record({ role: fc.constantFrom('user' as const, 'assistant' as const), content: fc.string({ maxLength: 20 }) }), { maxLength: 3 }),
});

export const executeResult: fc.Arbitrary<ExecuteResult> = fc.oneof(
  fc.record({ status: fc.constant('ok' as const), output: fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.constant(null)) }),
  fc.record({
    status: fc.constant('error' as const),
    error: fc.record({ kind: fc.constantFrom('tool-failed' as const, 'timeout' as const, 'invalid-input' as const), message: fc.string({ maxLength: 20 }), retryable: fc.boolean() }),
  }),
);

export const acceptedRequest: fc.Arbitrary<AcceptedRequest> = fc.record({
  traceId: fc.constant('4bf92f3577b34da6a3ce929d0e0e4736'),
  tenantId: fc.constantFrom('acme', 'globex'),
  principalId: fc.constantFrom('user-1', 'user-2'),
  input: fc.string({ minLength: 1, maxLength: 20 }),
  capabilities: fc.constantFrom([pinnedProbe], []),
});

/** Every layer call the run chart makes, by invoke id, with an arbitrary of what it answers. */
const answers: Record<string, fc.Arbitrary<unknown>> = {
  acceptRequest: acceptedRequest,
  checkPrecheck: policyDecision,
  recallMemory: recallResult,
  callModel: modelStep.map(({ response }) => response),
  authorizeTool: policyDecision,
  awaitApproval: fc.constant(undefined),
  reviewApproval: policyDecision,
  executeTool: executeResult,
  checkOutput: policyDecision,
  authorizeWrite: policyDecision,
  enqueueBackground: fc.constant(undefined),
};
/** The invoke ids of the run chart's layer calls. */
export const invokeIds = Object.keys(answers);

const failure = fc
  .tuple(fc.constantFrom(...invokeIds), fc.string({ maxLength: 20 }), fc.boolean())
  .map(([id, message, branded]): AnyEventObject => ({
    type: `xstate.error.actor.${id}`,
    // What a layer call fails with: a RunchartError, or any other thrown value.
    error: branded ? new RunchartError('internal', 'runtime', message) : new Error(message),
  }));
const reviewCallId = fc.oneof(fc.constantFrom('c0.0', 'c1.0', 'c2.0'), fc.stringMatching(/^c[0-9]\.[0-9]$/));

/**
 * Any event the run chart might receive: the answer of each layer call (`xstate.done.actor.<id>`)
 * with a generated output of its contract, each call's failure, and the external events.
 */
export const runEvent: fc.Arbitrary<AnyEventObject> = fc.oneof(
  ...Object.entries(answers).map(([id, output]) => output.map((value): AnyEventObject => ({ type: `xstate.done.actor.${id}`, output: value }))),
  failure,
  fc.record({ type: fc.constant('tool.approve'), callId: reviewCallId, principalId: fc.constantFrom('approver', 'user-1'), argsHash: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: undefined }) }),
  fc.record({ type: fc.constant('tool.reject'), callId: reviewCallId, principalId: fc.constantFrom('approver', 'user-1'), reason: fc.string({ maxLength: 10 }) }),
  fc.record({ type: fc.constant('run.cancel') }),
);
