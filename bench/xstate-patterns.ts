// What three object patterns inside XState cost a run on this Node: `npm run bench:xstate-patterns -- [runs] [pairs]`.
// It copies the installed xstate to a temporary folder, rewrites three spots of its interpreter
// there (the project's node_modules is never touched), and runs `profile.js` on each workload
// with the installed copy and with the rewritten one, alternately, in child processes. The
// rewrites keep XState's behaviour; they only avoid object shapes that Node 20's V8 handles
// slowly (bench/README.md, "XState's object patterns").
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { commandLine, progress, quantile } from './measure.js';

const {
  counts: [runs = 3000, pairs = 3],
} = commandLine('xstate-patterns.ts', { runs: 3000, pairs: 3 });

/** Each rewrite: what XState ships, and the same thing without the slow shape. */
const rewrites = [
  {
    what: "Actor's constructor: options spread over the defaults (a spread that adds keys takes V8's slow path, ~3 µs an actor)",
    from: 'const resolvedOptions = {\n      ...defaultOptions,\n      ...options\n    };',
    to: 'const resolvedOptions = Object.assign({}, defaultOptions, options);',
  },
  {
    what: 'stopping a child: the children copied, then one deleted (a `delete` turns the object into a dictionary, and every later copy of it is slow)',
    from: 'children = {\n      ...children\n    };\n    delete children[resolvedActorRef.id];',
    to: 'const kept = {};\n    for (const key in children) if (key !== resolvedActorRef.id) kept[key] = children[key];\n    children = kept;',
  },
  {
    what: 'spawning a child: the children spread with the new one added under a computed key',
    from: 'children: {\n      ...snapshot.children,\n      [resolvedId]: actorRef\n    }',
    to: 'children: Object.assign({}, snapshot.children, { [resolvedId]: actorRef })',
  },
];

const here = dirname(fileURLToPath(import.meta.url));
const installed = dirname(createRequire(import.meta.url).resolve('xstate/package.json'));
const version = (JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as { version: string }).version;
const scratch = mkdtempSync(join(tmpdir(), 'runchart-xstate-'));
try {
  const copy = join(scratch, 'node_modules', 'xstate');
  cpSync(installed, copy, { recursive: true });
  const dist = join(copy, 'dist');
  // Each build (CommonJS and ES modules, production and development) has its copy of the interpreter.
  const interpreters = readdirSync(dist).filter((name) => name.endsWith('.js') && readFileSync(join(dist, name), 'utf8').includes('class Actor {'));
  if (interpreters.length === 0) throw new Error(`bench: no file of xstate ${version} holds its Actor class; this script knows 5.x's layout`);
  for (const interpreter of interpreters) {
    let text = readFileSync(join(dist, interpreter), 'utf8');
    for (const rewrite of rewrites) {
      if (!text.includes(rewrite.from)) throw new Error(`bench: xstate ${version} no longer has the code this rewrite replaces in ${interpreter} (${rewrite.what}); update bench/xstate-patterns.ts`);
      text = text.replace(rewrite.from, rewrite.to);
    }
    writeFileSync(join(dist, interpreter), text);
  }
  // Every `xstate` import (the project's and the baselines') is resolved from inside the scratch folder.
  const hooks = join(scratch, 'hooks.mjs');
  writeFileSync(
    hooks,
    `const from = ${JSON.stringify(pathToFileURL(join(scratch, 'index.js')).href)};
export async function resolve(specifier, context, next) {
  return specifier === 'xstate' || specifier.startsWith('xstate/') ? next(specifier, { ...context, parentURL: from }) : next(specifier, context);
}`,
  );
  const register = join(scratch, 'register.mjs');
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);

  const workloads = ['memory', 'xstate', 'ai-sdk', 'lowdb'];
  const p50 = (patched: boolean, workload: string) => {
    // profile.js reports on stderr.
    const { stderr: output, status } = spawnSync(process.execPath, [...(patched ? ['--import', register] : []), '--expose-gc', join(here, 'profile.js'), workload, String(runs)], { encoding: 'utf8' });
    if (status !== 0) throw new Error(`bench: profile.js ${workload} failed:\n${output}`);
    const found = /p50 ([\d.]+) µs/.exec(output);
    if (!found) throw new Error(`bench: profile.js ${workload} printed no p50:\n${output}`);
    return Number(found[1]);
  };
  const table: string[] = [`| workload (p50, µs; ${pairs} alternating pairs of ${runs} runs) | xstate ${version} as installed | with the three rewrites | ratio |`, '| --- | ---: | ---: | ---: |'];
  for (const workload of workloads) {
    const as: number[] = [];
    const rewritten: number[] = [];
    for (let pair = 0; pair < pairs; pair++) {
      as.push(p50(false, workload));
      rewritten.push(p50(true, workload));
      progress(`${workload}: as installed ${as.at(-1)!.toFixed(0)} µs, rewritten ${rewritten.at(-1)!.toFixed(0)} µs`);
    }
    const median = (values: number[]) => quantile([...values].sort((a, b) => a - b), 0.5);
    table.push(`| ${workload} | ${median(as).toFixed(0)} | ${median(rewritten).toFixed(0)} | ${(median(rewritten) / median(as)).toFixed(2)}× |`);
  }
  process.stdout.write(`${rewrites.map((rewrite, index) => `${index + 1}. ${rewrite.what}`).join('\n')}\n\n${table.join('\n')}\n`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
