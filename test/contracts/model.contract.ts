import { describe, expect, it } from 'vitest';
import { isRunchartError, toRunchartErrorData, type ErrorKind } from '../../src/errors.js';
import { ModelResponse, type ModelAdapter, type ModelDelta, type ModelRequest, type ToolCall, type Usage } from '../../src/models/contract.js';

/** One step of the model's script, in the contract's terms; each factory turns it into its own kind of script. */
export type ContractStep =
  | { text: string; usage?: Usage }
  | { toolCalls: ToolCall[]; usage?: Usage }
  /** The step fails the way `kind` says (HTTP statuses and bad bodies for a real adapter). */
  | { fail: Extract<ErrorKind, 'auth' | 'rate-limited' | 'invalid-input' | 'upstream' | 'contract-violation'> }
  /** The step never answers on its own. */
  | { hang: true };

/** A model set up with a script, and what the suite needs to look inside it. */
export interface ModelUnderTest {
  model: ModelAdapter;
  /** Whether `step` streams text to `onDelta` (an adapter that cannot stream never calls it). */
  streams: boolean;
  /** The requests as the model received them, in the contract's shapes. */
  seen(): ModelRequest[];
  /** Resolves once the model has received `count` requests. */
  received(count: number): Promise<void>;
  /** Throws when scripted steps were left unused. */
  verify(): void;
}

const usage: Usage = { inputTokens: 31, outputTokens: 9 };
const addSpec = {
  name: 'math_add',
  description: 'Add two numbers',
  parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } }, required: ['a', 'b'], additionalProperties: false },
};
const ask = (overrides: Partial<ModelRequest> = {}): ModelRequest => ({
  model: 'gpt-test',
  messages: [
    { role: 'system', content: 'You are a careful calculator.' },
    { role: 'user', content: 'what is 2+3?' },
  ],
  tools: [addSpec],
  ...overrides,
});
const signal = () => new AbortController().signal;

async function failureOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the step to fail, but it answered');
}

/**
 * The model contract: any ModelAdapter, fake or real, must pass it.
 * @example
 * describeModelContract('scripted', async (steps) => ({ model: scriptedModel(toScript(steps)), streams: false, ... }));
 */
export function describeModelContract(name: string, create: (steps: ContractStep[]) => Promise<ModelUnderTest>) {
  describe(`model contract: ${name}`, () => {
    it('answers with text in the contract shape', async () => {
      const subject = await create([{ text: 'The answer is 5.', usage }]);
      const response = await subject.model.step(ask(), { signal: signal() });
      expect(ModelResponse.parse(response)).toEqual({ text: 'The answer is 5.', toolCalls: [], usage, finishReason: 'stop' });
      subject.verify();
    });

    it('asks for a tool with its call id, its name and the raw argument text, unparsed', async () => {
      const raw = '{"a": 2,  "b":3}';
      const subject = await create([{ toolCalls: [{ id: 'call_1', name: 'math_add', arguments: raw }], usage }]);
      const response = await subject.model.step(ask(), { signal: signal() });
      expect(ModelResponse.parse(response)).toEqual({ text: null, toolCalls: [{ id: 'call_1', name: 'math_add', arguments: raw }], usage, finishReason: 'tool_calls' });
      subject.verify();
    });

    it('keeps parallel tool calls in the order the model made them, malformed arguments included', async () => {
      const calls = [
        { id: 'call_a', name: 'math_add', arguments: '{"a":1,"b":2}' },
        { id: 'call_b', name: 'math_add', arguments: '{"a":' },
      ];
      const subject = await create([{ toolCalls: calls }]);
      const response = await subject.model.step(ask(), { signal: signal() });
      expect(response.toolCalls).toEqual(calls);
      subject.verify();
    });

    it('sees the conversation as given: tool calls, tool results and tools keep their ids, names and text', async () => {
      const request = ask({
        messages: [
          ...ask().messages,
          { role: 'assistant', content: null, toolCalls: [{ id: 'call_1', name: 'math_add', arguments: '{"a":2,"b":3}' }] },
          { role: 'tool', toolCallId: 'call_1', content: '5' },
          { role: 'assistant', content: 'It is 5.' },
          { role: 'user', content: 'and without tools?' },
        ],
        tools: [],
      });
      const before = structuredClone(request);
      const subject = await create([{ text: 'Still 5.' }]);
      await subject.model.step(request, { signal: signal() });
      expect(subject.seen()).toEqual([request]);
      expect(request).toEqual(before);
      subject.verify();
    });

    it('streams text to onDelta when it can: the pieces add up to the text, and come before the answer', async () => {
      const subject = await create([{ text: 'Two plus three is five.' }]);
      const deltas: ModelDelta[] = [];
      let settled = false;
      const response = await subject.model.step(ask(), {
        signal: signal(),
        onDelta: (delta) => {
          expect(settled).toBe(false);
          deltas.push(delta);
        },
      });
      settled = true;
      expect(response.text).toBe('Two plus three is five.');
      if (subject.streams) {
        expect(deltas.length).toBeGreaterThan(1);
        expect(deltas.map((delta) => delta.text).join('')).toBe(response.text);
      } else {
        expect(deltas).toEqual([]);
      }
      subject.verify();
    });

    it('gives the same tool calls, usage and finish reason when someone listens for deltas', async () => {
      const calls = [
        { id: 'call_x', name: 'math_add', arguments: '{"a":10,"b":20}' },
        { id: 'call_y', name: 'math_add', arguments: '{"a":1,"b":1}' },
      ];
      const subject = await create([{ toolCalls: calls, usage }]);
      const deltas: ModelDelta[] = [];
      const response = await subject.model.step(ask(), { signal: signal(), onDelta: (delta) => deltas.push(delta) });
      expect(ModelResponse.parse(response)).toEqual({ text: null, toolCalls: calls, usage, finishReason: 'tool_calls' });
      expect(deltas).toEqual([]);
      subject.verify();
    });

    for (const kind of ['auth', 'rate-limited', 'invalid-input', 'upstream', 'contract-violation'] as const) {
      it(`fails a step as a RunchartError of layer model, kind ${kind}`, async () => {
        const subject = await create([{ fail: kind }]);
        const error = await failureOf(subject.model.step(ask(), { signal: signal() }));
        expect(isRunchartError(error)).toBe(true);
        expect(toRunchartErrorData(error, 'model')).toMatchObject({ kind, layer: 'model', retryable: kind === 'rate-limited' || kind === 'upstream' });
        expect(toRunchartErrorData(error, 'model').message).toMatch(/^model: /);
        subject.verify();
      });
    }

    it('stops when the signal aborts mid-call, as cancelled, without an answer', async () => {
      const subject = await create([{ hang: true }]);
      const controller = new AbortController();
      const step = failureOf(subject.model.step(ask(), { signal: controller.signal }));
      await subject.received(1);
      controller.abort();
      expect(toRunchartErrorData(await step, 'model')).toMatchObject({ kind: 'cancelled', layer: 'model' });
      subject.verify();
    });
  });
}
