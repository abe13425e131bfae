import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import type { InspectionEvent } from 'xstate';
import { join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfig, parseConfig, type RunchartConfig } from '../config.js';
import { isRunchartError, RunchartError } from '../errors.js';
import type { RunResult } from '../../machines/run/result.js';
import { mathCapabilities } from '../catalog/math.js';
import { demoModel } from '../models/demo.js';
import { modelFromEnvironment } from '../models/openai.js';
import { createHttpIngress, generateApiKey } from '../ingress/http.js';
import { newTraceId } from '../ingress/request.js';
import { createRuntime } from '../runtime.js';
import { checkPolicyCoverage } from '../verification/coverage.js';
import { enumerateRunPaths } from '../verification/paths.js';
import { connectInspector } from './inspect.js';
import { createRunRecorder, readRecording } from '../inspect/recorder.js';
import { createRunRedactor } from '../redaction.js';
import { createCatalog } from '../catalog/registry.js';
import { progressTelemetry } from './progress.js';
import { combineTelemetry } from '../telemetry/contract.js';
import { createTelemetry } from '../telemetry/create.js';
import { stderrEventLogger } from '../telemetry/pino.js';
import { starterConfig, starterYaml } from './starter.js';
import { notesCapability } from '../catalog/notes.js';

/** Exit codes of the `runchart` command. */
export const ExitCode = { ok: 0, failed: 1, usage: 2, denied: 3, awaitingApproval: 4, cancelled: 5, violations: 6 } as const;

const statusExit: Record<string, number> = {
  completed: ExitCode.ok,
  failed: ExitCode.failed,
  denied: ExitCode.denied,
  awaiting_approval: ExitCode.awaitingApproval,
  cancelled: ExitCode.cancelled,
};

/** Finds the config: `--config`, else ./runchart.yaml, else the starter config. */
async function resolveConfig(path: string | undefined): Promise<{ config: RunchartConfig; source: string }> {
  if (path) return { config: await loadConfig(path), source: path };
  if (existsSync('runchart.yaml')) return { config: await loadConfig('runchart.yaml'), source: 'runchart.yaml' };
  return { config: parseConfig(starterConfig), source: 'built-in starter config' };
}

const hops = (value: string) => {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0 || number > 10) throw new InvalidArgumentError('use a whole number from 0 to 10');
  return number;
};

interface CommonOptions {
  config?: string;
  store?: string;
  json?: boolean;
  /** true: a local inspector bridge; a string: that inspector server's ws:// URL. */
  inspect?: boolean | string;
}

/** Prints a result (or its JSON) and sets the exit code from its status. */
function report(result: RunResult, options: { json?: boolean }, line: (text: string) => void) {
  if (options.json) line(JSON.stringify(result, null, 2));
  else {
    line(`status: ${result.status}   run ${result.runId}   trace ${result.traceId}`);
    const parked = result.status === 'awaiting_approval' ? result.toolCalls.at(-1) : undefined;
    if (parked) {
      line(`\nwaiting for approval: ${parked.capability} ${parked.args} [${parked.callId}]`);
      line(`approve with:  runchart approve ${result.runId} ${parked.callId} --principal <approver> --tenant ${result.tenantId}`);
      line(`reject with:   runchart reject ${result.runId} ${parked.callId} --principal <approver> --tenant ${result.tenantId} --reason "…"`);
    }
    if (result.output !== null) line(`\n${result.output}`);
    if (result.error) line(`\nerror (${result.error.kind}, ${result.error.layer}): ${result.error.message}`);
  }
  process.exitCode = statusExit[result.status] ?? ExitCode.failed;
}

/** Builds the `runchart` program; `io` lets tests capture its output. */
export function createProgram(io: { out: (text: string) => void; err: (text: string) => void; isTTY: boolean }) {
  /** The runtime every command uses: the config found, the demo model, the math capabilities, the store files under the store dir. */
  async function openRuntime(options: CommonOptions & { quiet?: boolean }) {
    const resolved = await resolveConfig(options.config);
    const line = (text: string) => io.out(`${text}\n`);
    let demo = false;
    // With OPENAI_API_KEY or OPENAI_BASE_URL set, the real model; without, the offline demo model.
    const model = modelFromEnvironment(process.env, () => ((demo = true), demoModel()));
    const config: RunchartConfig = {
      ...resolved.config,
      // The demo model answers whatever model is named; name it so that the output does not claim another.
      runtime: { ...resolved.config.runtime, default_model: demo ? 'offline-demo' : (process.env.OPENAI_MODEL ?? resolved.config.runtime.default_model) },
      store: { ...resolved.config.store, ...(options.store ? { dir: options.store } : {}) },
    };
    const modelName = demo ? 'offline demo model (set OPENAI_API_KEY or OPENAI_BASE_URL for a real one)' : `${config.runtime.default_model} at ${process.env.OPENAI_BASE_URL ?? 'api.openai.com'}`;
    if (!options.json) line(`runchart: config from ${resolved.source}; store ${config.store.kind === 'lowdb' ? config.store.dir : 'in memory'}; model: ${modelName}`);
    const inspector = options.inspect ? await connectInspector(typeof options.inspect === 'string' ? options.inspect : undefined) : undefined;
    if (inspector?.pageUrl) line(`watch runs in the Stately inspector: open ${inspector.pageUrl} (its UI loads from stately.ai)`);
    const capabilities = [...mathCapabilities, notesCapability(join(config.store.dir, 'notes.jsonl'))];
    // Every run is recorded for the viewer, redacted like the saved snapshots.
    const recorder =
      config.store.kind === 'lowdb' && config.telemetry.record_runs
        ? createRunRecorder({
            dir: config.store.dir,
            redact: createRunRedactor(createCatalog(capabilities), config.telemetry.redact_patterns),
            onError: (message) => io.err(`runchart: warning: ${message}\n`),
          })
        : undefined;
    const observers = [inspector?.inspect, recorder?.inspect].filter((observer) => observer !== undefined);
    const runtime = createRuntime({
      config,
      model,
      ...(observers.length ? { inspect: (event: InspectionEvent) => observers.forEach((observe) => observe(event)) } : {}),
      // Closed after the runtime, so the recording keeps the runs' last snapshots.
      resources: [...(recorder ? [{ close: () => recorder.flush() }] : []), ...(inspector ? [inspector] : [])],
      capabilities,
      // Structured events (when the config turns them on) go to stderr, so stdout stays the answer (or the JSON).
      telemetry: combineTelemetry(
        ...(options.json || options.quiet ? [] : [progressTelemetry(line, { color: io.isTTY })]),
        createTelemetry({ config, logger: stderrEventLogger() }),
      ),
      onWarning: (message) => io.err(`runchart: warning: ${message}\n`),
    });
    return { runtime, line, config };
  }

  const program = new Command('runchart')
    .description('An agent runtime in which every run is an XState v5 actor.')
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .exitOverride()
    .showHelpAfterError('(run "runchart --help" for usage)');

  program
    .command('run')
    .description('Run one request on the offline demo model and the math capabilities, printing each state as it is entered.')
    .argument('<input>', 'the question or task')
    .option('--tenant <id>', 'tenant of the caller', 'local')
    .option('--principal <id>', 'principal (user or service) of the caller', 'cli')
    .option('--session <id>', 'session id, to carry history between runs')
    .option('--traceparent <value>', 'continue this W3C trace (default: start a new trace)')
    .option('--config <path>', 'YAML config (default: ./runchart.yaml, else the built-in starter config)')
    .option('--store <dir>', 'store directory (default: store.dir of the config, .runchart)')
    .option('--json', 'print only the RunResult as JSON')
    .option('--inspect [url]', 'show the run in the Stately inspector (a local bridge page, or the ws:// URL of an inspector server)')
    .action(async (input: string, options: CommonOptions & { tenant: string; principal: string; session?: string; traceparent?: string }) => {
      const { runtime, line } = await openRuntime(options);
      // The CLI is an ingress: it continues the caller's trace or starts one.
      const trace = options.traceparent ? { traceparent: options.traceparent } : { traceId: newTraceId() };
      const result = await runtime.run({
        input,
        tenantId: options.tenant,
        principalId: options.principal,
        ...(options.session ? { sessionId: options.session } : {}),
        ...trace,
      });
      if (options.inspect === true && io.isTTY) {
        line('the inspector keeps the run; press Ctrl-C to stop');
        await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
      }
      await runtime.close();
      report(result, options, line);
    });

  program
    .command('init')
    .description('Write a starter runchart.yaml with commented rules into the current directory.')
    .option('--force', 'overwrite an existing runchart.yaml')
    .action(async (options: { force?: boolean }) => {
      if (existsSync('runchart.yaml') && !options.force) {
        throw new RunchartError('invalid-input', 'config', 'config: runchart.yaml exists already; pass --force to overwrite it');
      }
      await writeFile('runchart.yaml', starterYaml);
      io.out('wrote runchart.yaml — try: runchart run "what is 2+3?"  or  runchart run "note: buy milk" (needs an approval)\n');
    });

  program
    .command('key')
    .description('Make an API key for the HTTP ingress and print the config entry that maps it to a tenant and principal.')
    .requiredOption('--tenant <id>', 'tenant the key acts for')
    .requiredOption('--principal <id>', 'principal the key acts as')
    .action((options: { tenant: string; principal: string }) => {
      const { key, sha256 } = generateApiKey();
      io.out(`key (give it to the caller; it is not stored anywhere): ${key}\n\nadd to runchart.yaml under http.api_keys:\n    - { sha256: "${sha256}", tenant: ${options.tenant}, principal: ${options.principal} }\n`);
    });

  for (const verb of ['approve', 'reject'] as const) {
    program
      .command(verb)
      .description(verb === 'approve' ? 'Approve a parked tool call; the run goes on in this process.' : 'Reject a parked tool call; the model is told why and the run goes on.')
      .argument('<runId>', 'the run, as printed by "runchart run" or "runchart runs list"')
      .argument('<callId>', 'the parked call, e.g. c0.0')
      .requiredOption('--principal <id>', 'who approves or rejects (policy stage "approval" must allow them)')
      .option('--tenant <id>', 'tenant of the run', 'local')
      .option('--reason <text>', 'why (for reject)')
      .option('--config <path>', 'YAML config (default: ./runchart.yaml, else the built-in starter config)')
      .option('--store <dir>', 'store directory (default: store.dir of the config, .runchart)')
      .option('--json', 'print only the RunResult as JSON')
      .action(async (runId: string, callId: string, options: CommonOptions & { principal: string; tenant: string; reason?: string }) => {
        const { runtime, line } = await openRuntime(options);
        try {
          const review = { principalId: options.principal, tenantId: options.tenant };
          const result = verb === 'approve' ? await runtime.approve(runId, callId, review) : await runtime.reject(runId, callId, { ...review, ...(options.reason ? { reason: options.reason } : {}) });
          await runtime.drain();
          report(result, options, line);
        } finally {
          await runtime.close();
        }
      });
  }

  program
    .command('serve')
    .description('Serve runs over HTTP: POST /v1/runs, GET /v1/runs/:id, POST /v1/runs/:id/approvals/:callId, GET /healthz.')
    .option('--port <n>', 'port (default: http.port of the config, 8787)', (value) => {
      const port = Number(value);
      if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new InvalidArgumentError('use a port number from 0 to 65535');
      return port;
    })
    .option('--host <host>', 'interface to listen on (default: http.host of the config, 127.0.0.1)')
    .option('--config <path>', 'YAML config (default: ./runchart.yaml, else the built-in starter config)')
    .option('--store <dir>', 'store directory (default: store.dir of the config, .runchart)')
    .option('--inspect [url]', 'show every run in the Stately inspector (a local bridge page, or the ws:// URL of an inspector server)')
    .action(async (options: CommonOptions & { port?: number; host?: string }) => {
      const { runtime, line } = await openRuntime({ ...options, quiet: true });
      const resumed = await runtime.recover();
      if (resumed.length) line(`resumed ${resumed.length} unfinished run(s) from the store`);
      const ingress = createHttpIngress({ runtime, onWarning: (message, error) => io.err(`runchart: ${message}${error ? `: ${(error as Error).message}` : ''}\n`) });
      const server = await ingress.listen({ ...(options.port !== undefined ? { port: options.port } : {}), ...(options.host ? { host: options.host } : {}) });
      line(`runchart serving on ${server.url} — stop with Ctrl-C (in-flight runs finish or stay resumable)`);
      await new Promise<void>((resolve) => {
        const stop = () => void server.close().then(resolve, (error: unknown) => (io.err(`runchart: ${String(error)}\n`), resolve()));
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  const runs = program.command('runs').description('List and show stored runs.');
  runs
    .command('list')
    .description("List a tenant's runs, newest first.")
    .option('--tenant <id>', 'tenant', 'local')
    .option('--config <path>', 'YAML config')
    .option('--store <dir>', 'store directory')
    .option('--json', 'print JSON')
    .action(async (options: CommonOptions & { tenant: string }) => {
      const { runtime } = await openRuntime({ ...options, json: true });
      const listed = await runtime.list({ tenantId: options.tenant });
      await runtime.close();
      if (options.json) io.out(`${JSON.stringify(listed, null, 2)}\n`);
      else if (listed.length === 0) io.out(`no runs for tenant "${options.tenant}"\n`);
      else for (const run of listed) io.out(`${run.runId}  ${run.status.padEnd(17)}  ${new Date(run.updatedAt).toISOString()}  ${run.principalId}\n`);
    });
  runs
    .command('replay')
    .description("Send a run's recording to the Stately inspector again.")
    .argument('<runId>')
    .option('--inspect [url]', 'the ws:// URL of an inspector server (default: a local bridge page)')
    .option('--config <path>', 'YAML config')
    .option('--store <dir>', 'store directory')
    .action(async (runId: string, options: CommonOptions) => {
      const { config: found } = await resolveConfig(options.config);
      const config = { ...found, store: { ...found.store, ...(options.store ? { dir: options.store } : {}) } };
      const events = await readRecording(join(config.store.dir, 'inspect', `${runId}.jsonl`)).catch((error: unknown) => {
        throw new RunchartError('invalid-input', 'runtime', `runtime: cannot read the recording of run "${runId}": ${(error as Error).message}`);
      });
      const inspector = await connectInspector(typeof options.inspect === 'string' ? options.inspect : undefined);
      if (inspector.pageUrl) io.out(`open ${inspector.pageUrl} to watch the replay (its UI loads from stately.ai)\n`);
      for (const event of events) inspector.send(event);
      io.out(`sent ${events.length} events of run ${runId}\n`);
      if (inspector.pageUrl && io.isTTY) await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
      await new Promise((resolve) => setTimeout(resolve, 200)); // let the socket flush before closing
      inspector.close();
    });

  runs
    .command('show')
    .description('Show one run: status, decisions, tool calls, output.')
    .argument('<runId>')
    .option('--tenant <id>', 'tenant', 'local')
    .option('--config <path>', 'YAML config')
    .option('--store <dir>', 'store directory')
    .option('--json', 'print the RunResult as JSON')
    .option('--html <file>', 'write the viewer page for this run (self-contained, works offline)')
    .action(async (runId: string, options: CommonOptions & { tenant: string; html?: string }) => {
      const { runtime, line, config } = await openRuntime({ ...options, json: true });
      const result = await runtime.get(runId, { tenantId: options.tenant });
      await runtime.close();
      if (!result) throw new RunchartError('invalid-input', 'runtime', `runtime: no run "${runId}" for tenant "${options.tenant}"; list them with "runchart runs list --tenant ${options.tenant}"`);
      if (options.html) {
        const recording = await readFile(join(config.store.dir, 'inspect', `${runId}.jsonl`), 'utf8').catch(() => {
          throw new RunchartError('invalid-input', 'runtime', `runtime: run "${runId}" has no recording under ${join(config.store.dir, 'inspect')} (telemetry.record_runs was off, or it ran elsewhere)`);
        });
        const { writeViewerPage } = await import('../../visualizations/viewer.js');
        await writeViewerPage({ recording, out: options.html });
        line(`wrote ${options.html}: open it in a browser`);
        return;
      }
      if (!options.json) {
        for (const decision of result.decisions) line(`  ${decision.stage}${decision.capability ? ` ${decision.capability}` : ''}: ${decision.verdict} (rule ${decision.ruleId}${decision.stage === 'approval' ? `, by ${decision.principalId}` : ''})`);
        for (const call of result.toolCalls) line(`  tool ${call.capability ?? call.toolName} [${call.callId}] ${call.args}: ${call.outcome.status}`);
      }
      report(result, options, line);
    });

  program
    .command('paths')
    .description('Enumerate every path of the run chart; with --check, prove the policy invariants on each.')
    .option('--check', 'check the invariants and exit with code 6 on a violation')
    .option('--max-tool-hops <n>', 'unroll the tool loop this many times (default: runtime.max_tool_hops of the config)', hops)
    .option('--config <path>', 'YAML config (default: ./runchart.yaml, else the built-in starter config)')
    .option('--json', 'print the paths (and the report) as JSON')
    .action(async (options: { check?: boolean; maxToolHops?: number; config?: string; json?: boolean }) => {
      const { config } = await resolveConfig(options.config);
      const pathOptions = {
        maxToolHops: options.maxToolHops ?? config.runtime.max_tool_hops,
        precheckRequired: config.policy.precheck_required,
        backgroundUpdates: config.runtime.enable_background_updates,
      };
      const paths = enumerateRunPaths(pathOptions);
      const unique = new Map<string, { states: string[]; final: string; count: number }>();
      for (const path of paths) {
        const key = path.states.join(' → ');
        const entry = unique.get(key);
        if (entry) entry.count++;
        else unique.set(key, { states: path.states, final: path.final, count: 1 });
      }
      const report = options.check ? checkPolicyCoverage(pathOptions) : undefined;
      if (options.json) {
        io.out(`${JSON.stringify({ options: pathOptions, paths: [...unique.values()], report: report && { ok: report.ok, paths: report.paths, violations: report.violations.map((v) => ({ rule: v.rule, detail: v.detail, states: v.path.states })) } }, null, 2)}\n`);
      } else {
        let index = 0;
        for (const [key, entry] of unique) io.out(`${String(++index).padStart(5)}  ${entry.final.padEnd(9)}  ${key}\n`);
        io.out(`\n${paths.length} paths (${unique.size} distinct state sequences) at max_tool_hops ${pathOptions.maxToolHops}\n`);
        if (report) {
          if (report.ok) io.out(`coverage: ok — every path holds every invariant (${report.paths} paths checked)\n`);
          else {
            io.out(`coverage: ${report.violations.length} violation(s)\n`);
            for (const violation of report.violations.slice(0, 20)) io.out(`  ${violation.rule}: ${violation.detail}\n    ${violation.path.states.join(' → ')}\n`);
          }
        }
      }
      if (report && !report.ok) process.exitCode = ExitCode.violations;
    });

  program
    .command('viz')
    .description('Regenerate the diagram (Mermaid and SVG), the path list, the viewer page and the README diagram from the machine.')
    .option('--out <dir>', 'where to write them', 'visualizations')
    .action(async (options: { out: string }) => {
      const { mkdir } = await import('node:fs/promises');
      const { existsSync } = await import('node:fs');
      const { updateReadme, writeAll } = await import('../../visualizations/generate.js');
      await mkdir(options.out, { recursive: true });
      for (const name of await writeAll(options.out)) io.out(`wrote ${options.out}/${name}\n`);
      if (existsSync('README.md') && (await updateReadme('README.md'))) io.out('updated the diagram in README.md\n');
    });

  return program;
}

/** Runs the CLI with `argv`; errors are printed with what was wrong and how to fix it. */
export async function main(argv: string[]): Promise<void> {
  const io = { out: (text: string) => void process.stdout.write(text), err: (text: string) => void process.stderr.write(text), isTTY: Boolean(process.stdout.isTTY) };
  const program = createProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') return;
    if (code?.startsWith('commander.')) {
      process.exitCode = ExitCode.usage;
      return;
    }
    if (isRunchartError(error)) {
      io.err(`runchart: ${error.message}\n`);
      process.exitCode = error.kind === 'invalid-input' ? ExitCode.usage : ExitCode.failed;
      return;
    }
    io.err(`runchart: unexpected error: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = ExitCode.failed;
  }
}
