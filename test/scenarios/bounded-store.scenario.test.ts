// What the model sends is bounded before it is stored: refused arguments, answer text, memory items.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRuntime, type ModelAdapter, type ModelResponse } from '../../src/index.js';
import { allowMath, allowRuns, spiedAdd } from '../support/scenario.js';
import { tempDir } from '../support/temp.js';

/** Every file under `dir`, with its size in bytes. */
async function sizes(dir: string): Promise<Record<string, number>> {
  const found: Record<string, number> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) found[join(entry.parentPath, entry.name).slice(dir.length + 1)] = (await stat(join(entry.parentPath, entry.name))).size;
  }
  return found;
}

const usage = { inputTokens: 1, outputTokens: 1 };
const mb = (megabytes: number, fill = 'x') => fill.repeat(megabytes * 1024 * 1024);

/** A model that answers each step with the next response. */
function answering(...responses: ModelResponse[]): ModelAdapter {
  let index = 0;
  return { name: 'bloating', step: async () => responses[index++]! };
}

describe('a model that tries to bloat the store', () => {
  it('cannot: refused 2 MB arguments are kept cut with their size, a 5 MB answer fails the run and is kept nowhere', async () => {
    const dir = await tempDir();
    const add = spiedAdd();
    const huge = JSON.stringify({ a: 1, b: 2, pad: mb(2) });
    const runtime = createRuntime({
      model: answering(
        { text: null, toolCalls: Array.from({ length: 8 }, (_, index) => ({ id: `call_${index}`, name: 'math_add', arguments: huge })), usage, finishReason: 'tool_calls' },
        { text: mb(5, 'y'), toolCalls: [], usage, finishReason: 'stop' },
      ),
      capabilities: [add.capability],
      config: { store: { kind: 'lowdb', dir }, telemetry: { emit_structured_events: false }, policy: { rules: [allowRuns, allowMath] } },
    });
    const result = await runtime.run({ input: 'add these', tenantId: 'acme', principalId: 'u', sessionId: 's' });
    await runtime.drain();
    await runtime.close();

    expect(result).toMatchObject({ status: 'failed', output: null, error: { kind: 'budget-exceeded', layer: 'model' } });
    expect(result.error?.message).toMatch(/the answer is 5242880 characters, over limits\.max_model_text_chars \(100000\)/);
    expect(add.calls).toHaveLength(0);
    expect(result.toolCalls).toHaveLength(8);
    for (const call of result.toolCalls) {
      expect(call.outcome).toEqual({ status: 'invalid', reason: `the arguments are ${huge.length} characters, over the limit of 16000` });
      expect(call.args.length).toBeLessThan(300);
    }
    const files = await sizes(dir);
    const total = Object.values(files).reduce((sum, size) => sum + size, 0);
    expect(total, JSON.stringify(files)).toBeLessThan(512 * 1024);
    for (const [name, size] of Object.entries(files)) expect(size, name).toBeLessThan(256 * 1024);
    const stored = await Promise.all(Object.keys(files).map((name) => readFile(join(dir, name), 'utf8')));
    expect(stored.some((text) => text.includes('yyyyyyyyyy'))).toBe(false);
  });

  it('keeps a memory item within memory.max_item_chars, marked as cut', async () => {
    const dir = await tempDir();
    const answer = `${'an answer that goes on '.repeat(2_000)}and ends here`;
    const runtime = createRuntime({
      model: answering({ text: answer, toolCalls: [], usage, finishReason: 'stop' }),
      config: { store: { kind: 'lowdb', dir }, telemetry: { emit_structured_events: false }, memory: { max_item_chars: 1_000 } },
    });
    const result = await runtime.run({ input: 'tell me everything', tenantId: 'acme', principalId: 'u', sessionId: 's' });
    expect(result).toMatchObject({ status: 'completed', output: answer });
    await runtime.drain();
    await runtime.close();
    const memoryFiles = Object.keys(await sizes(dir)).filter((name) => name.startsWith('memory'));
    const memoryText = (await Promise.all(memoryFiles.map((name) => readFile(join(dir, name), 'utf8')))).join('\n');
    expect(memoryText).toContain('tell me everything');
    expect(memoryText).toContain('[cut]');
    expect(memoryText).not.toContain('and ends here');
    expect(memoryText.length).toBeLessThan(4_000);
  });
});
