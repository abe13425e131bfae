#!/usr/bin/env node
// Runs before `npm test`: the viewer tests drive Debian's Chromium (playwright-core downloads no
// browser). Present: nothing to do. Missing and root: install it with apt-get. Missing otherwise:
// say how to install it, and stop with exit code 1 before any test runs.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const path = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const install = 'apt-get install -y chromium';

if (existsSync(path)) process.exit(0);

const fail = (why) => {
  process.stderr.write(
    `npm test: the viewer tests need Chromium at ${path}, and ${why}.\n` +
      `Install it (Debian or Ubuntu) with:\n\n    sudo apt-get update && sudo ${install}\n\n` +
      `or point CHROMIUM_PATH at a Chromium you have, then run npm test again.\n`,
  );
  process.exit(1);
};

if (typeof process.getuid !== 'function' || process.getuid() !== 0) fail('this user is not root, so it cannot be installed here');
if (path !== '/usr/bin/chromium') fail('CHROMIUM_PATH names no file (the Debian package installs /usr/bin/chromium)');
if (spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status !== 0) fail('apt-get is not available to install it');

process.stderr.write(`npm test: installing Chromium (Debian package) for the viewer tests: ${install}\n`);
const environment = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
for (const args of [['update', '-qq'], ['install', '-y', '-qq', 'chromium']]) {
  const step = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env: environment });
  if (step.status !== 0) fail(`"apt-get ${args.join(' ')}" failed (exit ${step.status ?? step.signal})`);
}
if (!existsSync(path)) fail(`the chromium package did not put it there`);
process.stderr.write(`npm test: Chromium is at ${path}\n`);
