import type { RunchartConfigInput } from '../config.js';

/** The config the CLI uses when no runchart.yaml is found: the defaults plus the math capabilities. */
export const starterConfig: RunchartConfigInput = {
  runtime: { max_tool_hops: 3, require_trace_id: false, enable_background_updates: true, default_model: 'gpt-5.4' },
  policy: {
    precheck_required: true,
    rules: [
      { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow', reason: 'runs may start, answer and remember' },
      { id: 'allow-math', stage: 'tool', effect: 'allow', capabilities: ['math.*'], reason: 'arithmetic is harmless' },
    ],
  },
  telemetry: { emit_structured_events: true, capture_content: false },
  execution: { gateway_required: true },
};
