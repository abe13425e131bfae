import { assign } from 'xstate';
import type { PolicyDecision } from '../../../src/policy/contract.js';
import { closeCall, toolMessageContent } from '../plan.js';
import { requests } from '../requests.js';
import { asking, decisionRecord, markDecision, runSetup, traced } from '../setup.js';
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

const authorize = asking('toolExecution.authorizing', requests.authorizing);
const park = asking('toolExecution.awaitingApproval', requests.awaitingApproval);
const review = asking('toolExecution.reviewing', requests.reviewing);
const execute = asking('toolExecution.executing', requests.executing);
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
      entry: authorize.entry,
      exit: authorize.exit,
      on: {
        'run.resume': authorize.resume,
        'policy.decided': [
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
        'policy.failed': { target: '#run.failed', actions: { type: 'fail', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    awaitingApproval: {
      // The approval deadline is absolute and kept outside the chart, so a restored run re-arms it.
      entry: park.entry,
      exit: park.exit,
      on: {
        'run.resume': park.resume,
        'approval.expired': {
          target: 'next',
          actions: [
            callMark('rejected', () => 'no approval before the deadline'),
            assign(({ context }) => closeCall(context, { status: 'rejected', reason: 'no approval arrived before the approval deadline' })),
          ],
        },
        'approval.failed': {
          target: 'next',
          actions: [
            callMark('rejected', () => 'the approval timer failed'),
            assign(({ context, event }) => closeCall(context, { status: 'rejected', reason: `the approval could not be awaited: ${event.error.message}` })),
          ],
        },
        'tool.approve': {
          guard: { type: 'isForCurrentCall', params: ({ event }) => ({ callId: event.callId, argsHash: event.argsHash }) },
          target: 'reviewing',
          actions: assign({
            review: ({ event }) => ({ kind: 'approve' as const, callId: event.callId, principalId: event.principalId, reason: '', refusal: null }),
          }),
        },
        'tool.reject': {
          guard: { type: 'isForCurrentCall', params: ({ event }) => ({ callId: event.callId }) },
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
      entry: review.entry,
      exit: review.exit,
      on: {
        'run.resume': review.resume,
        'policy.decided': [
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
        'policy.failed': { target: '#run.failed', actions: { type: 'fail', params: ({ event }) => ({ error: event.error }) } },
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
        execute.entry[0],
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
        execute.entry[1],
      ],
      exit: execute.exit,
      on: {
        'run.resume': execute.resume,
        'tool.executed': {
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
        'tool.failed': { target: '#run.failed', actions: { type: 'fail', params: ({ event }) => ({ error: event.error }) } },
      },
    },
  },
});
