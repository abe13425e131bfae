import type { TelemetryLayer, TelemetryMark } from '../telemetry/contract.js';

const paint = (code: number, text: string) => `\x1b[${code}m${text}\x1b[0m`;
const verdictColor = { allow: 32, deny: 31, require_approval: 33 } as const;

/** Formats one telemetry mark as a progress line, or null for marks not worth a line. */
export function progressLine(mark: TelemetryMark, color = false): string | null {
  const tint = (code: number, text: string) => (color ? paint(code, text) : text);
  switch (mark.kind) {
    case 'state.enter':
      return mark.state === 'toolExecution.awaitingApproval' ? tint(33, `→ ${mark.state} (waiting for a person)`) : tint(1, `→ ${mark.state}`);
    case 'decision': {
      const { decision } = mark;
      const subject = decision.capability ? ` ${decision.capability}` : '';
      return `  ${decision.stage}${subject}: ${tint(verdictColor[decision.verdict], decision.verdict)} (rule ${decision.ruleId})`;
    }
    case 'tool.call':
      return `  tool ${mark.capability ?? mark.toolName} [${mark.callId}]: ${mark.outcome}${mark.message ? ` — ${mark.message}` : ''}`;
    case 'model.step':
      return `  model ${mark.model}: ${mark.toolCalls ? `${mark.toolCalls} tool call(s)` : 'answer'} (${mark.usage.inputTokens}+${mark.usage.outputTokens} tokens)`;
    case 'warning':
      return `  warning: ${mark.message}`;
    case 'run.error':
      return `  error (${mark.error.kind}, ${mark.error.layer}): ${mark.error.message}`;
    default:
      return null;
  }
}

/** A telemetry layer that writes each state, decision and tool call as it happens (in color on a terminal). */
export function progressTelemetry(write: (line: string) => void, options: { color?: boolean } = {}): TelemetryLayer {
  return {
    startRun: (_identity, startedAt) => ({
      record: (mark, at) => {
        const line = progressLine(mark, options.color);
        if (line) write(options.color ? `${paint(2, `${String(at - startedAt).padStart(5)} ms`)} ${line}` : line);
      },
      end: () => {},
    }),
  };
}
