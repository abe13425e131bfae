import { describe, expect, it } from 'vitest';
import type { BackgroundHandler, BackgroundQueue, BackgroundTask } from '../../src/background/contract.js';

const signal = new AbortController().signal;
const task = (id: string, kind = 'note'): BackgroundTask => ({ id, kind, runId: `run-${id}`, tenantId: 'acme', principalId: 'u', payload: { id } });

/** What a queue under test is made with: its handlers, and whom to tell when a task gives up. */
export interface QueueSetup {
  handlers: Record<string, BackgroundHandler>;
  onGiveUp: (task: BackgroundTask, error: unknown) => void;
}

/** The background queue contract: any BackgroundQueue, in process or on PostgreSQL, must pass it. Retries: at least one. */
export function describeQueueContract(name: string, create: (setup: QueueSetup) => Promise<BackgroundQueue>) {
  describe(`background queue contract: ${name}`, () => {
    it('runs each queued task with the handler of its kind, and drain waits for them', async () => {
      const seen: string[] = [];
      const queue = await create({ handlers: { note: async (queued) => void seen.push(queued.id) }, onGiveUp: () => {} });
      await queue.enqueue([task('a'), task('b')], { signal });
      await queue.drain();
      expect(seen.sort()).toEqual(['a', 'b']);
      // Nothing left: a second drain resolves too.
      await queue.drain();
    });

    it('runs a task queued twice with one id once', async () => {
      const seen: string[] = [];
      const queue = await create({ handlers: { note: async (queued) => void seen.push(queued.id) }, onGiveUp: () => {} });
      await queue.enqueue([task('same')], { signal });
      await queue.enqueue([task('same')], { signal });
      await queue.drain();
      expect(seen).toEqual(['same']);
    });

    it('tries a failed task again, with the same task, and drain waits for the retry', async () => {
      const attempts: BackgroundTask[] = [];
      const queue = await create({
        handlers: {
          note: async (queued) => {
            attempts.push(queued);
            if (attempts.length === 1) throw new Error('flaky');
          },
        },
        onGiveUp: () => {},
      });
      await queue.enqueue([task('retried')], { signal });
      await queue.drain();
      expect(attempts).toEqual([task('retried'), task('retried')]);
    });

    it('gives a task up after its retries, says so, and drain still resolves', async () => {
      const given: string[] = [];
      let attempts = 0;
      const queue = await create({
        handlers: {
          note: async () => {
            attempts++;
            throw new Error('always');
          },
        },
        onGiveUp: (queued) => given.push(queued.id),
      });
      await queue.enqueue([task('doomed')], { signal });
      await queue.drain();
      expect(given).toEqual(['doomed']);
      expect(attempts).toBeGreaterThan(1);
    });
  });
}
