// A session's earlier turns reach the model on the file store, from the first write-back on,
// whichever process wrote them.
import { describe, expect, it } from 'vitest';
import { createRuntime, type ModelAdapter, type ModelRequest } from '../../src/index.js';
import { tempDir } from '../support/temp.js';

function echoModel(requests: ModelRequest[]): ModelAdapter {
  return {
    name: 'echo',
    async step(request) {
      requests.push(structuredClone(request));
      const asked = request.messages.at(-1)!;
      return { text: `answer to ${asked.role === 'user' ? asked.content : '?'}`, toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
    },
  };
}

describe('session history on the file store', () => {
  it('gives each turn of a session the turns before it, oldest first, across sessions and runtimes', async () => {
    const dir = await tempDir();
    const config = { store: { kind: 'lowdb' as const, dir }, telemetry: { emit_structured_events: false } };
    const requests: ModelRequest[] = [];
    const first = createRuntime({ model: echoModel(requests), config });
    for (const [index, session] of ['s1', 's2', 's1', 's2', 's1'].entries()) {
      await first.run({ input: `question ${index}`, tenantId: 'acme', principalId: 'u', sessionId: session });
      await first.drain();
    }
    await first.close();
    const history = (request: ModelRequest) => request.messages.filter((message) => message.role !== 'system').map((message) => ('content' in message ? message.content : ''));
    expect(history(requests[4]!)).toEqual(['question 0', 'answer to question 0', 'question 2', 'answer to question 2', 'question 4']);
    expect(history(requests[3]!)).toEqual(['question 1', 'answer to question 1', 'question 3']);

    const second = createRuntime({ model: echoModel(requests), config });
    await second.run({ input: 'question 5', tenantId: 'acme', principalId: 'u', sessionId: 's2' });
    await second.close();
    expect(history(requests[5]!)).toEqual(['question 1', 'answer to question 1', 'question 3', 'answer to question 3', 'question 5']);
  });
});
