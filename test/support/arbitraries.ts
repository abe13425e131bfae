// fast-check arbitraries for runs: model answers, tool faults, policy choices, approvals, cancellations, chart events.
import fc from 'fast-check';
import type { AnyEventObject } from 'xstate';
import { z } from 'zod';
import type { AcceptedRequest } from '../../machines/run/types.js';
import type { PinnedCapability } from '../../src/catalog/contract.js';
import { RunchartError, toRunchartErrorData } from '../../src/errors.js';
import type { ExecuteResult } from '../../src/execution/contract.js';
import type { RecallResult } from '../../src/memory/contract.js';
import type { ModelResponse, ToolCall } from '../../src/models/contract.js';
import type { PolicyDecision } from '../../src/policy/contract.js';

/** The probe capability every generated run can call, as the catalog knows it and as the model sees it. */
export const probe = { name: 'probe.echo', version: '1.0.0', toolName: 'probe_echo' } as const;

/** The probe's input schema: the arbitraries below generate arguments on both sides of it. */
export const ProbeInput = z.strictObject({ text: z.string().min(1).max(40) });

/** What the model does in one step. */
export const stepKinds = ['final', 'validCall', 'malformedJson', 'unknownTool', 'schemaViolation', 'empty', 'twoCalls'] as const;
export type StepKind = (typeof stepKinds)[number];

/** Steps after which the chart calls the model no more (an answer, or a failure). */
export const terminalKinds: ReadonlySet<StepKind> = new Set<StepKind>(['final', 'empty', 'twoCalls']);

/** How the probe's handler behaves for one call. */
export const faults = ['ok', 'throws', 'timeout'] as const;
export type Fault = (typeof faults)[number];

/** The tool-stage effect of the policy rule for the probe. */
export const toolPolicies = ['allow', 'require_approval', 'deny'] as const;
export type ToolPolicy = (typeof toolPolicies)[number];

/** What happens to a parked call. */
export const approvalActions = ['approve', 'reject', 'cancel'] as const;
export type ApprovalAction = (typeof approvalActions)[number];

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
      return fc.record({ text: fc.constantFrom(null, ''), toolCalls: fc.constant([]), usage, finishReason: fc.constantFrom('stop', 'length') });
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
  }
}

/** How often each kind is drawn: enough answers and valid calls that runs get past the first step. */
const stepWeights: Record<StepKind, number> = { final: 3, validCall: 5, malformedJson: 1, unknownTool: 1, schemaViolation: 1, empty: 1, twoCalls: 1 };

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
  toolPolicy: ToolPolicy;
  /** What happens to the n-th parked call. */
  approvals: ApprovalAction[];
  /** Cancel once this many snapshots were seen after the start (0: right away); null: never. */
  cancelAfter: number | null;
}

export const scenario: fc.Arbitrary<Scenario> = fc.record({
  maxToolHops: fc.constantFrom(0 as const, 1 as const, 2 as const),
  steps: fc.array(modelStep, { minLength: 3, maxLength: 3 }),
  faults: fc.array(fc.constantFrom(...faults), { minLength: 3, maxLength: 3 }),
  toolPolicy: fc.constantFrom(...toolPolicies),
  approvals: fc.array(fc.constantFrom(...approvalActions), { minLength: 3, maxLength: 3 }),
  cancelAfter: fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, { arbitrary: fc.nat({ max: 16 }), weight: 1 }),
});

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

const failures = ['request.refused', 'policy.failed', 'memory.failed', 'model.failed', 'tool.failed', 'background.failed', 'approval.failed'] as const;
const done = (type: string, output: unknown): AnyEventObject => ({ type, output });
const failure = fc
  .tuple(fc.constantFrom(...failures), fc.string({ maxLength: 20 }), fc.boolean())
  .map(([type, message, branded]): AnyEventObject => ({
    type,
    // What callLayers sends: an error as data, from a RunchartError or any other thrown value.
    error: toRunchartErrorData(branded ? new RunchartError('internal', 'runtime', message) : new Error(message), 'runtime'),
  }));
const reviewCallId = fc.oneof(fc.constantFrom('c0.0', 'c1.0', 'c2.0'), fc.stringMatching(/^c[0-9]\.[0-9]$/));

/**
 * Any event the run chart might receive: each layer answer with a generated output, each layer
 * failure, and the external events.
 */
export const runEvent: fc.Arbitrary<AnyEventObject> = fc.oneof(
  acceptedRequest.map((output) => done('request.accepted', output)),
  policyDecision.map((output) => done('policy.decided', output)),
  recallResult.map((output) => done('memory.recalled', output)),
  modelStep.map(({ response }) => done('model.answered', response)),
  executeResult.map((output) => done('tool.executed', output)),
  fc.constant({ type: 'background.queued' }),
  fc.constant({ type: 'approval.expired' }),
  failure,
  fc.record({ type: fc.constant('tool.approve'), callId: reviewCallId, principalId: fc.constantFrom('approver', 'user-1') }),
  fc.record({ type: fc.constant('tool.reject'), callId: reviewCallId, principalId: fc.constantFrom('approver', 'user-1'), reason: fc.string({ maxLength: 10 }) }),
  fc.record({ type: fc.constant('run.cancel') }),
  fc.record({ type: fc.constant('run.resume') }),
);
