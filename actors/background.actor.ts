import type { BackgroundQueue, BackgroundTask } from '../src/background/contract.js';
import type { LayerService } from './layers.actor.js';

/** Queues a turn's background tasks plus one per registered hook; resolves once they are queued. */
export function backgroundService(queue: BackgroundQueue, hookNames: readonly string[]): LayerService<{ tasks: BackgroundTask[] }, void> {
  return async (input, { signal }) => {
    const memoryTask = input.tasks[0];
    const hooks = memoryTask
      ? hookNames.map((name): BackgroundTask => Object.assign({}, memoryTask, { id: `${memoryTask.runId}:hook:${name}`, kind: `hook:${name}` }))
      : [];
    await queue.enqueue(hooks.length ? [...input.tasks, ...hooks] : input.tasks, { signal });
  };
}
