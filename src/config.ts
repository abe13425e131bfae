import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { RunchartError } from './errors.js';
import { PolicyStage, PolicyVerdict } from './policy/contract.js';
import type { RunSettings } from '../machines/run/types.js';
import { DEFAULT_KEEP_LOADED_TENANTS } from './memory/lowdb.js';
import { DEFAULT_KEPT_FINISHED_RUNS } from './store/in-memory.js';
import { SCHEMA_NAME } from './store/postgres/schema-name.js';

/** The schema name a postgres store uses unless `store.schema` says otherwise. */
export const DEFAULT_POSTGRES_SCHEMA = 'runchart';

/** How many run recordings the CLI and the server keep unless `telemetry.keep_recordings` says otherwise. */
export const DEFAULT_KEPT_RECORDINGS = 200;

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
  /** How many run recordings stay under store.dir/inspect; the oldest are removed beyond it. */
  keep_recordings: z.number().int().min(1).default(DEFAULT_KEPT_RECORDINGS),
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
  /**
   * ES modules, relative to the config file, each exporting `capabilities` (an array made with
   * `defineCapability`): read by the `runchart` CLI (`run`, `serve`, `worker`), beside the built-in ones.
   */
  capability_modules: z.array(z.string().min(1)).default([]),
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
    /** kind postgres: how long a process holds a run without renewing its lease; a dead worker's runs are taken over after it (default 15000). */
    lease_ms: z.number().int().min(100).max(3_600_000).optional(),
    /** kind postgres: connections this process keeps open to the server (one more listens); default 10. */
    max_connections: z.number().int().min(2).max(1_000).optional(),
  })
  .superRefine((store, context) => {
    if (store.kind !== 'postgres') {
      for (const key of ['url', 'schema', 'lease_ms', 'max_connections'] as const) {
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
      ? Object.assign({}, store, { kind: store.kind, url: store.url ?? process.env.DATABASE_URL!, schema: store.schema ?? DEFAULT_POSTGRES_SCHEMA, lease_ms: store.lease_ms ?? 15_000, max_connections: store.max_connections ?? 10 })
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
  throw new RunchartError('invalid-input', 'config', `config: ${source} is invalid: ${describeConfigIssues(result.error, value)}`, { cause: result.error });
}

/**
 * Policy rules given in code, checked as a config's are (unknown keys, stages, effects, unique ids):
 * each issue names the rule by its place in the list and the field.
 * @example
 * const rules = parseRules([{ id: 'math', stage: 'tool', effect: 'allow', capabilities: ['math.*'] }]);
 */
export function parseRules(rules: unknown, source = 'the rules given to createRulesPolicy'): PolicyRule[] {
  return parseConfig({ policy: { rules } }, source).policy.rules;
}

type Path = readonly PropertyKey[];

/** The value at `path` of what was parsed, for messages that quote it. */
function valueAt(root: unknown, path: Path): unknown {
  let value = root;
  for (const key of path) value = typeof value === 'object' && value !== null ? (value as Record<PropertyKey, unknown>)[key] : undefined;
  return value;
}

/** The keys the config schema allows in the object at `path` (empty when there is none there). */
function keysAt(path: Path): string[] {
  let schema: z.core.$ZodType | undefined = RunchartConfig;
  for (const key of path) {
    schema = objectIn(schema);
    if (!schema) return [];
    const def = schema._zod.def as { type: string; shape?: Record<string, z.core.$ZodType>; element?: z.core.$ZodType };
    schema = def.type === 'object' ? def.shape?.[String(key)] : def.type === 'array' ? def.element : undefined;
  }
  const found = objectIn(schema);
  const def = found?._zod.def as { type: string; shape?: Record<string, unknown> } | undefined;
  return def?.type === 'object' ? Object.keys(def.shape ?? {}) : [];
}

/** The schema under defaults and optionals (an object or an array), if any. */
function objectIn(schema: z.core.$ZodType | undefined): z.core.$ZodType | undefined {
  let current = schema;
  for (let depth = 0; current && depth < 8; depth++) {
    const def = current._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
    if (def.type === 'object' || def.type === 'array') return current;
    current = def.innerType ?? def.in;
  }
  return undefined;
}

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length]!;
}

/** The candidate nearest to `word`, when it is near enough to be a slip of the keyboard. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: { candidate: string; score: number } | undefined;
  for (const candidate of candidates) {
    const score = distance(word.toLowerCase(), candidate.toLowerCase());
    if (!best || score < best.score) best = { candidate, score };
  }
  return best && best.score <= Math.max(2, Math.floor(word.length / 3)) ? best.candidate : undefined;
}

/** An option name a function does not take: the nearest one it does, or the list of them all. */
export function unknownOption(name: string, known: readonly string[]): string {
  const guess = nearest(name, known);
  return `unknown option "${name}"${guess ? `; did you mean "${guess}"?` : `; the options are ${known.join(', ')}`}`;
}

const quoted = (values: readonly unknown[]) => values.map((value) => JSON.stringify(value)).join(', ');

/**
 * Config issues as one message: each names its path; an unknown key gets the nearest known one
 * ("did you mean") and the keys its section takes; a value outside a set lists the allowed
 * values. A union (a rule's `stage`: one stage or a list) reports the branch the value's shape chose.
 */
function describeConfigIssues(error: z.ZodError, input: unknown): string {
  const describe = (issues: readonly z.core.$ZodIssue[], prefix: Path): string[] =>
    issues.flatMap((issue) => {
      const path = [...prefix, ...issue.path];
      const name = path.map(String).join('.');
      const at = (text: string) => (name ? `${name}: ${text}` : text);
      switch (issue.code) {
        case 'unrecognized_keys': {
          const known = keysAt(path);
          return issue.keys.map((key) => {
            const guess = nearest(key, known);
            const full = [...path.map(String), key].join('.');
            const allowed = known.length ? ` (${name || 'the config'} takes ${known.join(', ')})` : '';
            return `${full}: unknown key${guess ? `; did you mean "${guess}"?` : '; remove it or check its spelling'}${allowed}`;
          });
        }
        case 'invalid_value': {
          if (issue.values.length < 2) return [at(issue.message)];
          const given = valueAt(input, path);
          const guess = typeof given === 'string' ? nearest(given, issue.values.map(String)) : undefined;
          return [at(`${JSON.stringify(given) ?? 'nothing'} is not one of ${quoted(issue.values)}${guess ? `; did you mean "${guess}"?` : ''}`)];
        }
        case 'invalid_union': {
          // The branch whose type the value has is the one the user meant (a stage name, or a list of them).
          const branch =
            issue.errors.find((issues) => issues.every((inner) => inner.path.length > 0)) ??
            issue.errors.find((issues) => !issues.some((inner) => inner.code === 'invalid_type' && inner.path.length === 0)) ??
            issue.errors[0];
          return branch?.length ? describe(branch, path) : [at(issue.message)];
        }
        default:
          return [at(issue.message)];
      }
    });
  return describe(error.issues, []).join('; ');
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

