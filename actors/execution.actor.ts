import { checked } from '../src/errors.js';
import { ExecuteResult, hashArguments, type ExecutionGateway } from '../src/execution/contract.js';
import type { ToolExecutionInput } from '../machines/run/types.js';
import type { LayerService } from './layers.actor.js';

/**
 * Calls the gateway for one tool call with an absolute deadline of `now + deadlineMs` (the
 * gateway keeps the first one on a replay). Arguments that no longer hash to what was planned
 * and approved (redacted before saving, or changed on disk) are refused, never executed.
 */
export function executionService(
  gateway: ExecutionGateway,
  options: { now: () => number; deadlineMs: number; /** The built-in gateway's results are right by construction; yours are checked. */ trusted?: boolean },
): LayerService<ToolExecutionInput, ExecuteResult> {
  return async (input, { signal }) => {
    const { argsHash, ...request } = input;
    if (hashArguments(request.arguments) !== argsHash) {
      return {
        status: 'error',
        error: { kind: 'invalid-input', message: `execution: the arguments of call "${request.callId}" were redacted or changed since they were planned; ask for the call again`, retryable: false },
      };
    }
    const result = await gateway.execute(Object.assign({}, request, { deadline: options.now() + options.deadlineMs }), { signal });
    return options.trusted ? result : checked(ExecuteResult, result, 'execution');
  };
}
