// What the Stately inspector is shown for one run: the runtime's actor, the run it spawns, and one
// actor per layer call, each with its input and its answer, in the order the chart made them.
import type { AnyActorRef, InspectionEvent } from 'xstate';
import { describe, expect, it } from 'vitest';
import { createRuntime, mathCapabilities, type PolicyRule } from '../../src/index.js';
import { scriptedModel } from '../../src/testing/index.js';
import { allowRuns } from '../support/scenario.js';

const mathNeedsApproval: PolicyRule = { id: 'math-needs-approval', stage: 'tool', effect: 'require_approval', capabilities: ['math.*'] };
const managersApprove: PolicyRule = { id: 'managers-approve', stage: 'approval', effect: 'allow', principals: ['manager'] };

interface Call {
  id: string;
  src: string;
  parent: string | undefined;
  input: unknown;
  /** What the call answered its parent with: `done` and the output, `error`, or nothing (stopped). */
  answer?: { kind: 'done' | 'error'; output?: unknown };
}

/** Every actor the inspector saw, in order of creation, with its first snapshot's input and its answer to its parent. */
function tree(events: InspectionEvent[]) {
  const actors = new Map<string, Call & { ref: AnyActorRef }>();
  for (const event of events) {
    if (event.type === '@xstate.actor') {
      const ref = event.actorRef as AnyActorRef & { _parent?: AnyActorRef; src?: unknown };
      actors.set(ref.sessionId, { id: ref.id, src: typeof ref.src === 'string' ? ref.src : '(logic)', parent: ref._parent?.sessionId, input: undefined, ref });
    }
    if (event.type === '@xstate.snapshot') {
      const actor = actors.get(event.actorRef.sessionId);
      const input = (event.snapshot as { input?: unknown }).input;
      if (actor && actor.input === undefined && input !== undefined) actor.input = input;
    }
    if (event.type === '@xstate.event') {
      const answered = /^xstate\.(done|error)\.actor\.(.+)$/.exec(event.event.type);
      const source = event.sourceRef ? actors.get(event.sourceRef.sessionId) : undefined;
      if (answered && source && source.id === answered[2]) {
        source.answer = answered[1] === 'done' ? { kind: 'done', output: (event.event as { output?: unknown }).output } : { kind: 'error' };
      }
    }
  }
  return [...actors.values()];
}

describe('the inspector view of a run', () => {
  it('shows runtime → run → one actor per layer call, each with its input and output, in order', async () => {
    const events: InspectionEvent[] = [];
    const runtime = createRuntime({
      model: scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }, { text: '2 + 3 = 5' }]),
      capabilities: mathCapabilities,
      config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules: [allowRuns, mathNeedsApproval, managersApprove] } },
      idFor: (kind) => (kind === 'run' ? 'run-1' : '4bf92f3577b34da6a3ce929d0e0e4736'),
      inspect: (event) => void events.push(event),
    });
    const parked = await runtime.run({ input: 'what is 2+3?', tenantId: 'acme', principalId: 'user-7' });
    expect(parked.status).toBe('awaiting_approval');
    const done = await runtime.approve('run-1', 'c0.0', { principalId: 'manager' });
    expect(done).toMatchObject({ status: 'completed', output: '2 + 3 = 5' });
    await runtime.drain();
    await runtime.close();

    const actors = tree(events);
    const [supervisor, run, ...calls] = actors;
    // The runtime's actor is the root of the system; the run is its child.
    expect(supervisor).toMatchObject({ parent: undefined });
    expect(run).toMatchObject({ id: 'run-1', parent: supervisor!.ref.sessionId });
    expect(calls.every((call) => call.parent === run!.ref.sessionId)).toBe(true);
    expect(calls.map((call) => [call.id, call.src])).toEqual([
      ['telemetry', 'recordTelemetry'],
      ['acceptRequest', 'acceptRequest'],
      ['checkPrecheck', 'evaluatePolicy'],
      ['recallMemory', 'recallMemory'],
      ['callModel', 'callModel'],
      ['authorizeTool', 'evaluatePolicy'],
      ['awaitApproval', 'awaitApproval'],
      ['reviewApproval', 'evaluatePolicy'],
      ['executeTool', 'executeTool'],
      ['callModel', 'callModel'],
      ['checkOutput', 'evaluatePolicy'],
      ['authorizeWrite', 'evaluatePolicy'],
      ['enqueueBackground', 'enqueueBackground'],
    ]);

    const byId = (id: string, nth = 0) => calls.filter((call) => call.id === id)[nth]!;
    const scope = { runId: 'run-1', tenantId: 'acme', principalId: 'user-7' };
    expect(byId('acceptRequest').input).toMatchObject({ runId: 'run-1', request: { input: 'what is 2+3?', tenantId: 'acme' } });
    expect(byId('acceptRequest').answer).toMatchObject({ kind: 'done', output: { tenantId: 'acme', principalId: 'user-7', input: 'what is 2+3?' } });
    expect(byId('checkPrecheck')).toMatchObject({ input: { stage: 'precheck', ...scope }, answer: { kind: 'done', output: { verdict: 'allow', ruleId: 'allow-runs' } } });
    expect(byId('recallMemory')).toMatchObject({ input: { tenantId: 'acme', principalId: 'user-7', query: 'what is 2+3?' }, answer: { kind: 'done', output: { items: [], history: [] } } });
    expect(byId('callModel').input).toMatchObject({ runId: 'run-1', messages: [{ role: 'system' }, { role: 'user', content: 'what is 2+3?' }], tools: expect.arrayContaining([expect.objectContaining({ name: 'math_add' })]) });
    expect(byId('callModel').answer).toMatchObject({ kind: 'done', output: { toolCalls: [{ name: 'math_add' }] } });
    expect(byId('authorizeTool')).toMatchObject({
      input: { stage: 'tool', ...scope, capability: 'math.add', callId: 'c0.0' },
      answer: { kind: 'done', output: { verdict: 'require_approval', ruleId: 'math-needs-approval' } },
    });
    // The approval wait is stopped by the review: it answers nothing.
    expect(byId('awaitApproval')).toMatchObject({ input: { runId: 'run-1', callId: 'c0.0' } });
    expect(byId('awaitApproval').answer).toBeUndefined();
    expect(byId('reviewApproval')).toMatchObject({
      input: { stage: 'approval', runId: 'run-1', tenantId: 'acme', principalId: 'manager', callId: 'c0.0' },
      answer: { kind: 'done', output: { verdict: 'allow', ruleId: 'managers-approve' } },
    });
    expect(byId('executeTool')).toMatchObject({
      input: { capability: 'math.add', arguments: '{"a":2,"b":3}', idempotencyKey: 'run-1:c0.0', callId: 'c0.0', tenantId: 'acme' },
      answer: { kind: 'done', output: { status: 'ok', output: 5 } },
    });
    expect(byId('callModel', 1).input).toMatchObject({ messages: [{ role: 'system' }, { role: 'user' }, { role: 'assistant' }, { role: 'tool', content: '5' }] });
    expect(byId('callModel', 1).answer).toMatchObject({ kind: 'done', output: { text: '2 + 3 = 5' } });
    expect(byId('checkOutput')).toMatchObject({ input: { stage: 'output', ...scope }, answer: { kind: 'done', output: { verdict: 'allow' } } });
    expect(byId('authorizeWrite')).toMatchObject({ input: { stage: 'memory.write', ...scope }, answer: { kind: 'done', output: { verdict: 'allow' } } });
    expect(byId('enqueueBackground')).toMatchObject({ input: { tasks: [{ id: 'run-1:memory.write', kind: 'memory.write' }] }, answer: { kind: 'done' } });

    // Between them: the caller's approval reaches the run, and the run's end reaches the runtime's actor.
    const approve = events.find((event) => event.type === '@xstate.event' && event.event.type === 'tool.approve')!;
    expect(approve.actorRef.sessionId).toBe(run!.ref.sessionId);
    const ended = events.find((event) => event.type === '@xstate.event' && event.event.type === 'xstate.done.actor.run-1')!;
    expect(ended.actorRef.sessionId).toBe(supervisor!.ref.sessionId);
    expect(events.indexOf(ended)).toBeGreaterThan(events.indexOf(approve));
  });
});
