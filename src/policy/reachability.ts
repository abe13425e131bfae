import type { PolicyRule } from '../config.js';
import { globToRegExp } from './rules.js';

/** A registered capability the rules never let a model see, and what to do about it. */
export interface UnreachableCapability {
  capability: string;
  /** The warning: why it is unreachable and the rule to add (or the rule to narrow). */
  message: string;
}

const stagesOf = (rule: PolicyRule) => (Array.isArray(rule.stage) ? rule.stage : [rule.stage]);
const matches = (patterns: readonly string[] | undefined, value: string) => patterns === undefined || patterns.some((pattern) => globToRegExp(pattern).test(value));
/** True when a rule's tenant or principal list leaves no one out. */
const everyone = (patterns: readonly string[] | undefined) => patterns === undefined || patterns.includes('*');

/**
 * The capabilities no rule can reach: at stage `tool` none allows them (nor requires an approval
 * for them), or a deny for every tenant and principal beats whatever allows them. The model is
 * never shown such a capability (deny by default), which is easy to miss: the runtime warns.
 * @example
 * unreachableCapabilities([{ id: 'allow-runs', stage: 'precheck', effect: 'allow' }], ['math.add']);
 * // [{ capability: 'math.add', message: 'policy: capability "math.add" is registered, but no rule … add a rule such as …' }]
 */
export function unreachableCapabilities(rules: readonly PolicyRule[], capabilities: readonly string[]): UnreachableCapability[] {
  const toolRules = rules.filter((rule) => stagesOf(rule).includes('tool'));
  const found: UnreachableCapability[] = [];
  for (const capability of new Set(capabilities)) {
    const applying = toolRules.filter((rule) => matches(rule.capabilities, capability));
    const denial = applying.find((rule) => rule.effect === 'deny' && everyone(rule.tenants) && everyone(rule.principals));
    if (denial) {
      found.push({
        capability,
        message: `policy: capability "${capability}" is registered, but rule "${denial.id}" denies it to every tenant and principal, so no model is shown it; narrow that rule (tenants, principals, capabilities) or remove it`,
      });
    } else if (!applying.some((rule) => rule.effect !== 'deny')) {
      const id = `allow-${capability.replace(/[^A-Za-z0-9]+/g, '-')}`;
      found.push({
        capability,
        message:
          `policy: capability "${capability}" is registered, but no rule allows it at stage tool, so no model is shown it (deny by default); ` +
          `add a rule such as { id: ${id}, stage: tool, effect: allow, capabilities: ["${capability}"] } (or effect: require_approval)`,
      });
    }
  }
  return found;
}
