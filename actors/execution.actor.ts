import { fromPromise } from 'xstate';
import { checked } from '../src/errors.js';
import { ExecuteResult, type ExecutionGateway } from '../src/execution/contract.js';
import type { ToolExecutionInput } from '../machines/run/setup.js';

/** Calls the gateway for one tool call with an absolute deadline of `now + deadlineMs`. */
export function executionActor(gateway: ExecutionGateway, options: { now: () => number; deadlineMs: number }) {
  return fromPromise<ExecuteResult, ToolExecutionInput>(async ({ input, signal }) =>
    checked(ExecuteResult, await gateway.execute({ ...input, deadline: options.now() + options.deadlineMs }, { signal }), 'execution'),
  );
}
