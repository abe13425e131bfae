// The runchart command in a process of its own (from source, through tsx): real stdout and stderr, exit codes and signals.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const child = fileURLToPath(new URL('./cli-child.ts', import.meta.url));
const tsx = import.meta.resolve('tsx');

/** No model key, so every run is on the offline demo model unless a test sets one. */
const baseEnv = () => ({ ...process.env, OPENAI_API_KEY: '', OPENAI_BASE_URL: '', OPENAI_MODEL: '', NO_COLOR: '1' });

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
}

export interface Started {
  child: ChildProcessWithoutNullStreams;
  /** Everything printed so far. */
  readonly out: string;
  readonly err: string;
  /** Resolves with the first match of `pattern` on stdout (rejects if the process ends first). */
  waitFor(pattern: RegExp): Promise<RegExpExecArray>;
  exited: Promise<Finished>;
}

/** Starts `runchart <args>`; the caller waits for what it prints, signals it, and awaits `exited`. */
export function startRunchart(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Started {
  const process_ = spawn(process.execPath, ['--import', tsx, child, ...args], {
    cwd: options.cwd ?? process.cwd(),
    env: { ...baseEnv(), ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  process_.stdin.end();
  let out = '';
  let err = '';
  const watchers = new Set<() => void>();
  process_.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
    for (const watch of watchers) watch();
  });
  process_.stderr.on('data', (chunk: Buffer) => void (err += chunk.toString()));
  const exited = new Promise<Finished>((resolve) => process_.on('close', (code, signal) => resolve({ code, signal, out, err })));
  return {
    child: process_,
    get out() {
      return out;
    },
    get err() {
      return err;
    },
    waitFor(pattern) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(out);
          if (!match) return;
          watchers.delete(check);
          resolve(match);
        };
        watchers.add(check);
        check();
        void exited.then(({ code }) => {
          if (!watchers.has(check)) return;
          watchers.delete(check);
          reject(new Error(`runchart ${args.join(' ')} ended (${code}) before printing ${pattern}:\n${out}\n${err}`));
        });
      });
    },
    exited,
  };
}

/** Runs `runchart <args>` to its end. */
export function runchart(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<Finished> {
  return startRunchart(args, options).exited;
}
