// No model text reaches a run's listeners before the policy's output allow, whatever the policy
// and whatever the model streams; once allowed, every piece arrives, in order.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRuntime, mathCapabilities, type ModelAdapter, type PolicyRule, type RunStreamEvent } from '../../src/index.js';

const verdict = fc.constantFrom('allow' as const, 'deny' as const);
const piece = fc.stringMatching(/^[a-z]{1,6}$/).map((text) => `«${text}»`);
const streamedStep = fc.record({ pieces: fc.array(piece, { minLength: 1, maxLength: 4 }), callsTool: fc.boolean() });

describe('a streamed run', () => {
  it('hands out no model text before the output allow, and all of it, in order, after', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ precheck: verdict, output: verdict, tool: verdict, steps: fc.array(streamedStep, { minLength: 1, maxLength: 3 }) }),
        async ({ precheck, output, tool, steps }) => {
          const streamed: string[] = [];
          let index = 0;
          const model: ModelAdapter = {
            name: 'streaming',
            async step(request, { onDelta }) {
              const step = steps[Math.min(index++, steps.length - 1)]!;
              for (const text of step.pieces) {
                streamed.push(text);
                onDelta?.({ text });
              }
              const last = request.messages.at(-1);
              const callsTool = step.callsTool && last?.role !== 'tool' && index < steps.length;
              return callsTool
                ? { text: step.pieces.join(''), toolCalls: [{ id: `t${index}`, name: 'math_add', arguments: '{"a":1,"b":2}' }], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'tool_calls' }
                : { text: step.pieces.join(''), toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
            },
          };
          const rules: PolicyRule[] = [
            { id: 'precheck', stage: 'precheck', effect: precheck },
            { id: 'output', stage: 'output', effect: output },
            { id: 'tool', stage: 'tool', effect: tool, capabilities: ['math.add'] },
            { id: 'write', stage: 'memory.write', effect: 'allow' },
          ];
          const runtime = createRuntime({ model, capabilities: mathCapabilities, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules } } });
          const handle = runtime.start({ input: 'stream to me', tenantId: 'acme', principalId: 'u' });
          const heard: RunStreamEvent[] = [];
          handle.subscribe((event) => heard.push(event));
          const result = await handle.result;
          await runtime.drain();
          await runtime.close();

          const allowAt = heard.findIndex((event) => event.type === 'mark' && event.mark.kind === 'decision' && event.mark.decision.stage === 'output' && event.mark.decision.verdict === 'allow');
          const before = allowAt === -1 ? heard : heard.slice(0, allowAt);
          // Nothing before the allow carries a piece of model text: no delta, no mark, no settled result.
          for (const event of before) expect(JSON.stringify(event)).not.toMatch(/«/);
          const deltas = heard.filter((event): event is Extract<RunStreamEvent, { type: 'delta' }> => event.type === 'delta').map((event) => event.text);
          if (result.status === 'completed') {
            expect(allowAt).toBeGreaterThan(-1);
            expect(deltas).toEqual(streamed);
          } else {
            expect(deltas).toEqual([]);
            expect(JSON.stringify(heard)).not.toMatch(/«/);
          }
        },
      ),
      { numRuns: 120 },
    );
  });
});
