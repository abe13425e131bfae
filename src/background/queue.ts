import { RunchartError } from '../errors.js';
import type { BackgroundHandler, BackgroundQueue, BackgroundTask } from './contract.js';

/** Where the queue keeps its tasks so that a restart finishes them. */
export interface QueuePersistence {
  pending(): Promise<BackgroundTask[]>;
  known(id: string): Promise<boolean>;
  save(task: BackgroundTask, state: 'pending' | 'done' | 'failed'): Promise<void>;
}

/** Options of the in-process queue. */
export interface QueueOptions {
  handlers: Record<string, BackgroundHandler>;
  concurrency?: number;
  /** Extra attempts after a failure, with exponential backoff from `backoffMs`. */
  retries?: number;
  backoffMs?: number;
  /** Told about a task that gave up after its last attempt. */
  onGiveUp?: (task: BackgroundTask, error: unknown) => void;
  /** Without it, queued tasks live in memory only. */
  persistence?: QueuePersistence;
}

/**
 * The in-process background queue: retries with backoff, a concurrency limit, one run per task id.
 * @example
 * const queue = createMemoryQueue({ handlers: { 'memory.write': async (task) => {} } });
 */
export function createMemoryQueue(options: QueueOptions): BackgroundQueue & { close(): void; resume(): Promise<number> } {
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

  async function settle(task: BackgroundTask, state: 'done' | 'failed') {
    try {
      await options.persistence?.save(task, state);
    } catch (error) {
      // The task ran; if its end cannot be recorded it runs again after a restart (handlers are idempotent by task id).
      options.onGiveUp?.(task, error);
    }
  }

  async function runTask(task: BackgroundTask) {
    const handler = options.handlers[task.kind];
    for (let attempt = 0; ; attempt++) {
      try {
        if (!handler) throw new RunchartError('not-provided', 'background', `background: no handler for tasks of kind "${task.kind}"`);
        await handler(task, { signal: controller.signal });
        await settle(task, 'done');
        known.delete(task.id); // done for good: the persisted queue (or nobody) dedupes it from here
        return;
      } catch (error) {
        if (controller.signal.aborted) return; // closed: the task stays pending for the next process
        if (attempt >= retries || !handler) {
          options.onGiveUp?.(task, error);
          await settle(task, 'failed');
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
      const fresh: BackgroundTask[] = [];
      for (const task of tasks) {
        if (known.has(task.id) || (await options.persistence?.known(task.id))) continue;
        known.add(task.id);
        fresh.push(task);
      }
      // Durably queued before enqueue resolves: the run's result is released only after this.
      try {
        await Promise.all(fresh.map((task) => options.persistence?.save(task, 'pending')));
      } catch (error) {
        for (const task of fresh) known.delete(task.id);
        throw error;
      }
      pending.push(...fresh);
      queueMicrotask(pump);
    },
    async resume() {
      const stored = (await options.persistence?.pending()) ?? [];
      const fresh = stored.filter((task) => !known.has(task.id));
      for (const task of fresh) known.add(task.id);
      pending.push(...fresh);
      queueMicrotask(pump);
      return fresh.length;
    },
    drain: () =>
      new Promise<void>((resolve) => {
        idle.push(resolve);
        queueMicrotask(settleIdle);
      }),
    close: () => controller.abort(new RunchartError('cancelled', 'background', 'background: the queue was closed')),
  };
}
