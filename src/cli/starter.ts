import { parse as parseYaml } from 'yaml';
import type { RunchartConfigInput } from '../config.js';

/** The starter `runchart.yaml`: what `runchart init` writes, and what the CLI uses when no config is found. */
export const starterYaml = `# runchart.yaml — written by "runchart init". Every key is checked: a typo is an error that names it.
runtime:
  max_tool_hops: 3              # model → tool round trips per run
  require_trace_id: true        # the CLI and the HTTP server start (or continue) a trace for every run
  enable_background_updates: true
  default_model: gpt-5.4        # used when OPENAI_API_KEY or OPENAI_BASE_URL is set
  approval_timeout_ms: 86400000 # a parked call is rejected after a day

policy:
  precheck_required: true       # a run needs an explicit allow to start
  # Of the rules that match, deny beats require_approval beats allow; no match is a deny ("default-deny").
  rules:
    - id: allow-runs
      stage: [precheck, output, memory.write]
      effect: allow
      reason: runs may start, answer and remember
    - id: allow-math
      stage: tool
      effect: allow
      capabilities: ["math.*"]
      reason: arithmetic is harmless
    - id: notes-need-approval
      stage: tool
      effect: require_approval
      capabilities: ["notes.*"]
      reason: saving a note writes to disk, so a person approves it
    - id: admins-approve
      stage: approval
      effect: allow
      principals: ["admin", "admin-*"]
      reason: admins may approve parked calls

telemetry:
  emit_structured_events: false # true: one JSON line per state, decision and tool call (pino; the CLI writes them to stderr)
  capture_content: false        # prompts, arguments and results stay out of telemetry unless true

execution:
  gateway_required: true

store:
  kind: lowdb                   # files under dir: runs, journal and queue as JSON Lines, memory as lowdb JSON
  dir: .runchart

# http:
#   port: 8787
#   api_keys:                   # make one with: runchart key --tenant acme --principal admin
#     - { sha256: "<64 hex>", tenant: acme, principal: admin }
`;

/** The starter config as an object. */
export const starterConfig = parseYaml(starterYaml) as RunchartConfigInput;
