import { RunchartError } from '../errors.js';
import type { BackgroundHandler, BackgroundQueue, BackgroundTask } from './contract.js';

/** Options of the in-process queue. */
export interface QueueOptions {
  handlers: Record<string, BackgroundHandler>;
  concurrency?: number;
  /** Extra attempts after a failure, with exponential backoff from `backoffMs`. */
  retries?: number;
  backoffMs?: number;
  /** Told about a task that gave up after its last attempt. */
  onGiveUp?: (task: BackgroundTask, error: unknown) => void;
}

/**
 * The in-process background queue: retries with backoff, a concurrency limit, one run per task id.
 * @example
 * const queue = createMemoryQueue({ handlers: { 'memory.write': async (task) => {} } });
 */
export function createMemoryQueue(options: QueueOptions): BackgroundQueue & { close(): void } {
  const concurrency = options.concurrency ?? 4;
  const retries = options.retries ?? 3;
  const backoffMs = options.backoffMs ?? 50;
  const pending: BackgroundTask[] = [];
  const known = new Set<string>();
  const idle: (() => void)[] = [];
  const controller = new AbortController();
  let active = 0;

  const settleIdle = () => {
    if (active === 0 && pending.length === 0) for (const resolve of idle.splice(0)) resolve();
  };

  async function runTask(task: BackgroundTask) {
    const handler = options.handlers[task.kind];
    for (let attempt = 0; ; attempt++) {
      try {
        if (!handler) throw new RunchartError('not-provided', 'background', `background: no handler for tasks of kind "${task.kind}"`);
        await handler(task, { signal: controller.signal });
        return;
      } catch (error) {
        if (attempt >= retries || controller.signal.aborted || !handler) {
          options.onGiveUp?.(task, error);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, backoffMs * 2 ** attempt));
      }
    }
  }

  function pump() {
    while (active < concurrency && pending.length > 0) {
      const task = pending.shift()!;
      active++;
      void runTask(task).finally(() => {
        active--;
        pump();
        settleIdle();
      });
    }
  }

  return {
    async enqueue(tasks) {
      for (const task of tasks) {
        if (known.has(task.id)) continue;
        known.add(task.id);
        pending.push(task);
      }
      queueMicrotask(pump);
    },
    drain: () =>
      new Promise<void>((resolve) => {
        idle.push(resolve);
        queueMicrotask(settleIdle);
      }),
    close: () => controller.abort(new RunchartError('cancelled', 'background', 'background: the queue was closed')),
  };
}
