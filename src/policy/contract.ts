import { z } from 'zod';

/** Where in a run a decision is asked for. */
export const PolicyStage = z.enum(['precheck', 'tool', 'approval', 'output', 'memory.write']);
export type PolicyStage = z.infer<typeof PolicyStage>;

export const PolicyVerdict = z.enum(['allow', 'deny', 'require_approval']);
export type PolicyVerdict = z.infer<typeof PolicyVerdict>;

/** What the policy layer is asked: one stage, one identity, and the capability when a tool is involved. */
export const PolicyRequest = z.object({
  stage: PolicyStage,
  runId: z.string(),
  tenantId: z.string(),
  principalId: z.string(),
  capability: z.string().optional(),
  version: z.string().optional(),
  callId: z.string().optional(),
});
export type PolicyRequest = z.infer<typeof PolicyRequest>;

/** A verdict and the rule that produced it; every decision names its rule. */
export const PolicyDecision = z.object({
  verdict: PolicyVerdict,
  ruleId: z.string().min(1),
  reason: z.string(),
});
export type PolicyDecision = z.infer<typeof PolicyDecision>;

/** A decision as the run records it: the verdict plus what it was about. */
export const DecisionRecord = PolicyDecision.extend({
  stage: PolicyStage,
  principalId: z.string(),
  capability: z.string().optional(),
  callId: z.string().optional(),
  /** For approvals: the hash of the exact arguments that were approved. */
  argsHash: z.string().optional(),
});
export type DecisionRecord = z.infer<typeof DecisionRecord>;

/**
 * What a run needs from policy: one decision per question, never an exception for a "no".
 * @example
 * const policy: PolicyLayer = { evaluate: async () => ({ verdict: 'allow', ruleId: 'open', reason: 'demo' }) };
 */
export interface PolicyLayer {
  evaluate(request: PolicyRequest, options: { signal: AbortSignal }): Promise<PolicyDecision>;
}
