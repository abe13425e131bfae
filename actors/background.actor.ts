import type { BackgroundQueue, BackgroundTask } from '../src/background/contract.js';
import type { BackgroundInput } from '../machines/run/types.js';
import { fromLayerCall, type LayerCallOptions } from './layer-call.js';

/**
 * Queues a turn's background tasks plus one per registered hook (`enqueueBackground`); resolves
 * once they are durably queued, not when they finish.
 * @example
 * runMachine.provide({ actors: { enqueueBackground: backgroundActor(queue, ['audit']) } });
 */
export function backgroundActor(queue: BackgroundQueue, hookNames: readonly string[], options: LayerCallOptions = {}) {
  return fromLayerCall<void, BackgroundInput>(async ({ input, signal }) => {
    const memoryTask = input.tasks[0];
    const hooks = memoryTask
      ? hookNames.map((name): BackgroundTask => Object.assign({}, memoryTask, { id: `${memoryTask.runId}:hook:${name}`, kind: `hook:${name}` }))
      : [];
    await queue.enqueue(hooks.length ? [...input.tasks, ...hooks] : input.tasks, { signal });
  }, options);
}
