import type { RunchartErrorData } from '../../src/errors.js';
import type { DecisionRecord } from '../../src/policy/contract.js';
import { isFinalStatus, type RunStatus } from '../../src/store/contract.js';
import type { CallRecord, RunContext, RunUsage } from './types.js';

/** What a caller gets back when a run settles: finished, or parked for approval. */
export interface RunResult {
  runId: string;
  traceId: string;
  tenantId: string;
  principalId: string;
  status: RunStatus;
  output: string | null;
  toolCalls: CallRecord[];
  decisions: DecisionRecord[];
  usage: RunUsage;
  warnings: string[];
  /** What happened to the background write-back: queued, skipped (disabled), denied, failed; null if never reached. */
  background: RunContext['background'];
  error?: RunchartErrorData;
}

/** The status of a snapshot's state value. */
export function statusOf(value: unknown): RunStatus {
  if (typeof value === 'string' && isFinalStatus(value)) return value as RunStatus;
  if (typeof value === 'object' && value !== null && (value as Record<string, unknown>).toolExecution === 'awaitingApproval') return 'awaiting_approval';
  return 'running';
}

/** Builds the RunResult from a run's state value and context; a parked call is listed as awaiting approval. */
export function toRunResult(value: unknown, context: RunContext): RunResult {
  const status = statusOf(value);
  const toolCalls = [...context.toolCalls];
  if (status === 'awaiting_approval') {
    const call = context.calls[context.cursor]!;
    toolCalls.push({
      callId: call.callId,
      toolName: call.toolName,
      capability: call.capability,
      version: call.version,
      args: call.arguments,
      argsHash: call.argsHash,
      outcome: { status: 'awaiting_approval' },
      decision: context.pendingDecision,
      approval: null,
    });
  }
  return {
    runId: context.runId,
    traceId: context.accepted.traceId,
    tenantId: context.accepted.tenantId,
    principalId: context.accepted.principalId,
    status,
    output: status === 'completed' ? context.output : null,
    toolCalls,
    decisions: context.decisions,
    usage: context.usage,
    warnings: context.warnings,
    background: context.background,
    ...(context.error ? { error: context.error } : {}),
  };
}
