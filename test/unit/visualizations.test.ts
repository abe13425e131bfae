import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { renderAll } from '../../visualizations/generate.js';

describe('committed visualizations', () => {
  it('match the machine they were generated from (run "runchart viz" after changing the chart)', async () => {
    for (const [name, text] of Object.entries(renderAll())) {
      expect(await readFile(new URL(`../../visualizations/${name}`, import.meta.url), 'utf8'), name).toBe(text);
    }
  });

  it('draw every state of the machine and every guard of modelStep', () => {
    const diagram = renderAll()['run-machine.mmd']!;
    for (const state of ['ingress', 'policy', 'retrieval', 'modelStep', 'toolExecution_authorizing', 'toolExecution_awaitingApproval', 'toolExecution_executing', 'assembly', 'background_queueing', 'completed', 'denied', 'failed', 'cancelled']) {
      expect(diagram).toContain(`as ${state}`);
    }
    for (const guard of ['isOverTokenBudget', 'asksForToolsPastHopBudget', 'asksForTooManyTools', 'asksForTools']) expect(diagram).toContain(`[${guard}]`);
  });
});

describe('README', () => {
  it('embeds the current diagram', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(`\`\`\`mermaid\n${renderAll()['run-machine.mmd']}\`\`\``);
  });
});
