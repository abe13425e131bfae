import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine } from 'xstate';
import { RunchartError } from '../errors.js';

/** A state machine as XState makes it, told apart by shape: `instanceof` fails when the module has its own copy of xstate. */
function isStateMachine(value: unknown): value is AnyStateMachine {
  const candidate = value as Partial<AnyStateMachine> | null | undefined;
  return typeof candidate === 'object' && candidate !== null && typeof candidate.transition === 'function' && typeof candidate.getInitialSnapshot === 'function' && typeof candidate.root === 'object';
}

const describe = (value: unknown) => (value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object that is not a state machine' : `a ${typeof value}`);

/**
 * Loads the run chart a module exports, for `runchart paths --check --machine <module>`: its
 * `default` export, or else its `runMachine` export, which must be a state machine (the run
 * chart extended with `runSetup.createMachine(...)`, or `runMachine.provide(...)`). A path is
 * taken from `cwd` (the process's working directory unless given).
 * @example
 * const machine = await loadRunMachine('./my-chart.js');
 * const report = checkPolicyCoverage({ machine, maxToolHops: 3 });
 */
export async function loadRunMachine(modulePath: string, options: { cwd?: string } = {}): Promise<AnyStateMachine> {
  const path = isAbsolute(modulePath) ? modulePath : resolve(options.cwd ?? process.cwd(), modulePath);
  let exported: Record<string, unknown>;
  try {
    exported = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    throw new RunchartError('invalid-input', 'runtime', `paths: --machine ${modulePath} could not be loaded (${error instanceof Error ? error.message : String(error)}); give the path of a JavaScript module that exports your run chart`, { cause: error });
  }
  if (isStateMachine(exported.default)) return exported.default;
  if (isStateMachine(exported.runMachine)) return exported.runMachine;
  const found = ['default', 'runMachine'].filter((name) => name in exported).map((name) => `its ${name} export is ${describe(exported[name])}`);
  const names = Object.keys(exported).filter((name) => name !== 'default');
  throw new RunchartError(
    'invalid-input',
    'runtime',
    `paths: --machine ${modulePath} exports no run chart: export it as the module's default or as runMachine (a machine made with runSetup.createMachine or runMachine.provide); ${found.length ? found.join(', ') : `it exports ${names.length ? names.join(', ') : 'nothing'}`}`,
  );
}
