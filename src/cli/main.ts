import { createRequire } from 'node:module';
import { Command, InvalidArgumentError, Option } from 'commander';

// This module is what `runchart --help` loads: commander and nothing heavy. Every command imports
// what it needs (the runtime, the HTTP server, the visualizations) when it runs.

/**
 * Exit codes of the `runchart` command: 0 completed (or ok), 1 failed, 2 bad usage or config,
 * 3 denied, 4 awaiting approval, 5 cancelled, 6 a coverage violation, 7 the approver was refused
 * by policy (the call stays parked).
 */
export const ExitCode = { ok: 0, failed: 1, usage: 2, denied: 3, awaitingApproval: 4, cancelled: 5, violations: 6, refused: 7 } as const;

/** Where the CLI writes, and whether stdout is a terminal; tests pass their own. */
export interface CliIO {
  out: (text: string) => void;
  err: (text: string) => void;
  isTTY: boolean;
}

const version = (createRequire(import.meta.url)('runchart/package.json') as { version: string }).version;

const hops = (value: string) => {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0 || number > 10) throw new InvalidArgumentError('use a whole number from 0 to 10');
  return number;
};

const port = (value: string) => {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0 || number > 65_535) throw new InvalidArgumentError('use a port number from 0 to 65535');
  return number;
};

const positive = (value: string) => {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1 || number > 1024) throw new InvalidArgumentError('use a whole number from 1 to 1024');
  return number;
};

/** The model `run` and `serve` use, as the environment decides it (no config read, so help stays fast). */
function modelInUse(env: NodeJS.ProcessEnv): string {
  if (!env.OPENAI_API_KEY && !env.OPENAI_BASE_URL) return 'the offline demo model (no OPENAI_API_KEY or OPENAI_BASE_URL is set)';
  const model = env.OPENAI_MODEL ? `"${env.OPENAI_MODEL}"` : 'runtime.default_model of the config (OPENAI_MODEL unset)';
  return `${model} at ${env.OPENAI_BASE_URL ?? 'api.openai.com'}, since ${env.OPENAI_API_KEY ? 'OPENAI_API_KEY' : 'OPENAI_BASE_URL'} is set`;
}

const configOption = () => new Option('--config <path>', 'YAML config (default: ./runchart.yaml, else the built-in starter config)');
const storeOption = () => new Option('--store <dir>', 'store directory (default: store.dir of the config, .runchart)');

/** Builds the `runchart` program; `io` lets tests capture its output. */
export function createProgram(io: CliIO, env: NodeJS.ProcessEnv = process.env) {
  const commands = () => import('./commands.js');
  const program = new Command('runchart')
    .description('An agent runtime in which every run is an XState v5 actor.')
    .version(version, '-V, --version', 'print the version')
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .exitOverride()
    .showHelpAfterError('(run "runchart --help" for usage)')
    .addHelpText(
      'after',
      `\nExit codes: 0 completed (or ok), 1 failed, 2 bad usage or config, 3 denied, 4 awaiting approval,\n5 cancelled, 6 a coverage violation (paths --check), 7 the approver was refused by policy.`,
    );

  program
    .command('run')
    .description(`Run one request, printing each state as it is entered. Model: ${modelInUse(env)}. Capabilities: math.* and notes.save.`)
    .argument('<input>', 'the question or task')
    .option('--tenant <id>', 'tenant of the caller', 'local')
    .option('--principal <id>', 'principal (user or service) of the caller', 'cli')
    .option('--session <id>', 'session id, to carry history between runs')
    .option('--traceparent <value>', 'continue this W3C trace (default: start a new trace)')
    .addOption(configOption())
    .addOption(storeOption())
    .option('--json', 'print only the RunResult as JSON')
    .option('--inspect [url]', 'show the run in the Stately inspector (a local bridge page, or the ws:// URL of an inspector server)')
    .option('--wait', 'with --inspect and no URL: keep the bridge page open until Ctrl-C or SIGTERM even when stdout is not a terminal')
    .action(async (input: string, options) => (await commands()).run(io, input, options));

  program
    .command('init')
    .description('Write a starter runchart.yaml with commented rules into the current directory.')
    .option('--force', 'overwrite an existing runchart.yaml')
    .action(async (options) => (await commands()).init(io, options));

  program
    .command('key')
    .description('Make an API key for the HTTP ingress and print the config entry that maps it to a tenant and principal.')
    .requiredOption('--tenant <id>', 'tenant the key acts for')
    .requiredOption('--principal <id>', 'principal the key acts as')
    .action(async (options) => (await commands()).key(io, options));

  for (const verb of ['approve', 'reject'] as const) {
    const command = program
      .command(verb)
      .description(
        `${verb === 'approve' ? 'Approve a parked tool call; the run goes on' : 'Reject a parked tool call; the model is told why and the run goes on'} in this process, or in the running "runchart serve" that holds the store.`,
      )
      .argument('<runId>', 'the run, as printed by "runchart run" or "runchart runs list"')
      .argument('<callId>', 'the parked call, e.g. c0.0')
      .requiredOption('--principal <id>', 'who approves or rejects (policy stage "approval" must allow them; exit code 7 when it does not)')
      .option('--tenant <id>', 'tenant of the run', 'local');
    if (verb === 'reject') command.option('--reason <text>', 'why: the model is told');
    command
      .addOption(configOption())
      .addOption(storeOption())
      .option('--json', 'print only the RunResult as JSON')
      .action(async (runId: string, callId: string, options) => (await commands()).review(io, verb, runId, callId, options));
  }

  program
    .command('serve')
    .description(`Serve runs over HTTP: POST /v1/runs, GET /v1/runs, GET /v1/runs/:id, GET /v1/runs/:id/events, POST /v1/runs/:id/cancel, POST /v1/runs/:id/approvals/:callId, GET /healthz. Model: ${modelInUse(env)}.`)
    .option('--port <n>', 'port (default: http.port of the config, 8787)', port)
    .option('--host <host>', 'interface to listen on (default: http.host of the config, 127.0.0.1)')
    .addOption(configOption())
    .addOption(storeOption())
    .option('--inspect [url]', 'show every run in the Stately inspector (a local bridge page, or the ws:// URL of an inspector server)')
    .option('--no-worker', 'store kind postgres: only accept runs; "runchart worker" processes run them')
    .option('--concurrency <n>', 'store kind postgres: runs this server works at once (default 8)', positive)
    .action(async (options) => (await commands()).serve(io, options));

  program
    .command('worker')
    .description('Run runs from a shared PostgreSQL store (store.kind: postgres): runs any server accepted, runs resumed after an approval, and runs of workers that died.')
    .option('--concurrency <n>', 'runs worked at once (default 8)', positive)
    .addOption(configOption())
    .action(async (options) => (await commands()).worker(io, options));

  const runs = program.command('runs').description('List and show stored runs (also while "runchart serve" holds the store).');
  runs
    .command('list')
    .description("List a tenant's runs, newest first.")
    .option('--tenant <id>', 'tenant', 'local')
    .addOption(configOption())
    .addOption(storeOption())
    .option('--json', 'print JSON')
    .action(async (options) => (await commands()).listRuns(io, options));
  runs
    .command('replay')
    .description("Send a run's recording to the Stately inspector again.")
    .argument('<runId>')
    .option('--inspect [url]', 'the ws:// URL of an inspector server (default: a local bridge page)')
    .option('--wait', 'keep the bridge page open until Ctrl-C or SIGTERM even when stdout is not a terminal')
    .addOption(configOption())
    .addOption(storeOption())
    .action(async (runId: string, options) => (await commands()).replay(io, runId, options));
  runs
    .command('show')
    .description('Show one run: status, decisions, tool calls, output.')
    .argument('<runId>')
    .option('--tenant <id>', 'tenant', 'local')
    .addOption(configOption())
    .addOption(storeOption())
    .option('--json', 'print the RunResult as JSON')
    .option('--html <file>', 'write the viewer page for this run (self-contained, works offline)')
    .action(async (runId: string, options) => (await commands()).showRun(io, runId, options));

  program
    .command('paths')
    .description('Enumerate every path of the run chart; with --check, prove the policy invariants on each.')
    .option('--check', 'check the invariants: print a summary and the violations, exit with code 6 on a violation')
    .option('--verbose', 'with --check: list every path too')
    .option('--max-tool-hops <n>', 'unroll the tool loop this many times (default: runtime.max_tool_hops of the config)', hops)
    .option('--machine <module>', 'prove your own chart: a JavaScript module whose default (or runMachine) export extends the run chart')
    .addOption(configOption())
    .option('--json', 'print the paths (and the report) as JSON')
    .action(async (options) => (await commands()).paths(io, options));

  program
    .command('viz')
    .description('Generate the diagram (Mermaid and SVG), the path list and the viewer page from the machine, into --out only.')
    .option('--out <dir>', 'where to write them', 'visualizations')
    .option('--readme <file>', "also update the diagram in this README, between its '<!-- runchart viz: diagram -->' and '<!-- /runchart viz -->' lines")
    .action(async (options) => (await commands()).viz(io, options));

  // A usage error points at the help of the command that was misused (`runchart runs show --help`).
  const pointAtOwnHelp = (command: Command, path: string) => {
    for (const child of command.commands) {
      child.showHelpAfterError(`(run "${path} ${child.name()} --help" for usage)`);
      pointAtOwnHelp(child, `${path} ${child.name()}`);
    }
  };
  pointAtOwnHelp(program, 'runchart');
  return program;
}

/** Whether stdout and stderr still have a reader. */
const open = { stdout: true, stderr: true, watched: false };

/** A reader that went away (EPIPE) closes that stream for the rest of the process, quietly. */
function watchPipes() {
  if (open.watched) return;
  open.watched = true;
  for (const name of ['stdout', 'stderr'] as const) {
    process[name].on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error;
      open[name] = false;
    });
  }
}

/**
 * Runs the CLI with `argv`; errors are printed with what was wrong and how to fix it. A closed
 * stdout (`runchart runs list | head -1`) ends the output quietly; the command still finishes.
 */
export async function main(argv: string[]): Promise<void> {
  watchPipes();
  const io: CliIO = {
    out: (text) => void (open.stdout && process.stdout.write(text)),
    err: (text) => void (open.stderr && process.stderr.write(text)),
    isTTY: Boolean(process.stdout.isTTY),
  };
  const program = createProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.version') return;
    if (code?.startsWith('commander.')) {
      // Bare `runchart` (help shown on stderr) and every usage mistake.
      process.exitCode = ExitCode.usage;
      return;
    }
    const { isRunchartError } = await import('../errors.js');
    if (isRunchartError(error)) {
      io.err(`runchart: ${error.message}\n`);
      process.exitCode = error.kind === 'invalid-input' ? ExitCode.usage : ExitCode.failed;
      return;
    }
    io.err(`runchart: unexpected error: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = ExitCode.failed;
  }
}
