// No model text reaches a run's recording before the policy's output allow, whatever the policy and
// whatever the model says; once allowed, the recorded result carries the answer.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRuntime, mathCapabilities, type ModelAdapter, type PolicyRule } from '../../src/index.js';
import { createRunRecorder, readRecording } from '../../src/inspect/recorder.js';
import { isOutputAllowed, WITHHELD } from '../../src/inspect/withhold.js';
import { tempDir } from '../support/temp.js';

const verdict = fc.constantFrom('allow' as const, 'deny' as const);
/** Model text is marked so that any piece of it is found in a line. */
const answer = fc.stringMatching(/^[a-z ]{1,12}$/).map((text) => `«${text}»`);
const step = fc.record({ text: answer, callsTool: fc.boolean() });

describe('a recorded run', () => {
  it('records no model text before the output allow, and the answer in its result after', async () => {
    const dir = await tempDir('runchart-recording-');
    await fc.assert(
      fc.asyncProperty(
        fc.record({ precheck: verdict, output: verdict, tool: verdict, steps: fc.array(step, { minLength: 1, maxLength: 3 }) }),
        async ({ precheck, output, tool, steps }) => {
          let index = 0;
          const model: ModelAdapter = {
            name: 'scripted',
            async step(request) {
              const { text, callsTool } = steps[Math.min(index++, steps.length - 1)]!;
              const calls = callsTool && request.messages.at(-1)?.role !== 'tool' && index < steps.length;
              return calls
                ? { text, toolCalls: [{ id: `t${index}`, name: 'math_add', arguments: '{"a":1,"b":2}' }], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'tool_calls' }
                : { text, toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
            },
          };
          const rules: PolicyRule[] = [
            { id: 'precheck', stage: 'precheck', effect: precheck },
            { id: 'output', stage: 'output', effect: output },
            { id: 'tool', stage: 'tool', effect: tool, capabilities: ['math.add'] },
            { id: 'write', stage: 'memory.write', effect: 'allow' },
          ];
          const recorder = createRunRecorder({ dir });
          const runtime = createRuntime({
            model,
            inspect: recorder.inspect,
            capabilities: mathCapabilities,
            config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules } },
          });
          const result = await runtime.run({ input: 'tell me', tenantId: 'acme', principalId: 'u' });
          await runtime.drain();
          await recorder.flush();
          await runtime.close();

          const lines = await readRecording(`${dir}/inspect/${result.runId}.jsonl`);
          const isAllow = (line: (typeof lines)[number]) => line.type === '@xstate.snapshot' && isOutputAllowed((line.snapshot as { context?: unknown }).context);
          const allowAt = lines.findIndex(isAllow);
          const before = allowAt === -1 ? lines : lines.slice(0, allowAt);
          for (const line of before) expect(JSON.stringify(line)).not.toMatch(/«/);
          const last = lines.filter((line) => line.type === '@xstate.snapshot' && line.sessionId === lines[0]!.sessionId).at(-1)!;
          const context = (last.snapshot as { context: { output: string | null } }).context;
          if (result.status === 'completed') {
            expect(allowAt).toBeGreaterThan(-1);
            expect(result.output).toMatch(/^«/);
            expect(context.output).toBe(result.output);
          } else {
            expect(result.output).toBeNull();
            expect(lines.map((line) => JSON.stringify(line)).join('\n')).not.toMatch(/«/);
            // The answer the output check refused is shown as withheld, not as missing.
            if (result.status === 'denied' && precheck === 'allow') expect(context.output).toBe(WITHHELD);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
