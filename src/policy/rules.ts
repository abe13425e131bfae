import { parseRules, type PolicyRule } from '../config.js';
import { vouch } from '../errors.js';
import type { PolicyDecision, PolicyLayer, PolicyRequest, PolicyVerdict } from './contract.js';

const strength: Record<PolicyVerdict, number> = { allow: 0, require_approval: 1, deny: 2 };

/** Compiles a glob where `*` matches any run of characters (dots included). */
export function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

interface CompiledRule {
  rule: PolicyRule;
  stages: Set<string>;
  capabilities?: RegExp[];
  tenants?: RegExp[];
  principals?: RegExp[];
}

/**
 * The rule engine: of the rules that match, deny beats require_approval beats allow; when none
 * matches the verdict is deny by `default-deny`. The rules are checked as a config's are: a rule
 * that could never match (a misspelt stage, say) is an error naming it, not a silent deny.
 * @example
 * const policy = createRulesPolicy([{ id: 'math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] }]);
 */
export function createRulesPolicy(rules: readonly PolicyRule[]): PolicyLayer {
  const compiled: CompiledRule[] = parseRules(rules).map((rule) => ({
    rule,
    stages: new Set(Array.isArray(rule.stage) ? rule.stage : [rule.stage]),
    capabilities: rule.capabilities?.map(globToRegExp),
    tenants: rule.tenants?.map(globToRegExp),
    principals: rule.principals?.map(globToRegExp),
  }));
  const matchesAny = (patterns: RegExp[] | undefined, value: string | undefined) =>
    patterns === undefined || (value !== undefined && patterns.some((pattern) => pattern.test(value)));

  // One decision per rule, made once: a decision is never changed by whoever receives it.
  const decisions = new Map<CompiledRule, PolicyDecision>(
    compiled.map((candidate) => [
      candidate,
      vouch(Object.freeze({ verdict: candidate.rule.effect, ruleId: candidate.rule.id, reason: candidate.rule.reason ?? `rule ${candidate.rule.id} (${candidate.rule.effect})` })),
    ]),
  );

  function decide(request: PolicyRequest): PolicyDecision {
    let best: CompiledRule | undefined;
    for (const candidate of compiled) {
      if (!candidate.stages.has(request.stage)) continue;
      if (!matchesAny(candidate.capabilities, request.capability)) continue;
      if (!matchesAny(candidate.tenants, request.tenantId)) continue;
      if (!matchesAny(candidate.principals, request.principalId)) continue;
      if (!best || strength[candidate.rule.effect] > strength[best.rule.effect]) best = candidate;
    }
    if (!best) {
      const subject = request.capability ? ` for "${request.capability}"` : '';
      return vouch({ verdict: 'deny', ruleId: 'default-deny', reason: `no rule allows stage ${request.stage}${subject}` });
    }
    return decisions.get(best)!;
  }

  return { evaluate: async (request) => decide(request) };
}
