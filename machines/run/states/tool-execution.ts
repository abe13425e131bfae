import { assign } from 'xstate';
import type { PolicyDecision } from '../../../src/policy/contract.js';
import { closeCall, toolMessageContent } from '../plan.js';
import { decisionRecord, failedIn, markDecision, policyScope, runSetup, traced } from '../setup.js';
import type { RunContext } from '../types.js';

type Decided = { context: RunContext; event: { output: PolicyDecision } };
const decision = ({ event }: Decided) => ({ decision: event.output });
const current = (context: RunContext) => context.calls[context.cursor]!;
const toolDecision = ({ context, event }: Decided) =>
  decisionRecord(context, 'tool', event.output, { callId: current(context).callId, capability: current(context).capability });
const recordToolDecision = { type: 'recordToolDecision', params: (done: Decided) => ({ decision: toolDecision(done) }) } as const;
const reviewDecision = ({ context, event }: Decided) =>
  decisionRecord(context, 'approval', event.output, {
    callId: current(context).callId,
    capability: current(context).capability,
    principalId: context.review!.principalId,
    argsHash: current(context).argsHash,
  });
const callMark = (outcome: 'ok' | 'error' | 'denied' | 'rejected' | 'invalid', message?: (context: RunContext) => string) =>
  ({
    type: 'mark',
    params: ({ context }: { context: RunContext }) => ({
      mark: {
        kind: 'tool.call' as const,
        callId: current(context).callId,
        toolName: current(context).toolName,
        ...(current(context).capability ? { capability: current(context).capability! } : {}),
        outcome,
        ...(message ? { message: message(context) } : {}),
      },
    }),
  }) as const;

const authorizing = traced('toolExecution.authorizing');
const awaiting = traced('toolExecution.awaitingApproval');
const reviewing = traced('toolExecution.reviewing');
const executing = traced('toolExecution.executing');
const marks = traced('toolExecution');

/**
 * The tool calls of one model step, one at a time: each is authorized (policy stage `tool`),
 * possibly parked for approval, then executed through the gateway; then back to the model.
 */
export const toolExecution = runSetup.createStateConfig({
  entry: marks.entry,
  exit: marks.exit,
  initial: 'next',
  states: {
    next: {
      always: [
        {
          guard: 'hasNoMoreCalls',
          target: '#run.modelStep',
          actions: assign({ hops: ({ context }) => context.hops + 1, calls: [], cursor: 0 }),
        },
        {
          guard: 'isCurrentCallInvalid',
          actions: [
            callMark('invalid', (context) => current(context).problem!),
            assign(({ context }) => closeCall(context, { status: 'invalid', reason: current(context).problem! })),
          ],
        },
        { target: 'authorizing' },
      ],
    },
    authorizing: {
      entry: authorizing.entry,
      exit: authorizing.exit,
      invoke: {
        id: 'authorizeTool',
        src: 'evaluatePolicy',
        input: ({ context }) => ({
          stage: 'tool' as const,
          ...policyScope(context),
          capability: current(context).capability!,
          version: current(context).version!,
          callId: current(context).callId,
        }),
        onDone: [
          {
            guard: { type: 'isAllowed', params: decision },
            target: 'executing',
            actions: [recordToolDecision, markDecision],
          },
          {
            guard: { type: 'needsApproval', params: decision },
            target: 'awaitingApproval',
            actions: [recordToolDecision, markDecision],
          },
          {
            target: 'next',
            actions: [
              recordToolDecision,
              markDecision,
              callMark('denied', (context) => context.pendingDecision!.reason),
              assign(({ context }) => closeCall(context, { status: 'denied', reason: `${context.pendingDecision!.reason} (rule ${context.pendingDecision!.ruleId})` })),
            ],
          },
        ],
        onError: { target: '#run.failed', actions: failedIn('policy') },
      },
    },
    awaitingApproval: {
      // The approval deadline is absolute and kept in the journal, so a restored run waits only for what is left.
      entry: awaiting.entry,
      exit: awaiting.exit,
      invoke: {
        id: 'awaitApproval',
        src: 'awaitApproval',
        input: ({ context }) => ({ runId: context.runId, callId: current(context).callId }),
        onDone: {
          target: 'next',
          actions: [
            callMark('rejected', () => 'no approval before the deadline'),
            assign(({ context }) => closeCall(context, { status: 'rejected', reason: 'no approval arrived before the approval deadline' })),
          ],
        },
        // A wait that cannot be kept is the runtime's failure, never a rejection in an approver's name.
        onError: { target: '#run.failed', actions: failedIn('runtime') },
      },
      on: {
        'tool.approve': {
          guard: { type: 'isForCurrentCall', params: ({ event }) => ({ callId: event.callId, principalId: event.principalId, argsHash: event.argsHash }) },
          target: 'reviewing',
          actions: assign({
            review: ({ event }) => ({ kind: 'approve' as const, callId: event.callId, principalId: event.principalId, reason: '', refusal: null }),
          }),
        },
        'tool.reject': {
          guard: { type: 'isForCurrentCall', params: ({ event }) => ({ callId: event.callId, principalId: event.principalId }) },
          target: 'reviewing',
          actions: assign({
            review: ({ event }) => ({
              kind: 'reject' as const,
              callId: event.callId,
              principalId: event.principalId,
              reason: event.reason ?? 'no reason given',
              refusal: null,
            }),
          }),
        },
      },
    },
    reviewing: {
      entry: reviewing.entry,
      exit: reviewing.exit,
      invoke: {
        id: 'reviewApproval',
        src: 'evaluatePolicy',
        input: ({ context }) => ({
          stage: 'approval' as const,
          runId: context.runId,
          tenantId: context.accepted.tenantId,
          principalId: context.review!.principalId,
          capability: current(context).capability!,
          version: current(context).version!,
          callId: current(context).callId,
        }),
        onDone: [
          {
            guard: { type: 'isAllowed', params: decision },
            target: 'reviewed',
            actions: [{ type: 'recordDecision', params: (done) => ({ decision: reviewDecision(done) }) }, markDecision],
          },
          {
            target: 'awaitingApproval',
            actions: [
              assign((done) => {
                const record = reviewDecision(done);
                return { decisions: [...done.context.decisions, record], review: Object.assign({}, done.context.review!, { refusal: record }) };
              }),
              markDecision,
            ],
          },
        ],
        onError: { target: '#run.failed', actions: failedIn('policy') },
      },
    },
    reviewed: {
      always: [
        { guard: 'isApproval', target: 'executing', actions: assign({ review: null }) },
        {
          target: 'next',
          actions: [
            callMark('rejected', (context) => context.review!.reason),
            assign(({ context }) => closeCall(context, { status: 'rejected', reason: `${context.review!.reason} (by ${context.review!.principalId})` })),
          ],
        },
      ],
    },
    executing: {
      entry: [
        executing.entry,
        {
          type: 'mark',
          params: ({ context }) => ({
            mark: {
              kind: 'tool.start' as const,
              callId: current(context).callId,
              toolName: current(context).toolName,
              capability: current(context).capability!,
              version: current(context).version!,
              arguments: current(context).arguments,
            },
          }),
        },
      ],
      exit: executing.exit,
      invoke: {
        id: 'executeTool',
        src: 'executeTool',
        input: ({ context }) => ({
          capability: current(context).capability!,
          version: current(context).version!,
          arguments: current(context).arguments,
          argsHash: current(context).argsHash,
          idempotencyKey: `${context.runId}:${current(context).callId}`,
          runId: context.runId,
          callId: current(context).callId,
          tenantId: context.accepted.tenantId,
          principalId: context.accepted.principalId,
        }),
        onDone: {
          target: 'next',
          actions: [
            {
              type: 'mark',
              params: ({ context, event }) => ({
                mark: {
                  kind: 'tool.call' as const,
                  callId: current(context).callId,
                  toolName: current(context).toolName,
                  capability: current(context).capability!,
                  outcome: event.output.status,
                  ...(event.output.status === 'error' ? { message: event.output.error.message } : {}),
                  result: toolMessageContent(event.output),
                },
              }),
            },
            assign(({ context, event }) => ({
              usage: Object.assign({}, context.usage, { toolCalls: context.usage.toolCalls + 1 }),
              ...closeCall(context, event.output),
            })),
          ],
        },
        onError: { target: '#run.failed', actions: failedIn('execution') },
      },
    },
  },
});
