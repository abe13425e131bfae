// Two runs of the same kind build objects of the same shape. In Node 20's V8, an object literal
// that opens with a spread and then adds keys (`{ ...a, b }`) gets a hidden class of its own once
// the function that builds it is warm: every such object then costs a new map and descriptor
// array (~0.35 µs and ~250 bytes), and every property read of it goes megamorphic. This test
// walks what two runs keep in context, send as events and return, and fails on any object whose
// hidden class differs from its counterpart's.
import { setFlagsFromString } from 'node:v8';
import type { InspectionEvent } from 'xstate';
import { describe, expect, it } from 'vitest';
import { createRuntime, type ModelAdapter } from '../../src/index.js';
import { allowMath, allowRuns, request, spiedAdd } from '../support/scenario.js';

setFlagsFromString('--allow-natives-syntax');
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;

/** Answers the user with a tool call, and the tool result with text: a one-hop run. */
const oneHopModel: ModelAdapter = {
  name: 'one-hop',
  async step({ messages }) {
    const usage = { inputTokens: 3, outputTokens: 2 };
    return messages.at(-1)?.role === 'user'
      ? { text: null, toolCalls: [{ id: 'call_1', name: 'math_add', arguments: '{"a":2,"b":3}' }], usage, finishReason: 'tool_calls' }
      : { text: '2 + 3 = 5', toolCalls: [], usage, finishReason: 'stop' };
  },
};

/** Paths of plain objects (arrays and actors aside) whose hidden class differs between `left` and `right`. */
function differentShapes(left: unknown, right: unknown, path = '$', seen = new Set<object>()): string[] {
  if (typeof left !== 'object' || left === null || typeof right !== 'object' || right === null || seen.has(left)) return [];
  seen.add(left);
  // Actors, their options and children are XState's own objects.
  if ((left as object).constructor?.name === 'Actor') return [];
  const found = !Array.isArray(left) && !haveSameMap(left, right) ? [`${path} {${Object.keys(left).join(', ')}}`] : [];
  for (const key of Object.keys(left)) {
    if (key in right) found.push(...differentShapes((left as Record<string, unknown>)[key], (right as Record<string, unknown>)[key], `${path}.${key}`, seen));
  }
  return found;
}

describe('hidden classes of what a run builds', () => {
  it('tells two objects of one shape from two of different shapes', () => {
    expect(haveSameMap({ a: 1, b: 2 }, { a: 3, b: 4 })).toBe(true);
    expect(haveSameMap({ a: 1, b: 2 }, { b: 1, a: 2 })).toBe(false);
  });

  it('gives the context, the events and the result of two alike runs the same hidden classes', async () => {
    let events: InspectionEvent[] | undefined;
    const runtime = createRuntime({
      model: oneHopModel,
      capabilities: [spiedAdd().capability],
      config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules: [allowRuns, allowMath] } },
      inspect: (event) => events?.push(event),
    });
    try {
      // Warm up: V8 hands out a hidden class of its own only once the building code has feedback.
      for (let index = 0; index < 12; index++) expect((await runtime.run(request({ sessionId: `warm-${index}` }))).status).toBe('completed');
      const observe = async (sessionId: string) => {
        events = [];
        const handle = runtime.start(request({ sessionId }));
        const result = await handle.result;
        const seen = events;
        events = undefined;
        return { result, context: handle.actor.getSnapshot().context, events: seen.filter((event) => event.type === '@xstate.event').map((event) => event.event) };
      };
      const first = await observe('s-1');
      const second = await observe('s-2');
      expect(first.result.status).toBe('completed');
      expect(first.events.length).toBeGreaterThan(20);
      // The supervisor hears each run end under the run's own id.
      const types = (events: { type: string }[], runId: string) => events.map((event) => event.type.replace(runId, '<run>'));
      expect(types(second.events, second.result.runId)).toEqual(types(first.events, first.result.runId));
      expect(differentShapes(first.context, second.context, 'context')).toEqual([]);
      expect(differentShapes(first.events, second.events, 'events')).toEqual([]);
      expect(differentShapes(first.result, second.result, 'result')).toEqual([]);
    } finally {
      await runtime.drain();
      await runtime.close();
    }
  });
});
