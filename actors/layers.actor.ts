import { fromCallback } from 'xstate';
import type { BackgroundTask } from '../src/background/contract.js';
import { RunchartError, toRunchartErrorData } from '../src/errors.js';
import type { ExecuteResult } from '../src/execution/contract.js';
import type { RecallQuery, RecallResult } from '../src/memory/contract.js';
import type { ModelResponse } from '../src/models/contract.js';
import type { PolicyDecision, PolicyRequest } from '../src/policy/contract.js';
import type { LayersInput } from '../machines/run/setup.js';
import { answers } from '../machines/run/requests.js';
import type { AcceptedRequest, ApprovalWaitInput, LayerAnswer, LayerRequest, ModelStepInput, RunInput, ToolExecutionInput } from '../machines/run/types.js';

/** One layer call: a request in, an answer out, cancelled through the signal. */
export type LayerService<Input, Output> = (input: Input, options: { signal: AbortSignal }) => Promise<Output>;

/** The services a run's states ask for, one per request kind; each adapts one layer contract. */
export interface LayerServices {
  acceptRequest: LayerService<RunInput, AcceptedRequest>;
  evaluatePolicy: LayerService<PolicyRequest, PolicyDecision>;
  recallMemory: LayerService<RecallQuery, RecallResult>;
  callModel: LayerService<ModelStepInput, ModelResponse>;
  executeTool: LayerService<ToolExecutionInput, ExecuteResult>;
  enqueueBackground: LayerService<{ tasks: BackgroundTask[] }, void>;
  awaitApproval: LayerService<ApprovalWaitInput, void>;
}

/**
 * The run's service actor, invoked once at the root for the life of the run: each state sends it
 * a request, it calls the layer and sends the answer back as an event (errors as data). One
 * request is in flight per run; a newer one supersedes it (an approval wait, left for a review,
 * is aborted) and a superseded answer is dropped. When the run stops, the in-flight call is aborted.
 * A fresh actor per step would cost an actor, an AbortController and a snapshot each time; this
 * costs one of each per run.
 * @example
 * runMachine.provide({ actors: { callLayers: layersActor({ evaluatePolicy: policyService(policy), … }) } });
 */
export function layersActor(services: LayerServices) {
  return fromCallback<LayerRequest, LayersInput>(({ receive, sendBack, input }) => {
    const run = new AbortController();
    let latest = 0;
    /** Calls not settled yet, superseded ones included: they run on the run's signal until they settle. */
    let outstanding = 0;
    /** Only the approval wait outlives its state (a review supersedes it), so only it gets a signal of its own. */
    let waiting: AbortController | undefined;
    receive((request) => {
      const answer = answers[request.type];
      if (!answer) return; // not a layer request: nothing to call, and the request in flight stays
      const id = ++latest;
      outstanding++;
      waiting?.abort(new RunchartError('cancelled', 'runtime', `runtime: run ${input.runId} stopped waiting for the approval`));
      waiting = request.type === 'approval.await' ? new AbortController() : undefined;
      const signal = waiting ? AbortSignal.any([run.signal, waiting.signal]) : run.signal;
      let pending: Promise<unknown>;
      try {
        // Promise.resolve: a service that answers with a plain value is answered all the same.
        pending = Promise.resolve((services[answer.service] as LayerService<unknown, unknown>)(request.input, { signal }));
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(
        (output) => {
          outstanding--;
          if (id !== latest || run.signal.aborted) return;
          sendBack((answer.done === 'background.queued' || answer.done === 'approval.expired' ? { type: answer.done } : { type: answer.done, output }) as LayerAnswer);
        },
        (error: unknown) => {
          outstanding--;
          if (id !== latest || run.signal.aborted) return;
          sendBack({ type: answer.failed, error: toRunchartErrorData(error, answer.layer) } as LayerAnswer);
        },
      );
    });
    return () => {
      // A run that ends on an answer has nothing to abort (and an error built per run costs a stack trace).
      if (outstanding > 0) run.abort(new RunchartError('cancelled', 'runtime', `runtime: run ${input.runId} stopped`));
      waiting?.abort();
    };
  });
}
