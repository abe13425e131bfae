import { checked } from '../src/errors.js';
import { ExecuteResult, hashArguments, type ExecutionGateway } from '../src/execution/contract.js';
import type { ToolExecutionInput } from '../machines/run/types.js';
import { fromLayerCall, type LayerCallOptions } from './layer-call.js';

/**
 * Calls the gateway for one tool call (`executeTool`) with an absolute deadline of `now +
 * deadlineMs` (the gateway keeps the first one on a replay). Arguments that no longer hash to
 * what was planned and approved (redacted before saving, or changed on disk) are refused, never executed.
 * @example
 * runMachine.provide({ actors: { executeTool: executionActor(gateway, { now: Date.now, deadlineMs: 30_000 }) } });
 */
export function executionActor(gateway: ExecutionGateway, options: LayerCallOptions & { now: () => number; deadlineMs: number }) {
  return fromLayerCall<ExecuteResult, ToolExecutionInput>(async ({ input, options: call }) => {
    const { argsHash, ...request } = input;
    if (hashArguments(request.arguments) !== argsHash) {
      return {
        status: 'error',
        error: { kind: 'invalid-input', message: `execution: the arguments of call "${request.callId}" were redacted or changed since they were planned; ask for the call again`, retryable: false },
      };
    }
    return checked(ExecuteResult, await gateway.execute(Object.assign({}, request, { deadline: options.now() + options.deadlineMs }), call), 'execution');
  }, options);
}
