import type { RunchartErrorData } from '../../src/errors.js';
import type { PinnedCapability } from '../../src/catalog/contract.js';
import type { ExecuteResult } from '../../src/execution/contract.js';
import type { ChatMessage, ModelResponse } from '../../src/models/contract.js';
import type { DecisionRecord } from '../../src/policy/contract.js';
import type { BackgroundTask } from '../../src/background/contract.js';
import type { ExecuteRequest } from '../../src/execution/contract.js';
import type { RecallQuery, RecallResult } from '../../src/memory/contract.js';
import type { ModelRequest } from '../../src/models/contract.js';
import type { PolicyDecision, PolicyRequest } from '../../src/policy/contract.js';

/** The parts of the config a run needs, resolved once at start and kept in context. */
export interface RunSettings {
  model: string;
  systemPrompt: string;
  maxToolHops: number;
  maxToolCallsPerStep: number;
  /** null: no token budget. */
  maxTotalTokens: number | null;
  precheckRequired: boolean;
  backgroundUpdates: boolean;
  recallLimit: number;
  maxToolArgumentChars: number;
}

/** What starts a run: the caller's raw request (ingress parses it) and the resolved settings. */
export interface RunInput {
  runId: string;
  request: unknown;
  settings: RunSettings;
}

/** What ingress hands the chart once the request is parsed: identity, input and pinned capabilities. */
export interface AcceptedRequest {
  traceId: string;
  parentSpanId?: string;
  tenantId: string;
  principalId: string;
  sessionId?: string;
  input: string;
  capabilities: PinnedCapability[];
}

/** A tool call of the current model step, as the chart plans it. */
export interface PlannedCall {
  /** Unique in the run (`c<hop>.<index>`); the approval and the idempotency key use it. */
  callId: string;
  /** The id the model gave; tool results are sent back under it. */
  modelCallId: string;
  toolName: string;
  arguments: string;
  argsHash: string;
  capability: string | null;
  version: string | null;
  /** Set when the call cannot run at all (unknown tool, malformed JSON): the model is told why. */
  problem: string | null;
}

/** How one tool call ended. */
export type CallOutcome =
  | ExecuteResult
  | { status: 'denied'; reason: string }
  | { status: 'rejected'; reason: string }
  | { status: 'invalid'; reason: string }
  | { status: 'awaiting_approval' };

/** A finished (or parked) tool call as the run result shows it. */
export interface CallRecord {
  callId: string;
  toolName: string;
  capability: string | null;
  version: string | null;
  args: string;
  argsHash: string;
  outcome: CallOutcome;
  decision: DecisionRecord | null;
  approval: DecisionRecord | null;
}

/** A pending review of a parked call: who asked to approve or reject it. */
export interface Review {
  kind: 'approve' | 'reject';
  callId: string;
  principalId: string;
  reason: string;
  /** Set when policy refused the reviewer; the call stays parked. */
  refusal: DecisionRecord | null;
}

export interface RunUsage {
  modelCalls: number;
  toolCalls: number;
  inputTokens: number;
  outputTokens: number;
}

/**
 * The run's context: plain JSON, persisted and restored as it is. Kept to few top-level keys
 * (what ingress and retrieval produce is kept whole): XState copies the whole context on every
 * assign (on the hot path; see bench/README.md).
 */
export interface RunContext {
  runId: string;
  settings: RunSettings;
  /** The caller's raw request until ingress has parsed it; null after. */
  request: unknown;
  /** What ingress accepted: identity, trace, input and the pinned capabilities (empty until then). */
  accepted: AcceptedRequest;
  /** What retrieval recalled for the input (empty until then, or when memory failed). */
  recalled: RecallResult;
  /** Assistant tool-call messages and tool results of this run, in order. */
  messages: ChatMessage[];
  hops: number;
  /** When the current model step must have answered (epoch ms), set as the step starts; kept, so a restored run keeps it. */
  modelDeadline: number | null;
  calls: PlannedCall[];
  cursor: number;
  /** The current call's tool-stage decision while it is being authorized, approved or executed. */
  pendingDecision: DecisionRecord | null;
  review: Review | null;
  toolCalls: CallRecord[];
  decisions: DecisionRecord[];
  usage: RunUsage;
  output: string | null;
  warnings: string[];
  background: 'queued' | 'skipped' | 'denied' | 'failed' | null;
  /** Why the run failed, or why it was cancelled. */
  error: RunchartErrorData | null;
}

/** The events a caller sends a run; the layers answer as XState's `xstate.done.actor.<id>` / `xstate.error.actor.<id>`. */
export type RunEvent =
  | { type: 'run.cancel'; reason?: string }
  | { type: 'tool.approve'; callId: string; principalId: string; argsHash?: string }
  | { type: 'tool.reject'; callId: string; principalId: string; reason?: string };

/**
 * The model step as the chart asks for it: the request, the run (so streamed text reaches the
 * run's listeners) and the step's absolute deadline (epoch ms; null when none was set).
 */
export type ModelStepInput = ModelRequest & { runId: string; deadline: number | null };

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

/** The background work of a finished turn, queued behind its `memory.write` allow. */
export interface BackgroundInput {
  tasks: BackgroundTask[];
}

export type { ModelResponse, BackgroundTask, RecallQuery, RecallResult, PolicyDecision, PolicyRequest, ExecuteResult };
