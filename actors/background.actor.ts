import type { BackgroundQueue, BackgroundTask } from '../src/background/contract.js';
import type { BackgroundInput } from '../machines/run/types.js';
import { fromLayerCall, type LayerCallOptions } from './layer-call.js';

/**
 * Queues a turn's background tasks plus one per registered hook (`enqueueBackground`); resolves
 * once they are durably queued, not when they finish. The memory write-back is cut to
 * `maxItemChars` (input and answer together), so no turn writes an item that later prompts must carry whole.
 * @example
 * runMachine.provide({ actors: { enqueueBackground: backgroundActor(queue, ['audit'], { maxItemChars: 8_000 }) } });
 */
export function backgroundActor(queue: BackgroundQueue, hookNames: readonly string[], options: LayerCallOptions & { maxItemChars?: number } = {}) {
  return fromLayerCall<void, BackgroundInput>(async ({ input, options: call }) => {
    const tasks = options.maxItemChars === undefined ? input.tasks : input.tasks.map((task) => capped(task, options.maxItemChars!));
    const memoryTask = tasks[0];
    const hooks = memoryTask
      ? hookNames.map((name): BackgroundTask => Object.assign({}, memoryTask, { id: `${memoryTask.runId}:hook:${name}`, kind: `hook:${name}` }))
      : [];
    await queue.enqueue(hooks.length ? [...tasks, ...hooks] : tasks, call);
  }, options);
}

const cutMark = ' … [cut]';

/** A memory write-back whose input and output together fit in `maxChars`: the longer one is cut first. */
function capped(task: BackgroundTask, maxChars: number): BackgroundTask {
  if (task.kind !== 'memory.write') return task;
  const payload = task.payload as { sessionId: string | null; input: string; output: string };
  if (payload.input.length + payload.output.length <= maxChars) return task;
  const half = Math.floor(maxChars / 2);
  const inputChars = Math.min(payload.input.length, Math.max(half, maxChars - payload.output.length));
  const outputChars = maxChars - inputChars;
  const cut = (text: string, chars: number) => (text.length <= chars ? text : `${text.slice(0, Math.max(0, chars - cutMark.length))}${cutMark}`);
  return Object.assign({}, task, { payload: { sessionId: payload.sessionId, input: cut(payload.input, inputChars), output: cut(payload.output, outputChars) } });
}
