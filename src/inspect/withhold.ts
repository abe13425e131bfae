/** What a recording shows in place of model text that the run's output check has not allowed (yet). */
export const WITHHELD = '[withheld until the output check allows it]';

type Json = unknown;

/** True when a run context's decisions hold the policy's `output` allow: from then on the answer may be shown. */
export function isOutputAllowed(context: unknown): boolean {
  const decisions = (context as { decisions?: unknown } | null)?.decisions;
  return Array.isArray(decisions) && decisions.some((decision: { stage?: unknown; verdict?: unknown }) => decision?.stage === 'output' && decision.verdict === 'allow');
}

/**
 * Replaces, in place, the model-authored text of a plain JSON value with `WITHHELD`: the content
 * of assistant messages, the `text` of a model step's answer and of its `model.step` mark, and the
 * `output` of a run context (set from the answer before the output check). Everything else
 * (identity, decisions, tool calls and results, errors) is left as it is.
 * @example
 * const line = withholdModelText(JSON.parse(text));
 */
export function withholdModelText<T>(value: T): T {
  visit(value as Json);
  return value;
}

function visit(value: Json): void {
  if (Array.isArray(value)) {
    for (const item of value) visit(item);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const record = value as Record<string, Json>;
  if (record.role === 'assistant' && typeof record.content === 'string' && record.content !== '') record.content = WITHHELD;
  // A model step's answer ({ text, toolCalls, finishReason, … }) and its telemetry mark.
  if (typeof record.text === 'string' && ('finishReason' in record || record.kind === 'model.step')) record.text = WITHHELD;
  // A run's context: the answer waits in `output` while the output check runs.
  if (typeof record.output === 'string' && 'accepted' in record && 'decisions' in record) record.output = WITHHELD;
  for (const key in record) visit(record[key]);
}
