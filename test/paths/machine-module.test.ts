import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRunchartError } from '../../src/errors.js';
import { checkPolicyCoverage } from '../../src/verification/coverage.js';
import { loadRunMachine } from '../../src/verification/load.js';
import { enumerateRunPaths, untakenTransitions } from '../../src/verification/paths.js';
import { tempDir } from '../support/temp.js';

const source = (path: string) => JSON.stringify(resolve(import.meta.dirname, '../..', path));

/**
 * A module of a user's own that extends the run chart: after the precheck (or, with `beforePrecheck`,
 * before it) a `triage` state asks a layer of its own, then the run goes on as before. With
 * `recallInTriage`, triage recalls memory instead: an effect, which must not come before the precheck.
 */
function chartModule(options: { beforePrecheck?: boolean; recallInTriage?: boolean; exportAs?: 'default' | 'runMachine' } = {}) {
  const after = options.beforePrecheck ? 'ingress' : 'policy';
  const next = options.beforePrecheck ? 'policy' : 'retrieval';
  return `
import { runMachine } from ${source('machines/run/machine.ts')};
import { runSetup, traced } from ${source('machines/run/setup.ts')};
import { placeholder } from ${source('machines/placeholder.ts')};

const states = { ...runMachine.config.states };
const redirect = (transition) => (transition.target === ${JSON.stringify(next)} ? { ...transition, target: 'triage' } : transition);
const onDone = states[${JSON.stringify(after)}].invoke.onDone;
states[${JSON.stringify(after)}] = { ...states[${JSON.stringify(after)}], invoke: { ...states[${JSON.stringify(after)}].invoke, onDone: Array.isArray(onDone) ? onDone.map(redirect) : redirect(onDone) } };
states.triage = {
  ...traced('triage'),
  invoke: {
    id: 'triageRequest',
    src: ${options.recallInTriage ? "'recallMemory'" : "'classifyRequest'"},
    input: ({ context }) => ({ tenantId: context.accepted.tenantId, principalId: context.accepted.principalId, query: context.accepted.input, limit: 1 }),
    onDone: { target: ${JSON.stringify(next)} },
    onError: { target: ${JSON.stringify(next)} },
  },
};
const chart = runSetup.createMachine({ ...runMachine.config, states }).provide({ actors: { classifyRequest: placeholder('classifyRequest') } });
${options.exportAs === 'runMachine' ? 'export { chart as runMachine };' : 'export default chart;'}
`;
}

async function written(name: string, text: string): Promise<string> {
  const path = join(await tempDir('runchart-machine-'), name);
  await writeFile(path, text);
  return path;
}

describe('a chart of your own, loaded from a module', () => {
  it('is proved like the run chart: its own state on the paths, every invariant kept, every transition taken', async () => {
    const machine = await loadRunMachine(await written('chart.mjs', chartModule()));
    const report = checkPolicyCoverage({ machine, maxToolHops: 1 });
    expect(report.violations.slice(0, 3).map((violation) => `${violation.rule}: ${violation.detail}`)).toEqual([]);
    const paths = enumerateRunPaths({ machine, maxToolHops: 1 });
    expect(paths.some((path) => path.states.join(' > ').startsWith('ingress > policy > triage > retrieval > modelStep'))).toBe(true);
    expect(untakenTransitions(machine, [{}, { precheckRequired: false }, { backgroundUpdates: false }].flatMap((options) => enumerateRunPaths({ machine, maxToolHops: 1, ...options })))).toEqual([]);
  });

  it('is loaded from a runMachine export and from a path relative to cwd', async () => {
    const path = await written('named.mjs', chartModule({ exportAs: 'runMachine' }));
    const machine = await loadRunMachine('named.mjs', { cwd: resolve(path, '..') });
    expect(Object.keys(machine.root.states)).toContain('triage');
  });

  it('fails the proof by name when its own state calls a layer before the precheck', async () => {
    const machine = await loadRunMachine(await written('early.mjs', chartModule({ beforePrecheck: true, recallInTriage: true })));
    const report = checkPolicyCoverage({ machine, maxToolHops: 1 });
    expect(report.ok).toBe(false);
    expect(new Set(report.violations.map((violation) => violation.rule))).toContain('precheck-before-effects');
    expect(report.violations.find((violation) => violation.rule === 'precheck-before-effects')?.detail).toMatch(/memory recall \(triageRequest\) starts in triage/);
  });

  it('refuses a module without a run chart, naming the module and what it must export', async () => {
    const path = await written('empty.mjs', 'export const chart = 42;\nexport default { name: "not a machine" };\n');
    const refused = await loadRunMachine(path).catch((error: unknown) => error);
    expect(isRunchartError(refused) && refused.kind).toBe('invalid-input');
    expect((refused as Error).message).toBe(
      `paths: --machine ${path} exports no run chart: export it as the module's default or as runMachine (a machine made with runSetup.createMachine or runMachine.provide); its default export is an object that is not a state machine`,
    );
  });

  it('refuses a module that cannot be loaded, naming it', async () => {
    const missing = join(await tempDir('runchart-machine-'), 'missing.mjs');
    await expect(loadRunMachine(missing)).rejects.toThrow(new RegExp(`^paths: --machine ${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} could not be loaded \\(.+\\); give the path of a JavaScript module that exports your run chart$`));
  });
});
