import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { InspectionEvent } from 'xstate';
import type { RunResult } from '../../machines/run/result.js';
import type { Capability } from '../catalog/contract.js';
import { mathCapabilities } from '../catalog/math.js';
import { notesCapability } from '../catalog/notes.js';
import { createCatalog } from '../catalog/registry.js';
import { loadConfig, parseConfig, type RunchartConfig } from '../config.js';
import { isRunchartError, RunchartError } from '../errors.js';
import { createHttpIngress, generateApiKey } from '../ingress/http.js';
import { newTraceId } from '../ingress/request.js';
import { completeRecording, type StoredRun } from '../inspect/fallback.js';
import { createRunRecorder, readRecording } from '../inspect/recorder.js';
import type { ModelAdapter } from '../models/contract.js';
import { demoModel } from '../models/demo.js';
import { createRunRedactor } from '../redaction.js';
import { createRuntime } from '../runtime.js';
import type { RunStore } from '../store/contract.js';
import { describeServer } from '../store/postgres/where.js';
import { openStoreDirectory, type StoreDirectory } from '../store/directory.js';
import { createFileRunStore } from '../store/files.js';
import { readableRun } from '../store/migrate.js';
import { combineTelemetry } from '../telemetry/contract.js';
import { createTelemetry } from '../telemetry/create.js';
import { stderrEventLogger } from '../telemetry/pino.js';
import { connectInspector, type InspectorConnection } from './inspect.js';
import { ExitCode, type CliIO } from './main.js';
import { progressTelemetry } from './progress.js';
import { newOperatorToken, recordServer, reviewThroughServer, runningServer } from './server-file.js';
import { starterConfig, starterYaml } from './starter.js';

// The commands themselves, loaded by main.ts only when one runs (so `runchart --help` stays fast).

const statusExit: Record<string, number> = {
  completed: ExitCode.ok,
  failed: ExitCode.failed,
  denied: ExitCode.denied,
  awaiting_approval: ExitCode.awaitingApproval,
  cancelled: ExitCode.cancelled,
};

interface CommonOptions {
  config?: string;
  store?: string;
  json?: boolean;
  /** true: a local inspector bridge; a string: that inspector server's ws:// URL. */
  inspect?: boolean | string;
  wait?: boolean;
}

/** Finds the config: `--config`, else ./runchart.yaml, else the starter config; `--store` overrides store.dir. */
async function resolveConfig(options: { config?: string; store?: string }): Promise<{ config: RunchartConfig; source: string }> {
  const found = options.config
    ? { config: await loadConfig(options.config), source: options.config }
    : existsSync('runchart.yaml')
      ? { config: await loadConfig('runchart.yaml'), source: 'runchart.yaml' }
      : { config: parseConfig(starterConfig), source: 'built-in starter config' };
  if (options.store) found.config = { ...found.config, store: { ...found.config.store, dir: options.store } };
  return found;
}

/** With OPENAI_API_KEY or OPENAI_BASE_URL set, the real model (its SDK loaded only then); without, the offline demo model. */
async function modelFor(env: NodeJS.ProcessEnv): Promise<{ model: ModelAdapter; demo: boolean }> {
  if (!env.OPENAI_API_KEY && !env.OPENAI_BASE_URL) return { model: demoModel(), demo: true };
  const { modelFromEnvironment } = await import('../models/openai.js');
  return { model: modelFromEnvironment(env, demoModel), demo: false };
}

/** Prints a result (or its JSON) and sets the exit code from its status. */
function report(result: RunResult, options: { json?: boolean }, line: (text: string) => void) {
  if (options.json) line(JSON.stringify(result, null, 2));
  else {
    line(`status: ${result.status}   run ${result.runId}   trace ${result.traceId || '(none: the request was refused before one was given)'}`);
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

/** Resolves on the first SIGINT or SIGTERM. */
function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

/** A local bridge page stays open while someone can watch it: on a terminal, or when asked with --wait. */
async function holdBridge(io: CliIO, inspector: InspectorConnection | undefined, options: CommonOptions, line: (text: string) => void) {
  if (!inspector?.pageUrl) return;
  if (io.isTTY || options.wait) {
    // Listening before saying so: a signal sent on reading the line must find the handler.
    const stopped = untilSignal();
    line(`the inspector page keeps the run at ${inspector.pageUrl}; press Ctrl-C (or send SIGTERM) to stop`);
    await stopped;
  } else {
    io.err(`runchart: the inspector bridge closes now (stdout is not a terminal); pass --wait to keep ${inspector.pageUrl} open\n`);
  }
}

/** The runtime that `run`, `approve`, `reject` and `serve` use: the config found, the model, the math and notes capabilities, the store. */
async function openRuntime(io: CliIO, options: CommonOptions & { quiet?: boolean; service?: boolean; workerId?: string; acceptOnly?: boolean }) {
  const { config: resolved, source } = await resolveConfig(options);
  const line = (text: string) => io.out(`${text}\n`);
  const { model, demo } = await modelFor(process.env);
  const config: RunchartConfig = {
    ...resolved,
    // The demo model answers whatever model is named; name it so that the output does not claim another.
    runtime: { ...resolved.runtime, default_model: demo ? 'offline-demo' : (process.env.OPENAI_MODEL || resolved.runtime.default_model) },
    // Loaded here, below; the runtime is handed the capabilities themselves.
    execution: { ...resolved.execution, capability_modules: [] },
  };
  const modelName = demo ? 'offline demo model (set OPENAI_API_KEY or OPENAI_BASE_URL for a real one)' : `${config.runtime.default_model} at ${process.env.OPENAI_BASE_URL ?? 'api.openai.com'}`;
  const storeName =
    config.store.kind === 'lowdb' ? config.store.dir : config.store.kind === 'postgres' ? `PostgreSQL schema ${config.store.schema} at ${describeServer(config.store.url)}` : 'in memory';
  if (!options.json) line(`runchart: config from ${source}; store ${storeName}; model: ${modelName}`);
  // The store is opened, its lock taken, before anything runs: a store another process holds, or one
  // this process cannot write, is refused as bad usage instead of becoming a failed run.
  const storeDirectory = config.store.kind === 'lowdb' ? await openWritableStore(config.store.dir, io) : undefined;
  try {
    return await openRuntimeOn(io, options, { config, resolved, source, line, model, storeDirectory });
  } catch (error) {
    storeDirectory?.close();
    throw error;
  }
}

/** The store directory `dir`, opened for writing; a directory this process may not write is a usage error naming it. */
async function openWritableStore(dir: string, io: CliIO): Promise<StoreDirectory> {
  try {
    return await openStoreDirectory(resolve(dir), { onWarning: (message) => io.err(`runchart: warning: ${message}\n`) });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOTDIR' || code === 'EEXIST') {
      throw new RunchartError('invalid-input', 'store', `store: ${resolve(dir)} cannot be written (${code}); give this command a --store directory it may write`, { cause: error });
    }
    throw error;
  }
}

async function openRuntimeOn(
  io: CliIO,
  options: CommonOptions & { quiet?: boolean; service?: boolean; workerId?: string; acceptOnly?: boolean },
  opened: { config: RunchartConfig; resolved: RunchartConfig; source: string; line: (text: string) => void; model: ModelAdapter; storeDirectory: StoreDirectory | undefined },
) {
  const { config, resolved, source, line, model, storeDirectory } = opened;
  const inspector = options.inspect ? await connectInspector(typeof options.inspect === 'string' ? options.inspect : undefined) : undefined;
  if (inspector?.pageUrl) line(`watch runs in the Stately inspector: open ${inspector.pageUrl} (it needs the internet; offline: runchart runs show <runId> --html run.html)`);
  const capabilities = [...mathCapabilities, notesCapability(join(config.store.dir, 'notes.jsonl')), ...(await capabilitiesFrom(resolved.execution.capability_modules, source))];
  // Every run is recorded for the viewer, redacted like the saved snapshots; the oldest recordings go beyond telemetry.keep_recordings.
  const recorder =
    config.store.kind === 'lowdb' && config.telemetry.record_runs
      ? createRunRecorder({
          dir: config.store.dir,
          keep: config.telemetry.keep_recordings,
          redact: createRunRedactor(createCatalog(capabilities), config.telemetry.redact_patterns),
          onError: (message) => io.err(`runchart: warning: ${message}\n`),
        })
      : undefined;
  const observers = [inspector?.inspect, recorder?.inspect].filter((observer) => observer !== undefined);
  const runtime = createRuntime({
    config,
    model,
    ...(storeDirectory ? { storeDirectory } : {}),
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
    // A service's streams replay a run from its start and resume where a client left off.
    ...(options.service ? { eventLog: true } : {}),
    ...(options.workerId ? { workerId: options.workerId } : {}),
    ...(options.acceptOnly ? { acceptOnly: true } : {}),
  });
  return { runtime, line, config, inspector };
}

/** The capabilities of `execution.capability_modules`, each module resolved against the config file's folder. */
async function capabilitiesFrom(modules: readonly string[], source: string): Promise<Capability[]> {
  const base = source.endsWith('.yaml') || source.endsWith('.yml') || source.endsWith('.json') ? dirname(resolve(source)) : process.cwd();
  const found: Capability[] = [];
  for (const module of modules) {
    const path = resolve(base, module);
    let loaded: { capabilities?: unknown; default?: unknown };
    try {
      loaded = (await import(pathToFileURL(path).href)) as typeof loaded;
    } catch (error) {
      throw new RunchartError('invalid-input', 'runtime', `execution.capability_modules: ${module} (${path}) could not be loaded: ${(error as Error).message}; check the path, relative to ${base}`, { cause: error });
    }
    const list = loaded.capabilities ?? loaded.default;
    const valid = Array.isArray(list) && list.every((entry) => typeof entry === 'object' && entry !== null && typeof (entry as Capability).name === 'string' && typeof (entry as Capability).handler === 'function');
    if (!valid) throw new RunchartError('invalid-input', 'runtime', `execution.capability_modules: ${module} exports no capabilities; export \`const capabilities = [defineCapability({ … })]\``);
    found.push(...(list as Capability[]));
  }
  return found;
}

/** A worker id for this process: host, pid and a few random characters. */
function newWorkerId(): string {
  return `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * A runtime that only reads the store, as it is on disk now: no lock, so it works while another
 * process (a running `runchart serve`) holds the store. Nothing is run through it.
 */
async function openReader(options: CommonOptions) {
  const { config } = await resolveConfig(options);
  const storeDirectory = config.store.kind === 'lowdb' ? await openStoreDirectory(resolve(config.store.dir), { readOnly: true }) : undefined;
  // Kept beside the runtime, so that `runs show --html` can read a run's stored snapshot.
  const runStore: RunStore | undefined = storeDirectory ? await createFileRunStore(storeDirectory) : undefined;
  const runtime = createRuntime({ config, ...(storeDirectory ? { storeDirectory } : {}), ...(runStore ? { runStore } : {}) });
  return { runtime, config, runStore };
}

export async function run(io: CliIO, input: string, options: CommonOptions & { tenant: string; principal: string; session?: string; traceparent?: string }) {
  const { config: found } = await resolveConfig(options);
  const server = found.store.kind === 'lowdb' ? runningServer(found.store.dir) : undefined;
  if (server) {
    throw new RunchartError(
      'invalid-input',
      'store',
      `store: ${found.store.dir} is held by runchart serve at ${server.url} (process ${server.pid}); send the run there (POST ${server.url}/v1/runs), or give this command another --store`,
    );
  }
  const { runtime, line, inspector } = await openRuntime(io, options);
  // The CLI is an ingress: it continues the caller's trace or starts one.
  const trace = options.traceparent ? { traceparent: options.traceparent } : { traceId: newTraceId() };
  let result: RunResult;
  try {
    result = await runtime.run({
      input,
      tenantId: options.tenant,
      principalId: options.principal,
      ...(options.session ? { sessionId: options.session } : {}),
      ...trace,
    });
    await holdBridge(io, inspector, options, line);
  } finally {
    await runtime.close();
  }
  report(result, options, line);
  // The request this command made was refused at ingress (an empty input, a malformed --traceparent): bad usage, not a run that failed.
  if (result.status === 'failed' && result.error?.kind === 'invalid-input' && result.error.layer === 'ingress') process.exitCode = ExitCode.usage;
}

export async function init(io: CliIO, options: { force?: boolean }) {
  if (existsSync('runchart.yaml') && !options.force) {
    throw new RunchartError('invalid-input', 'config', 'config: runchart.yaml exists already; pass --force to overwrite it');
  }
  await writeFile('runchart.yaml', starterYaml);
  io.out('wrote runchart.yaml — try: runchart run "what is 2+3?"  or  runchart run "note: buy milk" (needs an approval)\n');
}

export function key(io: CliIO, options: { tenant: string; principal: string }) {
  const { key, sha256 } = generateApiKey();
  io.out(`key (give it to the caller; it is not stored anywhere): ${key}\n\nadd to runchart.yaml under http.api_keys:\n    - { sha256: "${sha256}", tenant: ${options.tenant}, principal: ${options.principal} }\n`);
}

/** A refused approver gets its own exit code; the call stays parked. */
function refused(io: CliIO, message: string) {
  io.err(`runchart: ${message}\n`);
  process.exitCode = ExitCode.refused;
}

export async function review(io: CliIO, verb: 'approve' | 'reject', runId: string, callId: string, options: CommonOptions & { principal: string; tenant: string; reason?: string }) {
  const { config } = await resolveConfig(options);
  const line = (text: string) => io.out(`${text}\n`);
  // A running `runchart serve` holds the store and the run: the review goes to it, over its HTTP API.
  const server = config.store.kind === 'lowdb' ? runningServer(config.store.dir) : undefined;
  if (server) {
    if (!options.json) line(`runchart: the store is held by runchart serve at ${server.url} (process ${server.pid}); sending the ${verb === 'approve' ? 'approval' : 'rejection'} there`);
    const answer = await reviewThroughServer(server, { decision: verb, runId, callId, principalId: options.principal, tenantId: options.tenant, ...(options.reason ? { reason: options.reason } : {}) });
    if (answer.ok) return report(answer.result as RunResult, options, line);
    if (answer.kind === 'forbidden') return refused(io, answer.message);
    io.err(`runchart: ${answer.message}\n`);
    process.exitCode = answer.status === 0 || answer.status >= 500 ? ExitCode.failed : ExitCode.usage;
    return;
  }
  const { runtime } = await openRuntime(io, options);
  try {
    const reviewer = { principalId: options.principal, tenantId: options.tenant };
    const result = verb === 'approve' ? await runtime.approve(runId, callId, reviewer) : await runtime.reject(runId, callId, { ...reviewer, ...(options.reason ? { reason: options.reason } : {}) });
    await runtime.drain();
    report(result, options, line);
  } catch (error) {
    if (isRunchartError(error) && error.kind === 'invalid-input' && error.layer === 'policy') return refused(io, error.message);
    throw error;
  } finally {
    await runtime.close();
  }
}

export async function serve(io: CliIO, options: CommonOptions & { port?: number; host?: string; worker?: boolean; concurrency?: number }) {
  const { config: found } = await resolveConfig(options);
  if (options.worker === false && found.store.kind !== 'postgres') {
    throw new RunchartError('invalid-input', 'runtime', `--no-worker: the ${found.store.kind} store runs its runs in the process that serves them; use store.kind: postgres for servers that only accept runs and workers that run them`);
  }
  const workerId = newWorkerId();
  const { runtime, line, config } = await openRuntime(io, { ...options, quiet: true, service: true, workerId, acceptOnly: options.worker === false });
  if (options.worker !== false) {
    const resumed = await runtime.recover();
    if (resumed.length) line(`resumed ${resumed.length} unfinished run(s) from the store`);
    if (config.store.kind === 'postgres') {
      runtime.work({ concurrency: options.concurrency ?? 8 });
      line(`runchart: this server works runs too, as ${workerId} (up to ${options.concurrency ?? 8} at once; --no-worker to only accept them)`);
    }
  }
  const operatorToken = newOperatorToken();
  const ingress = createHttpIngress({
    runtime,
    ...(config.store.kind === 'lowdb' ? { operatorToken } : {}),
    onWarning: (message, error) => io.err(`runchart: ${message}${error ? `: ${(error as Error).message}` : ''}\n`),
  });
  let server: Awaited<ReturnType<typeof ingress.listen>>;
  try {
    server = await ingress.listen({ ...(options.port !== undefined ? { port: options.port } : {}), ...(options.host ? { host: options.host } : {}) });
  } catch (error) {
    // Nothing was served: the store is let go (its lock removed) before the error is told.
    await runtime.close();
    throw error;
  }
  // `runchart approve` / `reject` find the server (and its operator token) beside the store it holds.
  const record = config.store.kind === 'lowdb' ? recordServer(config.store.dir, server.url, operatorToken) : undefined;
  // Listening before saying so: a signal sent on reading the line must find the handler.
  const stopped = untilSignal();
  line(`runchart serving on ${server.url} — stop with Ctrl-C (in-flight runs finish or stay resumable)`);
  await stopped;
  // A second signal does not wait for the graceful stop.
  const force = (signal: NodeJS.Signals) => {
    record?.remove();
    io.err(`runchart: ${signal} again: stopping now; unfinished runs stay resumable in the store\n`);
    process.exit(ExitCode.failed);
  };
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  try {
    await server.close();
  } catch (error) {
    io.err(`runchart: ${String(error)}\n`);
  } finally {
    record?.remove();
    process.off('SIGINT', force);
    process.off('SIGTERM', force);
  }
}

/** `runchart worker`: takes dispatched runs (and those of workers that died) from the shared PostgreSQL store until stopped. */
export async function worker(io: CliIO, options: CommonOptions & { concurrency?: number }) {
  const { config: found } = await resolveConfig(options);
  if (found.store.kind !== 'postgres') {
    throw new RunchartError('invalid-input', 'runtime', `worker: the ${found.store.kind} store is held by one process, which runs its own runs; a worker needs store.kind: postgres (with store.url or DATABASE_URL)`);
  }
  const workerId = newWorkerId();
  const { runtime, line } = await openRuntime(io, { ...options, quiet: true, service: true, workerId });
  const concurrency = options.concurrency ?? 8;
  const resumed = await runtime.recover();
  runtime.work({ concurrency });
  const stopped = untilSignal();
  line(`runchart worker ${workerId}: taking runs, up to ${concurrency} at once${resumed.length ? `; took over ${resumed.length} unfinished run(s)` : ''} — stop with Ctrl-C (runs in flight are handed to another worker)`);
  await stopped;
  const force = () => process.exit(ExitCode.failed);
  process.once('SIGINT', force);
  process.once('SIGTERM', force);
  try {
    await runtime.close();
  } finally {
    process.off('SIGINT', force);
    process.off('SIGTERM', force);
  }
}

export async function listRuns(io: CliIO, options: CommonOptions & { tenant: string }) {
  const { runtime } = await openReader(options);
  const listed = await runtime.list({ tenantId: options.tenant });
  await runtime.close();
  if (options.json) io.out(`${JSON.stringify(listed, null, 2)}\n`);
  else if (listed.length === 0) io.out(`no runs for tenant "${options.tenant}"\n`);
  else for (const run of listed) io.out(`${run.runId}  ${run.status.padEnd(17)}  ${new Date(run.updatedAt).toISOString()}  ${run.principalId}\n`);
}

export async function replay(io: CliIO, runId: string, options: CommonOptions) {
  const { config } = await resolveConfig(options);
  const events = await readRecording(join(config.store.dir, 'inspect', `${runId}.jsonl`)).catch((error: unknown) => {
    throw new RunchartError('invalid-input', 'runtime', `runtime: cannot read the recording of run "${runId}": ${(error as Error).message}`);
  });
  const inspector = await connectInspector(typeof options.inspect === 'string' ? options.inspect : undefined);
  try {
    if (inspector.pageUrl) io.out(`open ${inspector.pageUrl} to watch the replay (it needs the internet; offline: runchart runs show ${runId} --html run.html)\n`);
    for (const event of events) inspector.send(event);
    io.out(`sent ${events.length} events of run ${runId}\n`);
    await holdBridge(io, inspector, options, (text) => io.out(`${text}\n`));
  } finally {
    await inspector.close();
  }
}

export async function showRun(io: CliIO, runId: string, options: CommonOptions & { tenant: string; html?: string }) {
  const { runtime, config, runStore } = await openReader(options);
  const line = (text: string) => io.out(`${text}\n`);
  const result = await runtime.get(runId, { tenantId: options.tenant });
  const stored = result && options.html ? await runStore?.load(runId) : undefined;
  await runtime.close();
  if (!result) throw new RunchartError('invalid-input', 'runtime', `runtime: no run "${runId}" for tenant "${options.tenant}"; list them with "runchart runs list --tenant ${options.tenant}"`);
  if (options.html) {
    const path = join(config.store.dir, 'inspect', `${runId}.jsonl`);
    const recorded = await readFile(path, 'utf8').catch(() => undefined);
    let recording = recorded;
    if (stored) {
      // A recording cut short (a killed process) or never written is completed from the stored run.
      const completed = completeRecording(recorded ?? '', readableRun(stored) as StoredRun);
      recording = completed.text;
      if (completed.note) io.err(`runchart: note: ${completed.note}\n`);
    }
    if (recording === undefined) {
      throw new RunchartError(
        'invalid-input',
        'runtime',
        `runtime: run "${runId}" has no recording under ${join(config.store.dir, 'inspect')} (telemetry.record_runs was off, it ran elsewhere, or telemetry.keep_recordings removed it)`,
      );
    }
    const { writeViewerPage } = await import('../../visualizations/viewer.js');
    await writeViewerPage({ recording, out: options.html, source: `${runId}.jsonl` });
    line(`wrote ${options.html}: open it in a browser`);
    return;
  }
  if (!options.json) {
    for (const decision of result.decisions) line(`  ${decision.stage}${decision.capability ? ` ${decision.capability}` : ''}: ${decision.verdict} (rule ${decision.ruleId}${decision.stage === 'approval' ? `, by ${decision.principalId}` : ''})`);
    for (const call of result.toolCalls) line(`  tool ${call.capability ?? call.toolName} [${call.callId}] ${call.args}: ${call.outcome.status}`);
  }
  report(result, options, line);
}

export async function paths(io: CliIO, options: { check?: boolean; verbose?: boolean; maxToolHops?: number; config?: string; json?: boolean; machine?: string }) {
  const { config } = await resolveConfig(options);
  const [{ enumerateRunPaths }, { checkPath }, { loadRunMachine }] = await Promise.all([
    import('../verification/paths.js'),
    import('../verification/coverage.js'),
    import('../verification/load.js'),
  ]);
  const machine = options.machine ? await loadRunMachine(options.machine) : undefined;
  const pathOptions = {
    maxToolHops: options.maxToolHops ?? config.runtime.max_tool_hops,
    precheckRequired: config.policy.precheck_required,
    backgroundUpdates: config.runtime.enable_background_updates,
  };
  const found = enumerateRunPaths(machine ? Object.assign({ machine }, pathOptions) : pathOptions);
  const unique = new Map<string, { states: string[]; final: string; count: number }>();
  for (const path of found) {
    const key = path.states.join(' → ');
    const entry = unique.get(key);
    if (entry) entry.count++;
    else unique.set(key, { states: path.states, final: path.final, count: 1 });
  }
  // The proof checks the paths just enumerated: one walk, not two.
  const violations = options.check ? found.flatMap((path) => checkPath(path, machine ? Object.assign({ machine }, pathOptions) : pathOptions)) : [];
  const coverage = options.check ? { ok: violations.length === 0, paths: found.length, violations } : undefined;
  if (options.json) {
    const report = coverage && { ok: coverage.ok, paths: coverage.paths, violations: coverage.violations.map((v) => ({ rule: v.rule, detail: v.detail, states: v.path.states })) };
    io.out(`${JSON.stringify({ options: pathOptions, paths: [...unique.values()], report }, null, 2)}\n`);
  } else {
    // --check is a verdict: the paths themselves only with --verbose.
    if (!coverage || options.verbose) {
      let index = 0;
      for (const [key, entry] of unique) io.out(`${String(++index).padStart(5)}  ${entry.final.padEnd(9)}  ${key}\n`);
      io.out('\n');
    }
    io.out(`${found.length} paths (${unique.size} distinct state sequences) at max_tool_hops ${pathOptions.maxToolHops}\n`);
    if (coverage) {
      if (coverage.ok) io.out(`coverage: ok — every path holds every invariant (${coverage.paths} paths checked)\n`);
      else {
        io.out(`coverage: ${coverage.violations.length} violation(s)\n`);
        for (const violation of coverage.violations.slice(0, 20)) io.out(`  ${violation.rule}: ${violation.detail}\n    ${violation.path.states.join(' → ')}\n`);
        if (coverage.violations.length > 20) io.out(`  … and ${coverage.violations.length - 20} more (--json lists them all)\n`);
      }
      if (!options.verbose) io.out('(--verbose lists every path)\n');
    }
  }
  if (coverage && !coverage.ok) process.exitCode = ExitCode.violations;
}

export async function viz(io: CliIO, options: { out: string; readme?: string }) {
  const { updateReadme, writeAll } = await import('../../visualizations/generate.js');
  // Checked first: nothing is written when half the command cannot be done.
  if (options.readme && !existsSync(options.readme)) {
    throw new RunchartError('invalid-input', 'runtime', `viz: there is no file at ${options.readme} for --readme; name the README whose marked diagram block to update, or leave out --readme`);
  }
  for (const name of await writeAll(options.out)) io.out(`wrote ${join(options.out, name)}\n`);
  if (options.readme) io.out((await updateReadme(options.readme)) ? `updated the diagram in ${options.readme}\n` : `the diagram in ${options.readme} is current\n`);
}
