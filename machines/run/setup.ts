import { assign, enqueueActions, setup } from 'xstate';
import type { BackgroundTask } from '../../src/background/contract.js';
import type { ExecuteRequest, ExecuteResult } from '../../src/execution/contract.js';
import type { RecallQuery, RecallResult } from '../../src/memory/contract.js';
import type { ModelRequest, ModelResponse } from '../../src/models/contract.js';
import type { DecisionRecord, PolicyDecision, PolicyRequest, PolicyStage } from '../../src/policy/contract.js';
import type { TelemetryMark } from '../../src/telemetry/contract.js';
import { placeholder, silentTelemetry } from '../placeholder.js';
import type { AcceptedRequest, RunContext, RunEvent, RunInput } from './types.js';

/** What the telemetry actor receives: one mark per state entry, exit, decision, model step and tool call. */
export type TelemetryEvent = { type: 'telemetry.mark'; mark: TelemetryMark };

/** Input of the telemetry actor: the run id until ingress has accepted the request. */
export interface TelemetryInput {
  runId: string;
}

/**
 * The tool call the chart hands the gateway, with the hash the call was planned (and approved)
 * with; the actor refuses arguments that no longer match it and sets the absolute deadline.
 */
export type ToolExecutionInput = Omit<ExecuteRequest, 'deadline'> & { argsHash: string };

/** Which parked call an approval deadline belongs to. */
export interface ApprovalWaitInput {
  runId: string;
  callId: string;
}

/** The named `mark` action with its params; typed loosely because setup's own actions cannot name each other. */
const markAction = (mark: TelemetryMark) => ({ type: 'mark', params: { mark } }) as never;

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
    callModel: placeholder<ModelResponse, ModelRequest & { runId: string }>('callModel'),
    executeTool: placeholder<ExecuteResult, ToolExecutionInput>('executeTool'),
    enqueueBackground: placeholder<void, { tasks: BackgroundTask[] }>('enqueueBackground'),
    awaitApproval: placeholder<void, ApprovalWaitInput>('awaitApproval'),
    recordTelemetry: silentTelemetry<TelemetryEvent, TelemetryInput>(),
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
    hasNoMoreCalls: ({ context }) => context.cursor >= context.calls.length,
    isCurrentCallInvalid: ({ context }) => context.calls[context.cursor]?.problem != null,
    /** An approval is bound to the call id and, when the approver names it, the hash of the exact arguments. */
    isForCurrentCall: ({ context }, params: { callId: string; argsHash?: string }) =>
      context.calls[context.cursor]?.callId === params.callId &&
      (params.argsHash === undefined || context.calls[context.cursor]?.argsHash === params.argsHash),
    isApproval: ({ context }) => context.review?.kind === 'approve',
    isBackgroundDisabled: ({ context }) => !context.settings.backgroundUpdates,
  },
  actions: {
    /** Sends one mark to the telemetry actor; telemetry swallows its own failures. */
    mark: enqueueActions(({ enqueue }, params: { mark: TelemetryMark }) => {
      enqueue.sendTo('telemetry', { type: 'telemetry.mark', mark: params.mark } satisfies TelemetryEvent);
    }),
    /** Keeps a decision in the run's record and tells telemetry about it. */
    // Each of these marks through the `mark` action, so a runtime that provides a faster `mark` speeds up all of them.
    recordDecision: enqueueActions(({ enqueue }, params: { decision: DecisionRecord }) => {
      enqueue.assign({ decisions: ({ context }) => [...context.decisions, params.decision] });
      enqueue(markAction({ kind: 'decision', decision: params.decision }));
    }),
    fail: enqueueActions(({ enqueue }, params: { error: RunContext['error'] }) => {
      enqueue.assign({ error: params.error });
      if (params.error) enqueue(markAction({ kind: 'run.error', error: params.error }));
    }),
    warn: enqueueActions(({ enqueue }, params: { message: string }) => {
      enqueue.assign({ warnings: ({ context }) => [...context.warnings, params.message] });
      enqueue(markAction({ kind: 'warning', message: params.message }));
    }),
    countModelCall: assign({
      usage: ({ context }, params: { response: ModelResponse }) => ({
        ...context.usage,
        modelCalls: context.usage.modelCalls + 1,
        inputTokens: context.usage.inputTokens + params.response.usage.inputTokens,
        outputTokens: context.usage.outputTokens + params.response.usage.outputTokens,
      }),
    }),
  },
});

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
    principalId: extra.principalId ?? context.principalId,
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
