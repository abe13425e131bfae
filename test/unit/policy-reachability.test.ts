import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createRuntime, defineCapability, type PolicyRule } from '../../src/index.js';
import { unreachableCapabilities } from '../../src/policy/reachability.js';
import { scriptedModel } from '../../src/testing/index.js';

const allowRuns: PolicyRule = { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' };
const capability = (name: string) =>
  defineCapability({ name, version: '1.0.0', description: name, input: z.object({ a: z.number() }), output: z.number(), effects: 'read', handler: ({ a }) => a });

describe('unreachableCapabilities', () => {
  it('finds a capability no tool-stage rule allows, and names the rule to add', () => {
    const found = unreachableCapabilities([allowRuns, { id: 'approval', stage: 'approval', effect: 'allow', capabilities: ['math.*'] }], ['math.add']);
    expect(found).toEqual([
      {
        capability: 'math.add',
        message: expect.stringContaining('add a rule such as { id: allow-math-add, stage: tool, effect: allow, capabilities: ["math.add"] }'),
      },
    ]);
  });

  it('counts allow and require_approval rules, globs and rules without a capability list; a deny alone reaches nothing', () => {
    const rules: PolicyRule[] = [
      allowRuns,
      { id: 'math', stage: ['tool', 'output'], effect: 'allow', capabilities: ['math.*'] },
      { id: 'notes', stage: 'tool', effect: 'require_approval', capabilities: ['notes.save'], tenants: ['acme'] },
      { id: 'no-payments', stage: 'tool', effect: 'deny', capabilities: ['payments.*'], principals: ['intern'] },
    ];
    expect(unreachableCapabilities(rules, ['math.add', 'notes.save', 'payments.refund', 'files.read']).map((entry) => entry.capability)).toEqual(['payments.refund', 'files.read']);
    expect(unreachableCapabilities([{ id: 'any-tool', stage: 'tool', effect: 'allow' }], ['files.read'])).toEqual([]);
  });

  it('finds a capability a deny for everyone beats, naming that rule', () => {
    const rules: PolicyRule[] = [
      { id: 'math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] },
      { id: 'never-divide', stage: 'tool', effect: 'deny', capabilities: ['math.divide'], tenants: ['*'] },
    ];
    const found = unreachableCapabilities(rules, ['math.add', 'math.divide']);
    expect(found.map((entry) => entry.capability)).toEqual(['math.divide']);
    expect(found[0]!.message).toContain('rule "never-divide" denies it to every tenant and principal');
  });
});

describe('createRuntime', () => {
  it('warns once per unreachable capability through onWarning, and not for reachable ones', async () => {
    const warnings: string[] = [];
    const runtime = createRuntime({
      config: { store: { kind: 'memory' }, policy: { rules: [allowRuns, { id: 'math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] }] } },
      capabilities: [capability('math.add'), capability('files.read'), capability('files.write')],
      model: scriptedModel([{ text: 'one' }, { text: 'two' }]),
      onWarning: (message) => void warnings.push(message),
    });
    await runtime.run({ input: 'a', tenantId: 't', principalId: 'p' });
    await runtime.run({ input: 'b', tenantId: 't', principalId: 'p' });
    await runtime.close();
    expect(warnings).toEqual([expect.stringContaining('capability "files.read" is registered'), expect.stringContaining('capability "files.write" is registered')]);
    expect(warnings[0]).toContain('capabilities: ["files.read"]');
  });

  it('warns about a capability registered with no config at all (the default rules allow none)', () => {
    const warnings: string[] = [];
    createRuntime({ config: { store: { kind: 'memory' } }, capabilities: [capability('math.add')], onWarning: (message) => void warnings.push(message) });
    expect(warnings).toEqual([expect.stringContaining('policy: capability "math.add" is registered, but no rule allows it at stage tool')]);
  });

  it('says nothing about a policy of the caller own, which it cannot read ahead', () => {
    const warnings: string[] = [];
    createRuntime({
      config: { store: { kind: 'memory' } },
      capabilities: [capability('math.add')],
      policy: { evaluate: async () => ({ verdict: 'allow', ruleId: 'mine', reason: 'mine' }) },
      onWarning: (message) => void warnings.push(message),
    });
    expect(warnings).toEqual([]);
  });
});
