import { assign, enqueueActions, sendTo, setup } from 'xstate';
import type { AcceptedRequest, ApprovalWaitInput, BackgroundInput, ModelStepInput, RunEvent, RunContext, RunInput, ToolExecutionInput } from './types.js';
import type { ExecuteResult } from '../../src/execution/contract.js';
import type { RecallQuery, RecallResult } from '../../src/memory/contract.js';
import type { ModelResponse } from '../../src/models/contract.js';
import type { DecisionRecord, PolicyDecision, PolicyRequest, PolicyStage } from '../../src/policy/contract.js';
import type { TelemetryMark } from '../../src/telemetry/contract.js';
import { toRunchartErrorData, type ErrorLayer } from '../../src/errors.js';
import { placeholder } from '../placeholder.js';
import { telemetryActor } from '../../actors/telemetry.actor.js';
import { noopTelemetry } from '../../src/telemetry/contract.js';

export type { ToolExecutionInput, ApprovalWaitInput, ModelStepInput, BackgroundInput } from './types.js';

/** What the telemetry actor receives: one mark per state entry, exit, decision, model step and tool call. */
export type TelemetryEvent = { type: 'telemetry.mark'; mark: TelemetryMark };

/** Input of the telemetry actor: the run, until ingress has told it who the run is for. */
export interface TelemetryInput {
  runId: string;
}

/** The named `mark` action with its params; typed loosely because setup's own actions cannot name each other. */
const markAction = (mark: TelemetryMark) => ({ type: 'mark', params: { mark } }) as never;

/**
 * The run chart's setup: one `src` per kind of layer call (each state invokes the one it needs,
 * under an `id` of its own), the telemetry actor, and the guards and actions the states share.
 */
export const runSetup = setup({
  types: {
    input: {} as RunInput,
    context: {} as RunContext,
    events: {} as RunEvent,
  },
  actors: {
    acceptRequest: placeholder<AcceptedRequest, RunInput>('acceptRequest'),
    evaluatePolicy: placeholder<PolicyDecision, PolicyRequest>('evaluatePolicy'),
    recallMemory: placeholder<RecallResult, RecallQuery>('recallMemory'),
    callModel: placeholder<ModelResponse, ModelStepInput>('callModel'),
    awaitApproval: placeholder<void, ApprovalWaitInput>('awaitApproval'),
    executeTool: placeholder<ExecuteResult, ToolExecutionInput>('executeTool'),
    enqueueBackground: placeholder<void, BackgroundInput>('enqueueBackground'),
    /** Records nothing until provided: telemetry never stops a run. */
    recordTelemetry: telemetryActor(noopTelemetry, { now: () => 0 }),
  },
  guards: {
    isAllowed: (_, params: { decision: PolicyDecision }) => params.decision.verdict === 'allow',
    needsApproval: (_, params: { decision: PolicyDecision }) => params.decision.verdict === 'require_approval',
    /** With `precheck_required: false`, a precheck no rule speaks to lets the run through; a deny still denies. */
    isPrecheckPassed: ({ context }, params: { decision: PolicyDecision }) =>
      params.decision.verdict === 'allow' || (!context.settings.precheckRequired && params.decision.ruleId === 'default-deny'),
    asksForTools: (_, params: { response: ModelResponse }) => params.response.toolCalls.length > 0,
    isEmptyAnswer: (_, params: { response: ModelResponse }) => params.response.toolCalls.length === 0 && !params.response.text,
    /** The hop budget: tool rounds already done against `max_tool_hops`. */
    asksForToolsPastHopBudget: ({ context }, params: { response: ModelResponse }) =>
      params.response.toolCalls.length > 0 && context.hops >= context.settings.maxToolHops,
    asksForTooManyTools: ({ context }, params: { response: ModelResponse }) =>
      params.response.toolCalls.length > context.settings.maxToolCallsPerStep,
    isOverTokenBudget: ({ context }, params: { response: ModelResponse }) =>
      context.settings.maxTotalTokens !== null &&
      context.usage.inputTokens + context.usage.outputTokens + params.response.usage.inputTokens + params.response.usage.outputTokens >
        context.settings.maxTotalTokens,
    /** An answer cut at the output limit or withheld by a content filter is not a final answer. */
    isIncompleteAnswer: (_, params: { response: ModelResponse }) => params.response.finishReason === 'length' || params.response.finishReason === 'content_filter',
    hasNoMoreCalls: ({ context }) => context.cursor >= context.calls.length,
    isCurrentCallInvalid: ({ context }) => context.calls[context.cursor]?.problem != null,
    /**
     * A review names its reviewer (the approval stage asks about them, the decision is theirs) and is
     * bound to the call id and, when the approver names it, the hash of the exact arguments.
     */
    isForCurrentCall: ({ context }, params: { callId: string; principalId: unknown; argsHash?: string }) =>
      typeof params.principalId === 'string' &&
      params.principalId !== '' &&
      context.calls[context.cursor]?.callId === params.callId &&
      (params.argsHash === undefined || context.calls[context.cursor]?.argsHash === params.argsHash),
    isApproval: ({ context }) => context.review?.kind === 'approve',
    isBackgroundDisabled: ({ context }) => !context.settings.backgroundUpdates,
  },
  actions: {
    /** Sends one mark to the run's telemetry actor; telemetry swallows its own failures. */
    mark: sendTo('telemetry', (_, params: { mark: TelemetryMark }) => ({ type: 'telemetry.mark', mark: params.mark }) satisfies TelemetryEvent),
    /** Keeps a decision in the run's record; `markDecision` then tells telemetry. */
    recordDecision: assign({ decisions: ({ context }, params: { decision: DecisionRecord }) => [...context.decisions, params.decision] }),
    /** Records a tool-stage decision and keeps it for the call's record, in one context update. */
    recordToolDecision: assign(({ context }, params: { decision: DecisionRecord }) => ({
      decisions: [...context.decisions, params.decision],
      pendingDecision: params.decision,
    })),
    /**
     * Sets the model step's absolute deadline as the step starts. The chart has no clock: the
     * runtime provides this action with its own (`runtime.model_deadline_ms`); unprovided, a step has none.
     */
    startModelStep: assign({ modelDeadline: null }),
    /** Counts a model step whose answer ends the run (a successful step counts inside its own update). */
    countModelCall: assign({ usage: ({ context }, params: { response: ModelResponse }) => usageAfter(context, params.response) }),
    fail: enqueueActions(({ enqueue }, params: { error: RunContext['error'] }) => {
      enqueue.assign({ error: params.error });
      if (params.error) enqueue(markAction({ kind: 'run.error', error: params.error }));
    }),
    warn: enqueueActions(({ enqueue }, params: { message: string }) => {
      enqueue.assign({ warnings: ({ context }) => [...context.warnings, params.message] });
      enqueue(markAction({ kind: 'warning', message: params.message }));
    }),
  },
});

/**
 * The telemetry mark of the decision a transition has just recorded (the last in context). A
 * transition records with one context update (`recordDecision`, `recordToolDecision`, or one
 * `assign` that also changes what goes with the decision), then marks: every `assign` makes
 * XState build a new snapshot.
 */
export const markDecision = {
  type: 'mark',
  params: ({ context }: { context: RunContext }) => ({ mark: { kind: 'decision' as const, decision: context.decisions[context.decisions.length - 1]! } }),
} as const;

/** The run's usage after one more model step. */
export function usageAfter(context: RunContext, response: ModelResponse): RunContext['usage'] {
  return {
    modelCalls: context.usage.modelCalls + 1,
    toolCalls: context.usage.toolCalls,
    inputTokens: context.usage.inputTokens + response.usage.inputTokens,
    outputTokens: context.usage.outputTokens + response.usage.outputTokens,
  };
}

/** A decision as the run records it, for `stage` and the run's own principal unless given. */
export function decisionRecord(
  context: RunContext,
  stage: PolicyStage,
  decision: PolicyDecision,
  extra: { callId?: string; capability?: string | null; principalId?: string; argsHash?: string } = {},
): DecisionRecord {
  return {
    verdict: decision.verdict,
    ruleId: decision.ruleId,
    reason: decision.reason,
    stage,
    principalId: extra.principalId ?? context.accepted.principalId,
    ...(extra.capability ? { capability: extra.capability } : {}),
    ...(extra.callId ? { callId: extra.callId } : {}),
    ...(extra.argsHash ? { argsHash: extra.argsHash } : {}),
  };
}

/** Entry and exit marks for a state, so telemetry sees every state on every path. */
export function traced(state: string) {
  return {
    entry: { type: 'mark', params: { mark: { kind: 'state.enter', state } } } as const,
    exit: { type: 'mark', params: { mark: { kind: 'state.exit', state } } } as const,
  };
}

/** The `fail` action for an invoke's `onError`: the error as data, charged to `layer` when it names none. */
export function failedIn(layer: ErrorLayer) {
  return { type: 'fail', params: ({ event }: { event: { error: unknown } }) => ({ error: toRunchartErrorData(event.error, layer) }) } as const;
}

/** The scope every policy question of a run names: the run, its tenant and its principal. */
export function policyScope(context: RunContext) {
  return { runId: context.runId, tenantId: context.accepted.tenantId, principalId: context.accepted.principalId };
}
