// The runchart command run in this process: what it prints and the exit code it sets.
import { main } from '../../src/cli/main.js';

/** Runs the CLI in-process and captures what it prints and the exit code it sets. */
export async function cli(...argv: string[]) {
  let out = '';
  let err = '';
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => ((out += chunk), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => ((err += chunk), true)) as typeof process.stderr.write;
  process.exitCode = undefined;
  try {
    await main(argv);
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
  const code = process.exitCode ?? 0;
  process.exitCode = undefined;
  return { out, err, code };
}
