import { assign } from 'xstate';
import { runSetup, traced } from './setup.js';
import { assembly } from './states/assembly.js';
import { background } from './states/background.js';
import { ingress } from './states/ingress.js';
import { modelStep } from './states/model-step.js';
import { policy } from './states/policy.js';
import { retrieval } from './states/retrieval.js';
import { toolExecution } from './states/tool-execution.js';
import type { RunInput } from './types.js';

/**
 * The run statechart: ingress → policy → retrieval → modelStep ⇄ toolExecution → assembly →
 * background, ending in completed, denied, failed or cancelled. Each state that calls a layer
 * invokes it (`src` names the kind of call, `id` the call site: `checkPrecheck`, `authorizeTool`
 * and `checkOutput` all invoke `evaluatePolicy`); telemetry is invoked once at the root for the
 * life of the run. Every layer call is a stand-in until the runtime (or your own code) provides it.
 * @example
 * const actor = createActor(runMachine.provide({ actors: { evaluatePolicy: policyActor(policy), callModel: modelActor(model), … } }), { input }).start();
 */
export const runMachine = runSetup.createMachine({
  id: 'run',
  context: ({ input }: { input: RunInput }) => ({
    runId: input.runId,
    settings: input.settings,
    request: input.request,
    accepted: { traceId: '', tenantId: '', principalId: '', input: '', capabilities: [] },
    recalled: { items: [], history: [] },
    messages: [],
    hops: 0,
    modelDeadline: null,
    calls: [],
    cursor: 0,
    pendingDecision: null,
    review: null,
    toolCalls: [],
    decisions: [],
    usage: { modelCalls: 0, toolCalls: 0, inputTokens: 0, outputTokens: 0 },
    output: null,
    warnings: [],
    background: null,
    error: null,
  }),
  invoke: { id: 'telemetry', src: 'recordTelemetry', input: ({ context }) => ({ runId: context.runId }) },
  on: {
    'run.cancel': {
      target: '.cancelled',
      actions: assign({ error: ({ event }) => ({ kind: 'cancelled' as const, layer: 'runtime' as const, message: `runtime: ${event.reason ?? 'cancelled by the caller'}`, retryable: false }) }),
    },
  },
  initial: 'ingress',
  states: {
    ingress,
    policy,
    retrieval,
    modelStep,
    toolExecution,
    assembly,
    background,
    completed: { type: 'final', entry: traced('completed').entry },
    denied: { type: 'final', entry: traced('denied').entry },
    failed: { type: 'final', entry: traced('failed').entry },
    cancelled: { type: 'final', entry: traced('cancelled').entry },
  },
});

export type RunMachine = typeof runMachine;
