import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { createRuntime, mathCapabilities, type PolicyRule } from '../../src/index.js';
import { demoModel, parseArithmetic } from '../../src/models/demo.js';

const allowRuns: PolicyRule = { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' };
const allowMath: PolicyRule = { id: 'allow-math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] };

async function ask(input: string, mathAllowed = true) {
  const runtime = createRuntime({
    model: demoModel(),
    capabilities: mathCapabilities,
    config: { store: { kind: 'memory' }, policy: { rules: mathAllowed ? [allowRuns, allowMath] : [allowRuns] } },
  });
  try {
    return await runtime.run({ input, tenantId: 'acme', principalId: 'user-7' });
  } finally {
    await runtime.close();
  }
}

/** Evaluates a parsed expression directly: the reference the tool route must agree with. */
function evaluate(node: NonNullable<ReturnType<typeof parseArithmetic>>): number {
  if (node.kind === 'number') return node.value;
  const [a, b] = [evaluate(node.left), evaluate(node.right)];
  return node.operator === '+' ? a + b : node.operator === '-' ? a - b : node.operator === '*' ? a * b : a / b;
}

describe('the offline demo model', () => {
  it('works out 2+3*4 with precedence: the multiplication first, then the addition', async () => {
    const result = await ask('what is 2+3*4?');
    expect(result.status).toBe('completed');
    expect(result.output).toBe('[offline demo model] The answer is 14.');
    expect(result.toolCalls.map((call) => [call.capability, call.args])).toEqual([
      ['math.multiply', '{"a":3,"b":4}'],
      ['math.add', '{"a":2,"b":12}'],
    ]);
  });

  it('sends independent operations in one step, and honours parentheses and unary minus', async () => {
    const both = await ask('(1+2)*(3+4)');
    expect(both.output).toBe('[offline demo model] The answer is 21.');
    expect(both.usage.modelCalls).toBe(3); // two additions in one step, the product, the answer
    expect((await ask('what is -(2+3)*2?')).output).toBe('[offline demo model] The answer is -10.');
    expect((await ask('10 ÷ 4 - 1')).output).toBe('[offline demo model] The answer is 1.5.');
    expect((await ask('what is 6 x 7')).output).toBe('[offline demo model] The answer is 42.');
  });

  it('says why when a tool fails or is not allowed, and what it can do for other input', async () => {
    expect((await ask('what is 1/0?')).output).toMatch(/^\[offline demo model\] The tool call did not work: error: .*b must not be 0/);
    expect((await ask('what is 2+3?', false)).output).toContain('I would call math_add, but no rule lets me use it here');
    expect((await ask('hello there')).output).toContain('I can only do arithmetic');
  });

  it('parses only whole expressions', () => {
    for (const text of ['2+', '(2+3', '2 3', '42', '2+*3', '']) expect(parseArithmetic(text), text).toBeNull();
    expect(evaluate(parseArithmetic('2+3*4')!)).toBe(14);
    expect(evaluate(parseArithmetic('(2+3)*4')!)).toBe(20);
    expect(evaluate(parseArithmetic('2-3-4')!)).toBe(-5);
    expect(evaluate(parseArithmetic('8/4/2')!)).toBe(1);
  });

  const leaf = fc.integer({ min: 0, max: 99 }).map((value) => ({ text: String(value), value }));
  const tree = fc.letrec<{ node: { text: string; value: number } }>((tie) => ({
    node: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      leaf,
      fc.tuple(tie('node'), fc.constantFrom('+', '-', '*'), tie('node')).map(([left, operator, right]) => ({
        text: `(${left.text}${operator}${right.text})`,
        value: operator === '+' ? left.value + right.value : operator === '-' ? left.value - right.value : left.value * right.value,
      })),
    ),
  })).node;

  test.prop([tree])('agrees with the value of any fully parenthesized expression', ({ text, value }) => {
    const parsed = parseArithmetic(text);
    if (/[-+*]/.test(text)) expect(evaluate(parsed!)).toBe(value);
    else expect(parsed).toBeNull();
  });
});
