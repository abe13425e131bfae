import { describe, expect, it } from 'vitest';
import { defaultRules, type PolicyRule } from '../../src/config.js';
import { PolicyDecision, type PolicyRequest, type PolicyStage } from '../../src/policy/contract.js';
import { createRulesPolicy, globToRegExp } from '../../src/policy/rules.js';

const signal = new AbortController().signal;

function request(overrides: Partial<PolicyRequest> = {}): PolicyRequest {
  return { stage: 'tool', runId: 'run-1', tenantId: 'acme', principalId: 'user-7', ...overrides };
}

async function decide(rules: PolicyRule[], overrides: Partial<PolicyRequest> = {}) {
  const decision = await createRulesPolicy(rules).evaluate(request(overrides), { signal });
  // Every decision meets the contract and names a rule.
  expect(PolicyDecision.parse(decision)).toEqual(decision);
  expect(decision.ruleId.length).toBeGreaterThan(0);
  return decision;
}

const allowPayments: PolicyRule = { id: 'allow-payments', stage: 'tool', effect: 'allow', capabilities: ['payments.*'] };
const approvePayments: PolicyRule = { id: 'approve-payments', stage: 'tool', effect: 'require_approval', capabilities: ['payments.*'] };
const denyPayments: PolicyRule = { id: 'deny-payments', stage: 'tool', effect: 'deny', capabilities: ['payments.*'] };

describe('createRulesPolicy: verdict order', () => {
  it('allows when only an allow rule matches', async () => {
    expect(await decide([allowPayments], { capability: 'payments.refund' })).toMatchObject({ verdict: 'allow', ruleId: 'allow-payments' });
  });

  it('lets require_approval beat allow, whatever the order', async () => {
    for (const rules of [
      [allowPayments, approvePayments],
      [approvePayments, allowPayments],
    ]) {
      expect(await decide(rules, { capability: 'payments.refund' })).toMatchObject({ verdict: 'require_approval', ruleId: 'approve-payments' });
    }
  });

  it('lets deny beat require_approval and allow, whatever the order', async () => {
    const orders = [
      [allowPayments, approvePayments, denyPayments],
      [denyPayments, approvePayments, allowPayments],
      [approvePayments, denyPayments, allowPayments],
      [allowPayments, denyPayments],
      [denyPayments, approvePayments],
    ];
    for (const rules of orders) {
      expect(await decide(rules, { capability: 'payments.refund' })).toMatchObject({ verdict: 'deny', ruleId: 'deny-payments' });
    }
  });

  it('ignores a stronger rule that does not match', async () => {
    const denyOther: PolicyRule = { id: 'deny-other', stage: 'tool', effect: 'deny', capabilities: ['admin.*'] };
    expect(await decide([denyOther, allowPayments], { capability: 'payments.refund' })).toMatchObject({ verdict: 'allow', ruleId: 'allow-payments' });
  });

  it('names one of the matching rules when several of equal strength match', async () => {
    const a: PolicyRule = { id: 'a', stage: 'tool', effect: 'allow', capabilities: ['payments.*'] };
    const b: PolicyRule = { id: 'b', stage: 'tool', effect: 'allow', capabilities: ['*'] };
    const decision = await decide([a, b], { capability: 'payments.refund' });
    expect(decision.verdict).toBe('allow');
    expect(['a', 'b']).toContain(decision.ruleId);
  });
});

describe('createRulesPolicy: default deny', () => {
  it('denies with ruleId default-deny when there are no rules', async () => {
    for (const stage of ['precheck', 'tool', 'approval', 'output', 'memory.write'] as PolicyStage[]) {
      const decision = await decide([], { stage, capability: stage === 'tool' ? 'math.add' : undefined });
      expect(decision).toMatchObject({ verdict: 'deny', ruleId: 'default-deny' });
      expect(decision.reason).toContain(stage);
    }
  });

  it('names the capability in the default-deny reason', async () => {
    const decision = await decide([], { capability: 'math.add' });
    expect(decision.reason).toContain('"math.add"');
  });

  it('denies by default when no rule matches', async () => {
    expect(await decide([allowPayments], { capability: 'shipping.track' })).toMatchObject({ verdict: 'deny', ruleId: 'default-deny' });
  });

  it('with the default rules allows precheck, output and memory.write but no capability', async () => {
    for (const stage of ['precheck', 'output', 'memory.write'] as PolicyStage[]) {
      expect((await decide(defaultRules, { stage })).verdict).toBe('allow');
    }
    expect(await decide(defaultRules, { stage: 'tool', capability: 'math.add' })).toMatchObject({ verdict: 'deny', ruleId: 'default-deny' });
    expect(await decide(defaultRules, { stage: 'approval', capability: 'math.add' })).toMatchObject({ verdict: 'deny', ruleId: 'default-deny' });
  });
});

describe('createRulesPolicy: stages', () => {
  it('matches a rule only at its stage', async () => {
    const rule: PolicyRule = { id: 'pre', stage: 'precheck', effect: 'allow' };
    expect((await decide([rule], { stage: 'precheck' })).verdict).toBe('allow');
    expect(await decide([rule], { stage: 'output' })).toMatchObject({ verdict: 'deny', ruleId: 'default-deny' });
  });

  it('matches every stage in a stage list and no other', async () => {
    const rule: PolicyRule = { id: 'some', stage: ['precheck', 'memory.write'], effect: 'allow' };
    expect((await decide([rule], { stage: 'precheck' })).ruleId).toBe('some');
    expect((await decide([rule], { stage: 'memory.write' })).ruleId).toBe('some');
    expect((await decide([rule], { stage: 'output' })).ruleId).toBe('default-deny');
    expect((await decide([rule], { stage: 'tool', capability: 'x' })).ruleId).toBe('default-deny');
  });

  it('does not let a deny at one stage affect another stage', async () => {
    const rules: PolicyRule[] = [
      { id: 'deny-output', stage: 'output', effect: 'deny' },
      { id: 'allow-pre', stage: 'precheck', effect: 'allow' },
    ];
    expect(await decide(rules, { stage: 'precheck' })).toMatchObject({ verdict: 'allow', ruleId: 'allow-pre' });
    expect(await decide(rules, { stage: 'output' })).toMatchObject({ verdict: 'deny', ruleId: 'deny-output' });
  });
});

describe('createRulesPolicy: capability, tenant and principal globs', () => {
  it('matches "payments.*" against payments capabilities only', async () => {
    expect((await decide([allowPayments], { capability: 'payments.refund' })).verdict).toBe('allow');
    expect((await decide([allowPayments], { capability: 'payments.refund.partial' })).verdict).toBe('allow');
    expect((await decide([allowPayments], { capability: 'paymentsx' })).ruleId).toBe('default-deny');
    expect((await decide([allowPayments], { capability: 'paymentsXrefund' })).ruleId).toBe('default-deny');
    expect((await decide([allowPayments], { capability: 'my.payments.refund' })).ruleId).toBe('default-deny');
  });

  it('matches any of several capability globs', async () => {
    const rule: PolicyRule = { id: 'some', stage: 'tool', effect: 'allow', capabilities: ['math.add', 'weather.*'] };
    expect((await decide([rule], { capability: 'math.add' })).verdict).toBe('allow');
    expect((await decide([rule], { capability: 'weather.today' })).verdict).toBe('allow');
    expect((await decide([rule], { capability: 'math.multiply' })).ruleId).toBe('default-deny');
  });

  it('never matches a rule with capabilities against a request without a capability', async () => {
    const rules: PolicyRule[] = [{ id: 'any-capability', stage: ['precheck', 'tool'], effect: 'allow', capabilities: ['*'] }];
    expect(await decide(rules, { stage: 'precheck' })).toMatchObject({ verdict: 'deny', ruleId: 'default-deny' });
    expect(await decide(rules, { stage: 'tool' })).toMatchObject({ verdict: 'deny', ruleId: 'default-deny' });
    expect((await decide(rules, { stage: 'tool', capability: 'anything' })).verdict).toBe('allow');
  });

  it('does not let a capability deny rule block a stage asked without a capability', async () => {
    const rules: PolicyRule[] = [
      { id: 'deny-all-tools', stage: 'precheck', effect: 'deny', capabilities: ['*'] },
      { id: 'allow-pre', stage: 'precheck', effect: 'allow' },
    ];
    expect(await decide(rules, { stage: 'precheck' })).toMatchObject({ verdict: 'allow', ruleId: 'allow-pre' });
  });

  it('matches a rule without capabilities for any capability', async () => {
    const rule: PolicyRule = { id: 'all-tools', stage: 'tool', effect: 'allow' };
    expect((await decide([rule], { capability: 'whatever.it.is' })).verdict).toBe('allow');
  });

  it('matches tenant globs', async () => {
    const rule: PolicyRule = { id: 'acme-only', stage: 'precheck', effect: 'allow', tenants: ['acme', 'acme-*'] };
    expect((await decide([rule], { stage: 'precheck', tenantId: 'acme' })).verdict).toBe('allow');
    expect((await decide([rule], { stage: 'precheck', tenantId: 'acme-eu' })).verdict).toBe('allow');
    expect((await decide([rule], { stage: 'precheck', tenantId: 'acmeeu' })).ruleId).toBe('default-deny');
    expect((await decide([rule], { stage: 'precheck', tenantId: 'globex' })).ruleId).toBe('default-deny');
    expect((await decide([rule], { stage: 'precheck', tenantId: 'not-acme' })).ruleId).toBe('default-deny');
  });

  it('matches principal globs', async () => {
    const rule: PolicyRule = { id: 'admins', stage: 'approval', effect: 'allow', principals: ['admin-*'] };
    expect((await decide([rule], { stage: 'approval', principalId: 'admin-1', capability: 'x' })).verdict).toBe('allow');
    expect((await decide([rule], { stage: 'approval', principalId: 'user-1', capability: 'x' })).ruleId).toBe('default-deny');
  });

  it('needs capability, tenant and principal to match together', async () => {
    const rule: PolicyRule = {
      id: 'narrow',
      stage: 'tool',
      effect: 'allow',
      capabilities: ['payments.*'],
      tenants: ['acme'],
      principals: ['user-*'],
    };
    expect((await decide([rule], { capability: 'payments.refund' })).verdict).toBe('allow');
    expect((await decide([rule], { capability: 'payments.refund', tenantId: 'globex' })).ruleId).toBe('default-deny');
    expect((await decide([rule], { capability: 'payments.refund', principalId: 'bot-1' })).ruleId).toBe('default-deny');
    expect((await decide([rule], { capability: 'math.add' })).ruleId).toBe('default-deny');
  });

  it('lets a tenant-scoped deny override a global allow for that tenant only', async () => {
    const rules: PolicyRule[] = [
      { id: 'allow-math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] },
      { id: 'deny-globex', stage: 'tool', effect: 'deny', capabilities: ['*'], tenants: ['globex'] },
    ];
    expect(await decide(rules, { capability: 'math.add', tenantId: 'acme' })).toMatchObject({ verdict: 'allow', ruleId: 'allow-math' });
    expect(await decide(rules, { capability: 'math.add', tenantId: 'globex' })).toMatchObject({ verdict: 'deny', ruleId: 'deny-globex' });
  });
});

describe('createRulesPolicy: reasons', () => {
  it('uses the rule reason when given and otherwise names the rule', async () => {
    const withReason: PolicyRule = { id: 'r1', stage: 'precheck', effect: 'allow', reason: 'open for business' };
    const withoutReason: PolicyRule = { id: 'r2', stage: 'output', effect: 'deny' };
    expect((await decide([withReason], { stage: 'precheck' })).reason).toBe('open for business');
    expect((await decide([withoutReason], { stage: 'output' })).reason).toContain('r2');
  });

  it('refuses a rule that could never match or decide, naming the rule and the field, as a config would', () => {
    const refusal = (rules: unknown) => {
      try {
        createRulesPolicy(rules as PolicyRule[]);
      } catch (error) {
        return (error as Error).message;
      }
      return 'accepted';
    };
    const prefix = 'config: the rules given to createRulesPolicy is invalid: ';
    expect(refusal([{ id: 'm', stage: 'tools', effect: 'allow' }])).toBe(`${prefix}policy.rules.0.stage: "tools" is not one of "precheck", "tool", "approval", "output", "memory.write"; did you mean "tool"?`);
    expect(refusal([allowPayments, { id: 'm', stage: 'tool', effect: 'permit' }])).toBe(`${prefix}policy.rules.1.effect: "permit" is not one of "allow", "deny", "require_approval"`);
    expect(refusal([{ id: 'm', stage: 'tool', effect: 'allow', capabilitys: ['math.*'] }])).toMatch(`${prefix}policy.rules.0.capabilitys: unknown key; did you mean "capabilities"?`);
    expect(refusal([allowPayments, allowPayments])).toBe(`${prefix}policy.rules.1.id: rule id "allow-payments" is used twice; ids must be unique`);
    expect(refusal([allowPayments, ...defaultRules])).toBe('accepted');
  });

  it('returns a promise even for a synchronous rule set', () => {
    const result = createRulesPolicy([]).evaluate(request(), { signal });
    expect(result).toBeInstanceOf(Promise);
  });
});

describe('globToRegExp', () => {
  it('matches the whole string, not a part of it', () => {
    expect(globToRegExp('math.add').test('math.add')).toBe(true);
    expect(globToRegExp('math.add').test('xmath.add')).toBe(false);
    expect(globToRegExp('math.add').test('math.addx')).toBe(false);
  });

  it('lets "*" match any run of characters, dots and the empty run included', () => {
    const pattern = globToRegExp('payments.*');
    expect(pattern.test('payments.refund')).toBe(true);
    expect(pattern.test('payments.refund.full')).toBe(true);
    expect(pattern.test('payments.')).toBe(true);
    expect(pattern.test('payments')).toBe(false);
    expect(pattern.test('paymentsx')).toBe(false);
    expect(globToRegExp('*').test('')).toBe(true);
    expect(globToRegExp('*').test('anything.at.all')).toBe(true);
    expect(globToRegExp('a*c').test('abbbc')).toBe(true);
    expect(globToRegExp('a*c').test('abbbd')).toBe(false);
    expect(globToRegExp('*.refund').test('payments.refund')).toBe(true);
  });

  it('treats "." as a literal dot', () => {
    expect(globToRegExp('math.add').test('mathXadd')).toBe(false);
    expect(globToRegExp('a.b').test('a_b')).toBe(false);
  });

  it('escapes every other regular expression character', () => {
    const literals = ['a+b', 'a?b', 'a^b', 'a$b', 'a{1}', 'a(b)', 'a|b', 'a[b]', 'a\\b', 'a.b+c'];
    for (const literal of literals) {
      const pattern = globToRegExp(literal);
      expect(pattern.test(literal), literal).toBe(true);
    }
    expect(globToRegExp('a+b').test('aab')).toBe(false);
    expect(globToRegExp('a?b').test('ab')).toBe(false);
    expect(globToRegExp('a?b').test('axb')).toBe(false);
    expect(globToRegExp('a{1}').test('a')).toBe(false);
    expect(globToRegExp('a(b)').test('ab')).toBe(false);
    expect(globToRegExp('a|b').test('a')).toBe(false);
    expect(globToRegExp('a|b').test('b')).toBe(false);
    expect(globToRegExp('a[b]').test('ab')).toBe(false);
    expect(globToRegExp('a\\b').test('ab')).toBe(false);
  });

  it('does not throw on a glob that would be an invalid regular expression', () => {
    expect(() => globToRegExp('a(')).not.toThrow();
    expect(() => globToRegExp('[')).not.toThrow();
    expect(() => globToRegExp('\\')).not.toThrow();
    expect(globToRegExp('a(').test('a(')).toBe(true);
  });
});
