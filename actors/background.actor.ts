import { fromPromise } from 'xstate';
import type { BackgroundQueue, BackgroundTask } from '../src/background/contract.js';

/** Queues a turn's background tasks plus one per registered hook; resolves once they are queued. */
export function backgroundActor(queue: BackgroundQueue, hookNames: readonly string[]) {
  return fromPromise<void, { tasks: BackgroundTask[] }>(async ({ input, signal }) => {
    const memoryTask = input.tasks[0];
    const hooks = memoryTask
      ? hookNames.map((name): BackgroundTask => ({ ...memoryTask, id: `${memoryTask.runId}:hook:${name}`, kind: `hook:${name}` }))
      : [];
    await queue.enqueue([...input.tasks, ...hooks], { signal });
  });
}
