import type { ErrorLayer } from '../../src/errors.js';
import { backgroundTasksFor, modelRequestFor } from './plan.js';
import type { LayerRequest, RunContext } from './types.js';

/**
 * How `callLayers` answers each request: the service that serves it, its two answer events, and
 * the layer an error is charged to.
 */
export const answers = {
  'request.accept': { service: 'acceptRequest', done: 'request.accepted', failed: 'request.refused', layer: 'ingress' },
  'policy.evaluate': { service: 'evaluatePolicy', done: 'policy.decided', failed: 'policy.failed', layer: 'policy' },
  'memory.recall': { service: 'recallMemory', done: 'memory.recalled', failed: 'memory.failed', layer: 'memory' },
  'model.step': { service: 'callModel', done: 'model.answered', failed: 'model.failed', layer: 'model' },
  'tool.execute': { service: 'executeTool', done: 'tool.executed', failed: 'tool.failed', layer: 'execution' },
  'background.enqueue': { service: 'enqueueBackground', done: 'background.queued', failed: 'background.failed', layer: 'background' },
  'approval.await': { service: 'awaitApproval', done: 'approval.expired', failed: 'approval.failed', layer: 'runtime' },
} as const satisfies Record<LayerRequest['type'], { service: string; done: string; failed: string; layer: ErrorLayer }>;

const current = (context: RunContext) => context.calls[context.cursor]!;
const scope = (context: RunContext) => ({ runId: context.runId, tenantId: context.accepted.tenantId, principalId: context.accepted.principalId });

/** What each state asks of the layers, built from the run's context alone (so a restored run can ask again). */
export const requests = {
  ingress: (context: RunContext): LayerRequest => ({ type: 'request.accept', input: { runId: context.runId, request: context.request, settings: context.settings } }),
  policy: (context: RunContext): LayerRequest => ({ type: 'policy.evaluate', input: { stage: 'precheck', ...scope(context) } }),
  retrieval: (context: RunContext): LayerRequest => ({
    type: 'memory.recall',
    input: {
      tenantId: context.accepted.tenantId,
      principalId: context.accepted.principalId,
      ...(context.accepted.sessionId ? { sessionId: context.accepted.sessionId } : {}),
      query: context.accepted.input,
      limit: context.settings.recallLimit,
    },
  }),
  modelStep: (context: RunContext): LayerRequest => ({ type: 'model.step', input: { runId: context.runId, ...modelRequestFor(context) } }),
  authorizing: (context: RunContext): LayerRequest => ({
    type: 'policy.evaluate',
    input: { stage: 'tool', ...scope(context), capability: current(context).capability!, version: current(context).version!, callId: current(context).callId },
  }),
  awaitingApproval: (context: RunContext): LayerRequest => ({ type: 'approval.await', input: { runId: context.runId, callId: current(context).callId } }),
  reviewing: (context: RunContext): LayerRequest => ({
    type: 'policy.evaluate',
    input: {
      stage: 'approval',
      ...scope(context),
      principalId: context.review!.principalId,
      capability: current(context).capability!,
      version: current(context).version!,
      callId: current(context).callId,
    },
  }),
  executing: (context: RunContext): LayerRequest => ({
    type: 'tool.execute',
    input: {
      capability: current(context).capability!,
      version: current(context).version!,
      arguments: current(context).arguments,
      argsHash: current(context).argsHash,
      idempotencyKey: `${context.runId}:${current(context).callId}`,
      runId: context.runId,
      callId: current(context).callId,
      tenantId: context.accepted.tenantId,
      principalId: context.accepted.principalId,
    },
  }),
  assembly: (context: RunContext): LayerRequest => ({ type: 'policy.evaluate', input: { stage: 'output', ...scope(context) } }),
  backgroundAuthorizing: (context: RunContext): LayerRequest => ({ type: 'policy.evaluate', input: { stage: 'memory.write', ...scope(context) } }),
  queueing: (context: RunContext): LayerRequest => ({ type: 'background.enqueue', input: { tasks: backgroundTasksFor(context) } }),
};
