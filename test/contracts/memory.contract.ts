import { describe, expect, it } from 'vitest';
import type { MemoryLayer, MemoryRecord } from '../../src/memory/contract.js';
import { RecallResult } from '../../src/memory/contract.js';

const signal = new AbortController().signal;
let clock = Date.parse('2026-01-01T00:00:00Z');
const record = (overrides: Partial<MemoryRecord> = {}): MemoryRecord => ({
  tenantId: 'acme',
  principalId: 'user-1',
  sessionId: 's-1',
  runId: `run-${clock}`,
  input: 'what is the capital of France?',
  output: 'Paris is the capital of France.',
  createdAt: new Date((clock += 1000)).toISOString(),
  ...overrides,
});

/** The memory contract: any MemoryLayer, fake or real, must pass it. */
export function describeMemoryContract(name: string, create: () => Promise<MemoryLayer>) {
  describe(`memory contract: ${name}`, () => {
    it('recalls a remembered turn for a related query, ranked, in the contract shape', async () => {
      const memory = await create();
      await memory.remember(record(), { idempotencyKey: 'k1', signal });
      await memory.remember(record({ input: 'how do I bake bread?', output: 'Flour, water, salt, yeast.' }), { idempotencyKey: 'k2', signal });
      const result = RecallResult.parse(await memory.recall({ tenantId: 'acme', principalId: 'user-1', query: 'capital of France', limit: 5 }, { signal }));
      expect(result.items[0]?.text).toContain('Paris');
      expect(result.items.every((item, index) => index === 0 || item.score <= result.items[index - 1]!.score)).toBe(true);
    });

    it('stores one item per idempotency key', async () => {
      const memory = await create();
      await memory.remember(record(), { idempotencyKey: 'same', signal });
      await memory.remember(record({ output: 'a second answer about France' }), { idempotencyKey: 'same', signal });
      const result = await memory.recall({ tenantId: 'acme', principalId: 'user-1', sessionId: 's-1', query: 'France', limit: 10 }, { signal });
      expect(result.items).toHaveLength(1);
      expect(result.history).toHaveLength(2);
    });

    it('returns the session history oldest first, as user and assistant turns', async () => {
      const memory = await create();
      await memory.remember(record({ input: 'first', output: 'one' }), { idempotencyKey: 'a', signal });
      await memory.remember(record({ input: 'second', output: 'two' }), { idempotencyKey: 'b', signal });
      await memory.remember(record({ sessionId: 'other', input: 'elsewhere', output: 'x' }), { idempotencyKey: 'c', signal });
      const { history } = await memory.recall({ tenantId: 'acme', principalId: 'user-1', sessionId: 's-1', query: 'anything', limit: 5 }, { signal });
      expect(history).toEqual([
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'one' },
        { role: 'user', content: 'second' },
        { role: 'assistant', content: 'two' },
      ]);
    });

    it('keeps the history in time order as turns arrive, late ones included, and up to date between recalls', async () => {
      const memory = await create();
      const at = (second: number) => new Date(Date.parse('2026-02-01T00:00:00Z') + second * 1000).toISOString();
      const scope = { tenantId: 'acme', principalId: 'user-1', sessionId: 's-9', query: 'anything', limit: 5 };
      const turns = async () => (await memory.recall(scope, { signal })).history.filter((turn) => turn.role === 'user').map((turn) => turn.content);
      await memory.remember(record({ sessionId: 's-9', input: 't2', createdAt: at(2) }), { idempotencyKey: 'h2', signal });
      expect(await turns()).toEqual(['t2']);
      await memory.remember(record({ sessionId: 's-9', input: 't3', createdAt: at(3) }), { idempotencyKey: 'h3', signal });
      // A write-back that arrives late (a retried background task) still takes its place in time.
      await memory.remember(record({ sessionId: 's-9', input: 't1', createdAt: at(1) }), { idempotencyKey: 'h1', signal });
      await memory.remember(record({ sessionId: 's-9', principalId: 'user-2', input: 'theirs', createdAt: at(4) }), { idempotencyKey: 'h4', signal });
      expect(await turns()).toEqual(['t1', 't2', 't3']);
      for (let index = 0; index < 12; index++) {
        await memory.remember(record({ sessionId: 's-9', input: `n${index}`, createdAt: at(10 + index) }), { idempotencyKey: `n${index}`, signal });
      }
      // The last ten turns (the default history_turns), oldest first.
      expect(await turns()).toEqual(Array.from({ length: 10 }, (_, index) => `n${index + 2}`));
    });

    it('never reads across tenants or principals', async () => {
      const memory = await create();
      await memory.remember(record({ tenantId: 'acme' }), { idempotencyKey: 'k', signal });
      const other = await memory.recall({ tenantId: 'globex', principalId: 'user-1', sessionId: 's-1', query: 'capital of France', limit: 5 }, { signal });
      expect(other).toEqual({ items: [], history: [] });
      const stranger = await memory.recall({ tenantId: 'acme', principalId: 'user-2', sessionId: 's-1', query: 'capital of France', limit: 5 }, { signal });
      expect(stranger).toEqual({ items: [], history: [] });
    });

    it('respects the limit and finds nothing for an unrelated query', async () => {
      const memory = await create();
      for (let index = 0; index < 5; index++) {
        await memory.remember(record({ input: `France question ${index}` }), { idempotencyKey: `k${index}`, signal });
      }
      const limited = await memory.recall({ tenantId: 'acme', principalId: 'user-1', query: 'France', limit: 2 }, { signal });
      expect(limited.items).toHaveLength(2);
      const none = await memory.recall({ tenantId: 'acme', principalId: 'user-1', query: 'zebra', limit: 5 }, { signal });
      expect(none.items).toEqual([]);
    });
  });
}
