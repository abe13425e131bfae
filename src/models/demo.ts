import type { ChatMessage, ModelAdapter, ModelResponse } from './contract.js';

const operations: Record<string, string> = { '+': 'math_add', '-': 'math_subtract', '*': 'math_multiply', x: 'math_multiply', '×': 'math_multiply', '/': 'math_divide', '÷': 'math_divide' };
const PREFIX = '[offline demo model]';

const answer = (text: string): ModelResponse => ({
  text: `${PREFIX} ${text}`,
  toolCalls: [],
  usage: { inputTokens: 0, outputTokens: 0 },
  finishReason: 'stop',
});

/**
 * A deterministic model for running without an API key: it routes simple arithmetic to the
 * math capabilities when they are offered and says plainly, on every answer, that it is a demo.
 * @example
 * const runtime = createRuntime({ model: demoModel(), capabilities: mathCapabilities, config });
 */
export function demoModel(): ModelAdapter {
  return {
    name: 'demo',
    async step({ messages, tools }) {
      const last = messages.at(-1) as ChatMessage;
      if (last.role === 'tool') {
        const result = last.content;
        if (result.startsWith('error:') || result.startsWith('denied') || result.startsWith('rejected')) return answer(`The tool call did not work: ${result}`);
        return answer(result === '{"saved":true}' ? 'Saved your note.' : `The answer is ${result}.`);
      }
      const user = [...messages].reverse().find((message) => message.role === 'user');
      const text = user?.content ?? '';
      const note = /^\s*(?:note|remember)(?: that)?[:\s]+(.+)$/is.exec(text);
      if (note) {
        if (!tools.some((spec) => spec.name === 'notes_save')) return answer('I would save that note, but no rule lets me use notes.save here.');
        return {
          text: null,
          toolCalls: [{ id: 'demo-call-1', name: 'notes_save', arguments: JSON.stringify({ text: note[1]!.trim() }) }],
          usage: { inputTokens: 0, outputTokens: 0 },
          finishReason: 'tool_calls',
        };
      }
      const match = /(-?\d+(?:\.\d+)?)\s*([-+*x×/÷])\s*(-?\d+(?:\.\d+)?)/.exec(text);
      const tool = match && operations[match[2]!];
      if (match && tool && tools.some((spec) => spec.name === tool)) {
        return {
          text: null,
          toolCalls: [{ id: 'demo-call-1', name: tool, arguments: JSON.stringify({ a: Number(match[1]), b: Number(match[3]) }) }],
          usage: { inputTokens: 0, outputTokens: 0 },
          finishReason: 'tool_calls',
        };
      }
      if (match && tool) return answer(`I would call ${tool}, but no rule lets me use it here. Set OPENAI_API_KEY for a real model.`);
      return answer(
        `No OPENAI_API_KEY is set, so I can only do arithmetic ("what is 2+3?") and save notes ("note: buy milk"). You said: ${JSON.stringify(text.slice(0, 200))}`,
      );
    },
  };
}
