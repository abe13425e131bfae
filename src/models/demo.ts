import type { ChatMessage, ModelAdapter, ModelResponse, ToolCall } from './contract.js';

const PREFIX = '[offline demo model]';
const toolOf = { '+': 'math_add', '-': 'math_subtract', '*': 'math_multiply', '/': 'math_divide' } as const;
type Operator = keyof typeof toolOf;

/** An arithmetic expression: a number, or an operation on two expressions (`-x` is `0 - x`). */
type Expression = { kind: 'number'; value: number } | { kind: 'operation'; operator: Operator; left: Expression; right: Expression; id: string };

const answer = (text: string): ModelResponse => ({
  text: `${PREFIX} ${text}`,
  toolCalls: [],
  usage: { inputTokens: 0, outputTokens: 0 },
  finishReason: 'stop',
});

const callTools = (toolCalls: ToolCall[]): ModelResponse => ({ text: null, toolCalls, usage: { inputTokens: 0, outputTokens: 0 }, finishReason: 'tool_calls' });

/**
 * Parses `+ - * /` (also `x`, `×`, `÷`) with the usual precedence, unary minus and parentheses;
 * null when `source` is not one whole expression with at least one operation. No `eval`.
 */
export function parseArithmetic(source: string): Expression | null {
  const tokens: string[] =
    source
      .replace(/[×x]/g, '*')
      .replace(/÷/g, '/')
      .match(/\d+(?:\.\d+)?|[-+*/()]|\S/g) ?? [];
  if (tokens.length === 0) return null;
  let position = 0;
  let operations = 0;
  const peek = () => tokens[position];
  const operation = (operator: Operator, left: Expression, right: Expression): Expression => ({ kind: 'operation', operator, left, right, id: `demo-${operations++}` });

  function expression(): Expression | null {
    let left = term();
    while (left && (peek() === '+' || peek() === '-')) {
      const operator = tokens[position++] as Operator;
      const right = term();
      left = right && operation(operator, left, right);
    }
    return left;
  }
  function term(): Expression | null {
    let left = unary();
    while (left && (peek() === '*' || peek() === '/')) {
      const operator = tokens[position++] as Operator;
      const right = unary();
      left = right && operation(operator, left, right);
    }
    return left;
  }
  function unary(): Expression | null {
    if (peek() !== '-') return primary();
    position++;
    const operand = unary();
    if (!operand) return null;
    // A negative number stays a number; a negated expression is 0 minus it.
    return operand.kind === 'number' ? { kind: 'number', value: -operand.value } : operation('-', { kind: 'number', value: 0 }, operand);
  }
  function primary(): Expression | null {
    const token = tokens[position++];
    if (token === '(') {
      const inner = expression();
      return inner && tokens[position++] === ')' ? inner : null;
    }
    return token !== undefined && /^\d/.test(token) ? { kind: 'number', value: Number(token) } : null;
  }

  const parsed = expression();
  return parsed && position === tokens.length && operations > 0 ? parsed : null;
}

/** The longest stretch of `text` that is an arithmetic expression ("what is 2+3*4?" → 2+3*4). */
function arithmeticIn(text: string): Expression | null {
  const stretches = (text.match(/[-+*/×÷x().\d\s]+/g) ?? []).map((stretch) => stretch.trim().replace(/[.\s]+$/, '')).sort((a, b) => b.length - a.length);
  for (const stretch of stretches) {
    const parsed = /\d/.test(stretch) ? parseArithmetic(stretch) : null;
    if (parsed) return parsed;
  }
  return null;
}

/** What the tools answered in this run, by the id of the call that asked. */
function toolResults(messages: readonly ChatMessage[]): Map<string, string> {
  const results = new Map<string, string>();
  for (const message of messages) if (message.role === 'tool') results.set(message.toolCallId, message.content);
  return results;
}

const failed = (result: string) => result.startsWith('error:') || result.startsWith('denied') || result.startsWith('rejected') || result.startsWith('awaiting');

/**
 * The next step for an expression: every operation whose operands are known is sent to its tool
 * at once (independent operations share a step), and the answer once the whole is known.
 */
function nextArithmeticStep(expression: Expression, results: Map<string, string>, offered: Set<string>): ModelResponse {
  const ready: ToolCall[] = [];
  let problem: string | undefined;
  const valueOf = (node: Expression): number | undefined => {
    if (node.kind === 'number') return node.value;
    const left = valueOf(node.left);
    const right = valueOf(node.right);
    if (left === undefined || right === undefined) return undefined;
    const result = results.get(node.id);
    if (result === undefined) {
      ready.push({ id: node.id, name: toolOf[node.operator], arguments: JSON.stringify({ a: left, b: right }) });
      return undefined;
    }
    const value = Number(result);
    if (failed(result) || !Number.isFinite(value)) problem ??= result;
    return value;
  };
  const value = valueOf(expression);
  if (problem !== undefined) return answer(`The tool call did not work: ${problem}`);
  if (value !== undefined) return answer(`The answer is ${value}.`);
  const missing = ready.find((call) => !offered.has(call.name));
  if (missing) return answer(`I would call ${missing.name}, but no rule lets me use it here. Set OPENAI_API_KEY for a real model.`);
  return callTools(ready);
}

/**
 * A deterministic model for running without an API key: it works out arithmetic (`+ - * /`,
 * precedence and parentheses) through the math capabilities when they are offered, saves notes
 * ("note: …") through `notes.save`, and says plainly, on every answer, that it is a demo.
 * @example
 * const runtime = createRuntime({ model: demoModel(), capabilities: mathCapabilities, config });
 */
export function demoModel(): ModelAdapter {
  return {
    name: 'demo',
    async step({ messages, tools }) {
      const userAt = messages.findLastIndex((message) => message.role === 'user');
      const text = userAt >= 0 ? (messages[userAt] as { content: string }).content : '';
      const turn = messages.slice(userAt + 1);
      const results = toolResults(turn);
      const offered = new Set(tools.map((spec) => spec.name));

      const note = /^\s*(?:note|remember)(?: that)?[:\s]+(.+)$/is.exec(text);
      if (note) {
        const saved = results.get('demo-note');
        if (saved !== undefined) return answer(failed(saved) ? `The tool call did not work: ${saved}` : 'Saved your note.');
        if (!offered.has('notes_save')) return answer('I would save that note, but no rule lets me use notes.save here.');
        return callTools([{ id: 'demo-note', name: 'notes_save', arguments: JSON.stringify({ text: note[1]!.trim() }) }]);
      }
      const expression = arithmeticIn(text);
      if (expression) return nextArithmeticStep(expression, results, offered);
      return answer(
        `No OPENAI_API_KEY is set, so I can only do arithmetic ("what is 2+3*4?") and save notes ("note: buy milk"). You said: ${JSON.stringify(text.slice(0, 200))}`,
      );
    },
  };
}
