import { hashArguments } from '../../src/execution/contract.js';
import type { PinnedCapability } from '../../src/catalog/contract.js';
import type { ChatMessage, ModelRequest, ToolCall } from '../../src/models/contract.js';
import type { BackgroundTask } from '../../src/background/contract.js';
import type { CallOutcome, CallRecord, PlannedCall, RunContext } from './types.js';

/**
 * Plans the tool calls of one model step. The model is untrusted: a name must match a pinned
 * capability exactly, and the arguments must be a JSON object within the size limit; a call
 * that fails either carries a `problem` and never reaches policy or the gateway.
 */
export function planToolCalls(toolCalls: ToolCall[], capabilities: PinnedCapability[], hop: number, maxArgumentChars: number): PlannedCall[] {
  const uses = new Map<string, number>();
  for (const call of toolCalls) uses.set(call.id, (uses.get(call.id) ?? 0) + 1);
  return toolCalls.map((call, index) => {
    const pinned = capabilities.find((capability) => capability.toolName === call.name);
    // Every call of a repeated id is refused: the results could not be told apart.
    const duplicate = uses.get(call.id)! > 1;
    // Arguments cut to the limit before they reached the chart: the length the model sent.
    const length = call.argumentsChars ?? call.arguments.length;
    return {
      callId: `c${hop}.${index}`,
      modelCallId: call.id,
      toolName: call.name,
      arguments: call.arguments,
      argsHash: hashArguments(call.arguments),
      capability: pinned?.name ?? null,
      version: pinned?.version ?? null,
      problem: duplicate
        ? `tool call id "${call.id}" is used twice in one step`
        : length > maxArgumentChars
          ? `the arguments are ${length} characters, over the limit of ${maxArgumentChars}`
          : pinned
            ? argumentProblem(call.arguments)
            : `unknown tool "${call.name}"; the tools you can call are: ${capabilities.map((capability) => capability.toolName).join(', ') || 'none'}`,
    };
  });
}

function argumentProblem(raw: string): string | null {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    return `the arguments are not valid JSON (${(error as Error).message}); send a JSON object`;
  }
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? null : 'the arguments must be a JSON object';
}

/** What the model is told about a call's outcome. */
export function toolMessageContent(outcome: CallOutcome): string {
  switch (outcome.status) {
    case 'ok':
      return JSON.stringify(outcome.output ?? null);
    case 'error':
      return `error: ${outcome.error.message}`;
    case 'denied':
      return `denied by policy: ${outcome.reason}`;
    case 'rejected':
      return `rejected by the approver: ${outcome.reason}`;
    case 'invalid':
      return `error: ${outcome.reason}`;
    case 'awaiting_approval':
      return 'awaiting approval';
  }
}

/** Closes the current call: its record for the result and its tool message for the model. */
export function closeCall(context: RunContext, outcome: CallOutcome): Pick<RunContext, 'toolCalls' | 'messages' | 'cursor' | 'pendingDecision' | 'review'> {
  const call = context.calls[context.cursor]!;
  const record: CallRecord = {
    callId: call.callId,
    toolName: call.toolName,
    capability: call.capability,
    version: call.version,
    args: call.arguments,
    argsHash: call.argsHash,
    outcome,
    decision: context.pendingDecision,
    approval: context.decisions.findLast((decision) => decision.stage === 'approval' && decision.callId === call.callId && decision.verdict === 'allow') ?? null,
  };
  const message: ChatMessage = { role: 'tool', toolCallId: call.modelCallId, content: toolMessageContent(outcome) };
  return {
    toolCalls: [...context.toolCalls, record],
    messages: [...context.messages, message],
    cursor: context.cursor + 1,
    pendingDecision: null,
    review: null,
  };
}

/** The model request for the next step: system prompt with recalled memory, history, input, this run's turns. */
export function modelRequestFor(context: RunContext): ModelRequest {
  const memory = context.recalled.items.length
    ? `\n\nThings you may know from earlier conversations:\n${context.recalled.items.map((item) => `- ${item.text}`).join('\n')}`
    : '';
  const messages: ChatMessage[] = [
    { role: 'system', content: context.settings.systemPrompt + memory },
    ...context.recalled.history.map((turn): ChatMessage => ({ role: turn.role, content: turn.content })),
    { role: 'user', content: context.accepted.input },
    ...context.messages,
  ];
  const tools = context.accepted.capabilities.map((capability) => ({
    name: capability.toolName,
    description: capability.description,
    parameters: capability.parameters,
  }));
  return { model: context.settings.model, messages, tools };
}

/** The background work of a finished turn: the memory write-back, keyed by the run. */
export function backgroundTasksFor(context: RunContext): BackgroundTask[] {
  return [
    {
      id: `${context.runId}:memory.write`,
      kind: 'memory.write',
      runId: context.runId,
      tenantId: context.accepted.tenantId,
      principalId: context.accepted.principalId,
      payload: { sessionId: context.accepted.sessionId, input: context.accepted.input, output: context.output ?? '' },
    },
  ];
}
