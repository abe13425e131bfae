import { describe, expect, it } from 'vitest';
import { createRuntime, type PolicyDecision, type PolicyRequest, type PolicyRule } from '../../src/index.js';
import { scriptedModel, scriptedPolicy } from '../../src/testing/index.js';
import { allowMath, allowRuns, countingMemory, request, runtimeWith, spiedAdd } from '../support/scenario.js';

const allow = (request: PolicyRequest): PolicyDecision => ({ verdict: 'allow', ruleId: `test-${request.stage}`, reason: 'scripted' });

describe('policy', () => {
  it('denies at precheck: no model call, no recall, no tool', async () => {
    const model = scriptedModel([]);
    const memory = countingMemory();
    const add = spiedAdd();
    const runtime = runtimeWith({
      model,
      memory,
      capabilities: [add.capability],
      rules: [allowRuns, allowMath, { id: 'suspended-tenant', stage: 'precheck', effect: 'deny', tenants: ['acme'] }],
    });

    const result = await runtime.run(request());
    await runtime.drain();

    expect(result.status).toBe('denied');
    expect(result.output).toBeNull();
    expect(result.decisions).toEqual([expect.objectContaining({ stage: 'precheck', verdict: 'deny', ruleId: 'suspended-tenant' })]);
    expect(result.usage).toEqual({ modelCalls: 0, toolCalls: 0, inputTokens: 0, outputTokens: 0 });
    expect(result.background).toBeNull();
    expect(memory.recalls).toBe(0);
    expect(memory.remembered).toBe(0);
    expect(add.calls).toHaveLength(0);
    model.verify();
  });

  it('denies at output: status denied, output withheld, nothing remembered', async () => {
    const model = scriptedModel([{ text: 'the secret answer' }]);
    const memory = countingMemory();
    const runtime = runtimeWith({
      model,
      memory,
      rules: [allowRuns, { id: 'no-answers-for-interns', stage: 'output', effect: 'deny', principals: ['intern-*'] }],
    });

    const result = await runtime.run(request({ principalId: 'intern-3' }));
    await runtime.drain();

    expect(result.status).toBe('denied');
    expect(result.output).toBeNull();
    expect(JSON.stringify(result)).not.toContain('the secret answer');
    expect(result.decisions.at(-1)).toMatchObject({ stage: 'output', verdict: 'deny', ruleId: 'no-answers-for-interns' });
    expect(result.background).toBeNull();
    expect(memory.remembered).toBe(0);
    model.verify();
  });

  it('completes with background denied when memory.write is denied', async () => {
    const model = scriptedModel([{ text: 'hello' }]);
    const memory = countingMemory();
    const runtime = runtimeWith({
      model,
      memory,
      rules: [allowRuns, { id: 'no-memory', stage: 'memory.write', effect: 'deny' }],
    });

    const result = await runtime.run(request({ sessionId: 's-1' }));
    await runtime.drain();

    expect(result.status).toBe('completed');
    expect(result.output).toBe('hello');
    expect(result.background).toBe('denied');
    expect(result.decisions.at(-1)).toMatchObject({ stage: 'memory.write', verdict: 'deny', ruleId: 'no-memory' });
    expect(memory.remembered).toBe(0);
    model.verify();
  });

  it('skips background updates when enable_background_updates is false', async () => {
    const model = scriptedModel([{ text: 'hello' }]);
    const memory = countingMemory();
    const policy = scriptedPolicy(allow);
    const runtime = createRuntime({ model, memory, policy, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, runtime: { enable_background_updates: false } } });

    const result = await runtime.run(request({ sessionId: 's-1' }));
    await runtime.drain();

    expect(result.status).toBe('completed');
    expect(result.background).toBe('skipped');
    expect(policy.requests.map((policyRequest) => policyRequest.stage)).toEqual(['precheck', 'output']);
    expect(memory.remembered).toBe(0);
    model.verify();
  });

  describe('with precheck_required false', () => {
    const withoutPrecheckRule: PolicyRule[] = [{ id: 'answers', stage: ['output', 'memory.write'], effect: 'allow' }];

    it('lets a run through when no precheck rule matches', async () => {
      const model = scriptedModel([{ text: 'hello' }]);
      const runtime = runtimeWith({ model, config: { policy: { precheck_required: false, rules: withoutPrecheckRule } } });

      const result = await runtime.run(request());

      expect(result.status).toBe('completed');
      expect(result.decisions[0]).toMatchObject({ stage: 'precheck', verdict: 'deny', ruleId: 'default-deny' });
      model.verify();
    });

    it('still denies on an explicit precheck deny', async () => {
      const model = scriptedModel([]);
      const runtime = runtimeWith({
        model,
        config: { policy: { precheck_required: false, rules: [...withoutPrecheckRule, { id: 'blocked', stage: 'precheck', effect: 'deny', principals: ['user-7'] }] } },
      });

      const result = await runtime.run(request());

      expect(result.status).toBe('denied');
      expect(result.decisions).toEqual([expect.objectContaining({ stage: 'precheck', ruleId: 'blocked' })]);
      model.verify();
    });

    it('denies without a precheck rule when precheck_required is true', async () => {
      const model = scriptedModel([]);
      const runtime = runtimeWith({ model, config: { policy: { rules: withoutPrecheckRule } } });

      const result = await runtime.run(request());

      expect(result.status).toBe('denied');
      expect(result.decisions).toEqual([expect.objectContaining({ stage: 'precheck', ruleId: 'default-deny' })]);
      model.verify();
    });
  });

  it('fails closed with layer policy when the policy layer throws at precheck', async () => {
    const model = scriptedModel([]);
    const memory = countingMemory();
    const policy = scriptedPolicy(() => {
      throw new Error('policy engine down');
    });
    const runtime = createRuntime({ model, memory, policy, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } } });

    const result = await runtime.run(request());

    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ layer: 'policy' });
    expect(result.error!.message).toContain('policy engine down');
    expect(memory.recalls).toBe(0);
    model.verify();
  });

  it('fails closed when the policy layer throws while pinning capabilities', async () => {
    const model = scriptedModel([]);
    const add = spiedAdd();
    const policy = scriptedPolicy(() => {
      throw new Error('policy engine down');
    });
    const runtime = createRuntime({ model, policy, capabilities: [add.capability], config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } } });

    const result = await runtime.run(request());

    expect(result.status).toBe('failed');
    expect(result.error!.message).toContain('policy engine down');
    expect(result.error).toMatchObject({ layer: 'policy' });
    expect(add.calls).toHaveLength(0);
    model.verify();
  });

  it('fails closed with layer policy when the policy layer throws at the output check', async () => {
    const model = scriptedModel([{ text: 'hello' }]);
    const policy = scriptedPolicy((policyRequest) => {
      if (policyRequest.stage === 'output') throw new Error('policy engine down');
      return allow(policyRequest);
    });
    const runtime = createRuntime({ model, policy, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } } });

    const result = await runtime.run(request());

    expect(result.status).toBe('failed');
    expect(result.output).toBeNull();
    expect(result.error).toMatchObject({ layer: 'policy' });
    model.verify();
  });

  it('fails closed when the policy layer answers with a malformed decision', async () => {
    const model = scriptedModel([]);
    const policy = scriptedPolicy(() => ({ verdict: 'yes' }) as unknown as PolicyDecision);
    const runtime = createRuntime({ model, policy, config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } } });

    const result = await runtime.run(request());

    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ kind: 'contract-violation', layer: 'policy' });
    model.verify();
  });

  it('fails closed with layer policy when tool authorization throws', async () => {
    const add = spiedAdd();
    const model = scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }]);
    let pinned = false;
    const policy = scriptedPolicy((policyRequest) => {
      if (policyRequest.stage === 'tool' && pinned) throw new Error('policy engine down');
      if (policyRequest.stage === 'tool') pinned = true;
      return allow(policyRequest);
    });
    const runtime = createRuntime({ model, policy, capabilities: [add.capability], config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } } });

    const result = await runtime.run(request());

    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ layer: 'policy' });
    expect(add.calls).toHaveLength(0);
    model.verify();
  });

  it('hides every capability from the model with the default config', async () => {
    const add = spiedAdd();
    const model = scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }, { text: 'cannot' }]);
    const runtime = createRuntime({ model, capabilities: [add.capability], config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } } });

    const result = await runtime.run(request());

    expect(model.requests[0]!.tools).toEqual([]);
    expect(result.status).toBe('completed');
    expect(result.toolCalls[0]!.outcome).toMatchObject({ status: 'invalid', reason: expect.stringMatching(/unknown tool "math_add"; the tools you can call are: none/) });
    expect(add.calls).toHaveLength(0);
    expect(result.decisions.map((decision) => decision.ruleId)).toEqual(['allow-runs', 'allow-runs', 'allow-runs']);
    model.verify();
  });

  it('turns a tool-stage deny during the run into a denied tool result', async () => {
    const add = spiedAdd();
    const model = scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }, { text: 'denied' }]);
    let pinned = false;
    const policy = scriptedPolicy((policyRequest): PolicyDecision => {
      if (policyRequest.stage !== 'tool') return allow(policyRequest);
      if (!pinned) return (pinned = true), allow(policyRequest);
      return { verdict: 'deny', ruleId: 'quota-spent', reason: 'the math quota is spent' };
    });
    const runtime = createRuntime({ model, policy, capabilities: [add.capability], config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false } } });

    const result = await runtime.run(request());

    expect(result.status).toBe('completed');
    expect(result.toolCalls[0]!.outcome).toEqual({ status: 'denied', reason: 'the math quota is spent (rule quota-spent)' });
    expect(model.requests[1]!.messages.at(-1)).toMatchObject({ role: 'tool', content: 'denied by policy: the math quota is spent (rule quota-spent)' });
    expect(add.calls).toHaveLength(0);
    model.verify();
  });

  it('checks the answers of a gateway you provide: a malformed result fails the run with a contract violation', async () => {
    const add = spiedAdd();
    const model = scriptedModel([{ toolCalls: [{ name: 'math_add', arguments: { a: 2, b: 3 } }] }]);
    const gateway = { execute: async () => ({ status: 'fine', value: 5 }) as never };
    const runtime = runtimeWith({ model, capabilities: [add.capability], gateway });

    const result = await runtime.run(request());

    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ kind: 'contract-violation', layer: 'execution' });
    model.verify();
  });

  it('pins one shared capability list for runs that see the same capabilities, and another for runs that see others', async () => {
    const add = spiedAdd();
    const model = scriptedModel([{ text: 'one' }, { text: 'two' }, { text: 'three' }]);
    const runtime = runtimeWith({
      model,
      capabilities: [add.capability],
      rules: [allowRuns, { ...allowMath, tenants: ['acme', 'globex'] }],
    });
    const pinnedOf = (tenantId: string) => {
      const handle = runtime.start(request({ tenantId }));
      return handle.result.then(() => handle.actor.getSnapshot().context.accepted.capabilities);
    };

    const [acme, globex, initech] = [await pinnedOf('acme'), await pinnedOf('globex'), await pinnedOf('initech')];

    expect(acme.map((capability) => capability.toolName)).toEqual(['math_add']);
    expect(globex).toBe(acme);
    expect(initech).toEqual([]);
    model.verify();
  });
});
