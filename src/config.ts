import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { describeIssues, RunchartError } from './errors.js';
import { PolicyStage, PolicyVerdict } from './policy/contract.js';
import type { RunSettings } from '../machines/run/types.js';
import { DEFAULT_KEEP_LOADED_TENANTS } from './memory/lowdb.js';
import { DEFAULT_KEPT_FINISHED_RUNS } from './store/in-memory.js';
import { SCHEMA_NAME } from './store/postgres/schema-name.js';

/** The schema name a postgres store uses unless `store.schema` says otherwise. */
export const DEFAULT_POSTGRES_SCHEMA = 'runchart';

/** A policy rule; every decision names the rule that produced it. */
export const PolicyRule = z.strictObject({
  id: z.string().min(1, 'a rule needs an id: decisions name it'),
  stage: z.union([PolicyStage, z.array(PolicyStage).min(1)]),
  effect: PolicyVerdict,
  capabilities: z.array(z.string().min(1)).min(1).optional(),
  tenants: z.array(z.string().min(1)).min(1).optional(),
  principals: z.array(z.string().min(1)).min(1).optional(),
  reason: z.string().optional(),
});
export type PolicyRule = z.infer<typeof PolicyRule>;

/** The rules used when a config gives none: runs may start, answer and remember; no capability is allowed. */
export const defaultRules: PolicyRule[] = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow', reason: 'default: runs may start, answer and remember' },
];

const Runtime = z.strictObject({
  max_tool_hops: z.number().int().min(0).max(50).default(3),
  max_tool_calls_per_step: z.number().int().min(1).max(64).default(8),
  max_total_tokens: z.number().int().positive().optional(),
  require_trace_id: z.boolean().default(false),
  enable_background_updates: z.boolean().default(true),
  default_model: z.string().min(1).default('gpt-5.4'),
  system_prompt: z.string().default('You are a helpful assistant. Use the tools you are given when they help.'),
  tool_deadline_ms: z.number().int().positive().default(60_000),
  /** How long one model step may take; absolute (kept with the run), so a restored run waits only for what is left. */
  model_deadline_ms: z.number().int().positive().max(2_147_483_647).default(300_000),
  /** How long a parked call waits for approval before it is rejected; absolute, so it survives a restart. */
  approval_timeout_ms: z.number().int().positive().max(2_147_483_647).default(86_400_000),
});

const Policy = z.strictObject({
  precheck_required: z.boolean().default(true),
  rules: z
    .array(PolicyRule)
    .default(() => structuredClone(defaultRules))
    .superRefine((rules, context) => {
      const seen = new Set<string>();
      rules.forEach((rule, index) => {
        if (seen.has(rule.id)) context.addIssue({ code: 'custom', path: [index, 'id'], message: `rule id "${rule.id}" is used twice; ids must be unique` });
        seen.add(rule.id);
      });
    }),
});

const Telemetry = z.strictObject({
  emit_structured_events: z.boolean().default(true),
  capture_content: z.boolean().default(false),
  /** The CLI and the server record each run (Stately inspection protocol, JSONL) under store.dir/inspect for the viewer. */
  record_runs: z.boolean().default(true),
  /** Regular expressions of secrets to redact from telemetry and saved runs, besides the built-in API key and token shapes. */
  redact_patterns: z
    .array(
      z.string().refine((pattern) => {
        try {
          new RegExp(pattern);
          return true;
        } catch {
          return false;
        }
      }, 'not a valid regular expression'),
    )
    .default(() => []),
});

const Execution = z.strictObject({
  gateway_required: z.literal(true, 'every tool runs through the gateway; remove the key or set it to true').default(true),
  concurrency: z.number().int().min(1).max(1024).default(16),
});

const Limits = z.strictObject({
  max_input_chars: z.number().int().positive().default(32_000),
  max_tool_argument_chars: z.number().int().positive().default(16_000),
  max_tool_result_chars: z.number().int().positive().default(32_000),
  /** The longest answer text a model step may return; past it the run fails with budget-exceeded (nothing of the text is kept). */
  max_model_text_chars: z.number().int().positive().default(100_000),
});

const Memory = z.strictObject({
  recall_limit: z.number().int().min(0).max(50).default(5),
  history_turns: z.number().int().min(0).max(100).default(10),
  /** store kind lowdb: how many tenants' memory stays loaded and indexed; the idle one used longest ago is dropped (and read again when needed). */
  keep_loaded_tenants: z.number().int().min(1).default(DEFAULT_KEEP_LOADED_TENANTS),
  /** The longest memory item a turn writes back (its input and answer together); longer ones are cut, marked as cut. */
  max_item_chars: z.number().int().min(100).default(8_000),
});

const postgresUrl = /^postgres(ql)?:\/\/[^\s]+$/;
const postgresUrlHint = 'a postgres:// URL such as postgres://user@127.0.0.1:5432/runchart';

const Store = z
  .strictObject({
    /**
     * lowdb: files under `dir` (runs, journal and queue as JSON Lines, memory as lowdb documents), one writer per directory;
     * memory: nothing survives the process; postgres: runs, journal, background queue and memory in PostgreSQL at `url`, shared by many processes.
     */
    kind: z.enum(['lowdb', 'memory', 'postgres']).default('lowdb'),
    dir: z.string().min(1).default('.runchart'),
    /** kind memory: how many finished runs stay listable (the oldest go first); the lowdb store keeps every finished run on disk. */
    keep_finished_runs: z.number().int().min(0).default(DEFAULT_KEPT_FINISHED_RUNS),
    /** kind postgres: the server; DATABASE_URL when omitted. */
    url: z.string().regex(postgresUrl, postgresUrlHint).optional(),
    /** kind postgres: the schema the tables live in (the job queue's is this name with `_queue` after it). */
    schema: z.string().regex(SCHEMA_NAME, 'a plain schema name: lower-case letters, digits and _, at most 40, not starting with a digit').optional(),
  })
  .superRefine((store, context) => {
    if (store.kind !== 'postgres') {
      for (const key of ['url', 'schema'] as const) {
        if (store[key] !== undefined) context.addIssue({ code: 'custom', path: [key], message: `only read with kind postgres; set store.kind: postgres or remove store.${key}` });
      }
      return;
    }
    if (store.url !== undefined) return;
    const fromEnvironment = process.env.DATABASE_URL;
    if (!fromEnvironment) context.addIssue({ code: 'custom', path: ['url'], message: `kind postgres needs store.url or the DATABASE_URL environment variable: ${postgresUrlHint}` });
    else if (!postgresUrl.test(fromEnvironment)) context.addIssue({ code: 'custom', path: ['url'], message: `DATABASE_URL (used as store.url is not set) is not ${postgresUrlHint}` });
  })
  .transform((store) =>
    store.kind === 'postgres'
      ? Object.assign({}, store, { kind: store.kind, url: store.url ?? process.env.DATABASE_URL!, schema: store.schema ?? DEFAULT_POSTGRES_SCHEMA })
      : Object.assign({}, store, { kind: store.kind }),
  );

const ApiKey = z.strictObject({
  /** sha256 of the key, hex; the key itself never appears in the config. Make one with `runchart key`. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'the sha256 of the key as 64 lower-case hex characters'),
  tenant: z.string().min(1),
  principal: z.string().min(1),
  /** A name for logs, never the key. */
  name: z.string().optional(),
});

const Http = z.strictObject({
  port: z.number().int().min(0).max(65_535).default(8787),
  host: z.string().default('127.0.0.1'),
  max_body_bytes: z.number().int().positive().default(256 * 1024),
  api_keys: z.array(ApiKey).default(() => []),
  /**
   * How long shutdown waits for in-flight runs before it stops them (they stay resumable in the
   * store); `runtime.close()` gives background tasks the same time before it aborts them.
   */
  shutdown_grace_ms: z.number().int().min(0).default(10_000),
});

/** The whole config: YAML or a plain object of the same shape. Unknown keys are errors. */
export const RunchartConfig = z.strictObject({
  runtime: Runtime.prefault({}),
  policy: Policy.prefault({}),
  telemetry: Telemetry.prefault({}),
  execution: Execution.prefault({}),
  limits: Limits.prefault({}),
  memory: Memory.prefault({}),
  store: Store.prefault({}),
  http: Http.prefault({}),
});
export type RunchartConfig = z.output<typeof RunchartConfig>;
export type RunchartConfigInput = z.input<typeof RunchartConfig>;

/**
 * Validates a config object; an unknown or mistyped key throws naming its path.
 * @example
 * const config = parseConfig({ runtime: { max_tool_hops: 2 } });
 */
export function parseConfig(value: unknown, source = 'config'): RunchartConfig {
  const result = RunchartConfig.safeParse(value ?? {});
  if (result.success) return result.data;
  throw new RunchartError('invalid-input', 'config', `config: ${source} is invalid: ${describeIssues(result.error)}`, { cause: result.error });
}

/**
 * Reads and validates a YAML config file.
 * @example
 * const config = await loadConfig('runchart.yaml');
 */
export async function loadConfig(path: string): Promise<RunchartConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new RunchartError('invalid-input', 'config', `config: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, { cause: error });
  }
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (error) {
    throw new RunchartError('invalid-input', 'config', `config: ${path} is not valid YAML: ${(error as Error).message}`, { cause: error });
  }
  return parseConfig(value, path);
}

/** The settings a run keeps in context, resolved from the config once per runtime. */
export function settingsFrom(config: RunchartConfig): RunSettings {
  return {
    model: config.runtime.default_model,
    systemPrompt: config.runtime.system_prompt,
    maxToolHops: config.runtime.max_tool_hops,
    maxToolCallsPerStep: config.runtime.max_tool_calls_per_step,
    maxTotalTokens: config.runtime.max_total_tokens ?? null,
    precheckRequired: config.policy.precheck_required,
    backgroundUpdates: config.runtime.enable_background_updates,
    recallLimit: config.memory.recall_limit,
    maxToolArgumentChars: config.limits.max_tool_argument_chars,
  };
}

