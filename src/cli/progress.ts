import type { TelemetryLayer, TelemetryMark } from '../telemetry/contract.js';

/** Formats one telemetry mark as a progress line, or null for marks not worth a line. */
export function progressLine(mark: TelemetryMark): string | null {
  switch (mark.kind) {
    case 'state.enter':
      return `→ ${mark.state}`;
    case 'decision': {
      const { decision } = mark;
      const subject = decision.capability ? ` ${decision.capability}` : '';
      return `  ${decision.stage}${subject}: ${decision.verdict} (rule ${decision.ruleId})`;
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

/** A telemetry layer that writes each state, decision and tool call as it happens. */
export function progressTelemetry(write: (line: string) => void): TelemetryLayer {
  return {
    startRun: () => ({
      record: (mark) => {
        const line = progressLine(mark);
        if (line) write(line);
      },
      end: () => {},
    }),
  };
}
