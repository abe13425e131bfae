import { describe, expect, it } from 'vitest';
import { createRecallIndex, MAX_SCORED_ITEMS, MAX_TERMS_PER_ITEM, termsOf } from '../../src/memory/recall-index.js';

const at = (second: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString();

describe('recall index', () => {
  it('splits text into terms: lower case, letters and digits of any script, stop words out, plurals folded', () => {
    expect(termsOf('What are the best Tyres for Winter? Tyre pressure: 2.4 bar; Café crème, 日本語')).toEqual(
      new Map([
        ['best', 1],
        ['tyre', 2],
        ['winter', 1],
        ['pressure', 1],
        ['2', 1],
        ['4', 1],
        ['bar', 1],
        ['café', 1],
        ['crème', 1],
        ['日本語', 1],
      ]),
    );
    expect(termsOf('the and of is it')).toEqual(new Map());
    // Beyond the basic plane: a letter belongs to its word, an emoji parts words.
    expect(termsOf('smile😀later 𝒜x')).toEqual(new Map([['smile', 1], ['later', 1], ['𝒜x', 1]]));
    expect(termsOf(Array.from({ length: 500 }, (_, index) => `word${index}`).join(' ')).size).toBe(MAX_TERMS_PER_ITEM);
  });

  it('ranks an item sharing the rarer term above one sharing a common term, and more shared terms above fewer', () => {
    const index = createRecallIndex({ historyTurns: 10 });
    const texts = ['bake bread at home', 'bake a cake', 'bake cookies', 'bake pies', 'sourdough bread starter'];
    texts.forEach((text, id) => index.add({ id, principalId: 'u', sessionId: null, createdAt: at(id), text }));
    const ranked = index.search('u', 'bake sourdough bread', 5).map(({ id }) => texts[id]);
    expect(ranked[0]).toBe('sourdough bread starter');
    expect(ranked[1]).toBe('bake bread at home');
    expect(ranked).toHaveLength(5);
    expect(index.search('u', 'zebra', 5)).toEqual([]);
    expect(index.search('other', 'bake', 5)).toEqual([]);
    expect(index.search('u', 'bake', 0)).toEqual([]);
  });

  it('scores the matches of the rarest term only, whatever else the principal remembered', () => {
    const grow = (unrelated: number) => {
      const index = createRecallIndex({ historyTurns: 10 });
      let id = 0;
      for (let n = 0; n < unrelated; n++) index.add({ id: id++, principalId: 'u', sessionId: null, createdAt: at(0), text: `weather report number ${n} for the coast` });
      for (let n = 0; n < 3; n++) index.add({ id: id++, principalId: 'u', sessionId: null, createdAt: at(0), text: `how do I repot an orchid ${n}` });
      const found = index.search('u', 'repot my orchid', 5);
      return { found: found.length, scored: index.stats.scored, read: index.stats.postingsRead };
    };
    const small = grow(10);
    const large = grow(20_000);
    expect(small).toMatchObject({ found: 3, scored: 3 });
    // The same work with two thousand times the history: the unrelated items are never looked at.
    expect(large).toEqual(small);
  });

  it('scores at most MAX_SCORED_ITEMS items, the newest matches of the rarest terms, however many match', () => {
    const index = createRecallIndex({ historyTurns: 10 });
    const count = MAX_SCORED_ITEMS * 20;
    for (let id = 0; id < count; id++) index.add({ id, principalId: 'u', sessionId: null, createdAt: at(0), text: `python question ${id % 7 === 0 ? 'decorators' : 'loops'}` });
    const found = index.search('u', 'python decorators', 5);
    expect(index.stats.scored).toBe(MAX_SCORED_ITEMS);
    expect(index.stats.postingsRead).toBeLessThanOrEqual(2 * MAX_SCORED_ITEMS + MAX_SCORED_ITEMS);
    // The newest items naming the rarer term come first.
    const newest = Array.from({ length: count }, (_, id) => id).filter((id) => id % 7 === 0).slice(-5).reverse();
    expect(found.map(({ id }) => id)).toEqual(newest);
  });

  it('takes no candidates from a commoner term once the rarest give enough', () => {
    const index = createRecallIndex({ historyTurns: 10 });
    for (let id = 0; id < 5_000; id++) index.add({ id, principalId: 'u', sessionId: null, createdAt: at(0), text: id % 100 === 0 ? 'garden soil pests' : 'garden furniture' });
    index.search('u', 'garden pests', 5);
    // 50 items name "pests": enough for five results; the 5,000 that name "garden" are not looked through.
    expect(index.stats.scored).toBe(50);
    index.search('u', 'garden', 5);
    expect(index.stats.scored).toBe(50 + MAX_SCORED_ITEMS);
  });

  it('keeps each session\'s latest turns in time order, late ones included, bounded by historyTurns', () => {
    const index = createRecallIndex({ historyTurns: 3 });
    const add = (id: number, second: number, sessionId: string | null = 's') => index.add({ id, principalId: 'u', sessionId, createdAt: at(second), text: `turn ${id}` });
    add(0, 10);
    add(1, 20);
    add(2, 5); // late: before the others
    expect(index.history('u', 's')).toEqual([2, 0, 1]);
    add(3, 30);
    expect(index.history('u', 's')).toEqual([0, 1, 3]);
    add(4, 1); // older than every turn kept: not kept
    expect(index.history('u', 's')).toEqual([0, 1, 3]);
    add(5, 40, 'other');
    add(6, 50, null);
    expect(index.history('u', 's')).toEqual([0, 1, 3]);
    expect(index.history('u', 'other')).toEqual([5]);
    expect(index.history('v', 's')).toEqual([]);
    const none = createRecallIndex({ historyTurns: 0 });
    none.add({ id: 0, principalId: 'u', sessionId: 's', createdAt: at(0), text: 'x' });
    expect(none.history('u', 's')).toEqual([]);
  });
});
