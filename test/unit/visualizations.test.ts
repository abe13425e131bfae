import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { chartOf } from '../../visualizations/chart.js';
import { renderAll } from '../../visualizations/generate.js';
import { renderSvg } from '../../visualizations/svg.js';
import { renderViewerPage } from '../../visualizations/viewer.js';

const rendered = renderAll();

describe('committed visualizations', () => {
  it('match the machine they were generated from (run "runchart viz" after changing the chart)', async () => {
    expect(Object.keys(rendered)).toEqual(['run-machine.mmd', 'run-machine.svg', 'run-paths.md', 'viewer/index.html', 'viewer/viewer.js', 'viewer/viewer.css']);
    for (const [name, text] of Object.entries(rendered)) {
      expect(await readFile(new URL(`../../visualizations/${name}`, import.meta.url), 'utf8'), name).toBe(text);
    }
  });

  it('draw every state of the machine and every guard of modelStep', () => {
    const diagram = rendered['run-machine.mmd']!;
    for (const state of ['ingress', 'policy', 'retrieval', 'modelStep', 'toolExecution_authorizing', 'toolExecution_awaitingApproval', 'toolExecution_executing', 'assembly', 'background_queueing', 'completed', 'denied', 'failed', 'cancelled']) {
      // Nested states are declared with their short label; top-level ones by their transitions.
      expect(diagram).toMatch(new RegExp(`(as ${state}\\b|^  ${state} --> )`, 'm'));
    }
    for (const guard of ['isOverTokenBudget', 'asksForToolsPastHopBudget', 'asksForTooManyTools', 'asksForTools']) expect(diagram).toContain(`[${guard}]`);
  });
});

describe('the SVG diagram', () => {
  const svg = rendered['run-machine.svg']!;
  const chart = chartOf();

  it('is the same bytes every time it is rendered', () => {
    expect(renderSvg()).toBe(svg);
  });

  it('has one group per state, named by its dotted key, final states double-bordered, compound states as clusters', () => {
    for (const state of chart.states) {
      const group = new RegExp(`<g class="state ${state.kind}[^"]*" data-state="${state.key.replace('.', '\\.')}" id="state-${state.key.replace('.', '\\.')}">`);
      expect(svg, state.key).toMatch(group);
    }
    expect(svg.match(/<rect class="ring"/g)).toHaveLength(chart.states.filter((state) => state.kind === 'final').length);
    expect(chart.states.filter((state) => state.kind === 'compound').map((state) => state.key)).toEqual(['toolExecution', 'background']);
    for (const state of ['toolExecution.next', 'toolExecution.reviewed', 'background.deciding']) expect(svg).toContain(`class="state atomic transient" data-state="${state}"`);
  });

  it('draws every transition with its event and guard, the parallel ones on one edge', () => {
    const edges = [...svg.matchAll(/<g class="transition[^"]*" data-from="([^"]*)" data-to="([^"]*)"(?: data-events="([^"]*)")?>/g)];
    const drawn = new Set(edges.map(([, from, to, events]) => `${from}>${to}:${events ?? ''}`));
    for (const transition of chart.transitions) {
      let target = transition.target;
      while (chart.states.find((state) => state.key === target)?.kind === 'compound') target = chart.states.find((state) => state.key === target)!.initial!;
      const edge = [...drawn].find((entry) => entry.startsWith(`${transition.source}>${target}:`));
      expect(edge, `${transition.source} → ${transition.target}`).toBeDefined();
      expect(edge!.split(':')[1]!.split('; ')).toContain(transition.label.replace(/&/g, '&amp;'));
    }
    expect(drawn).toContain('*>cancelled:run.cancel');
    for (const guard of ['isPrecheckPassed', 'isOverTokenBudget', 'asksForTools', 'hasNoMoreCalls', 'needsApproval', 'isForCurrentCall', 'isApproval', 'isBackgroundDisabled']) {
      expect(svg).toContain(`<tspan class="guard">[${guard}]</tspan>`);
    }
  });

  it('is self-contained: no scripts, no external references', () => {
    expect(svg).not.toMatch(/<script|href=|xlink:|url\((?!#arrowhead)/);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]* viewBox="0 0 [\d.]+ [\d.]+"/);
  });

  it('scales to its container: a viewBox, width 100% and no fixed height', () => {
    const open = /^<svg [^>]*>/.exec(svg)![0];
    expect(open).toContain(' width="100%"');
    expect(open).not.toMatch(/ height="/);
  });
});

describe('the path list', () => {
  const paths = rendered['run-paths.md']!;

  it('covers every path at the default max_tool_hops, compactly', () => {
    expect(paths).toContain('## Every path at max_tool_hops 3');
    expect(paths).toMatch(/\| 3 \| \d{4,6} \| \d{4} \| ok: every invariant holds on every path \|/);
    expect(paths).toContain('### 3 tool rounds: 216 rows');
    expect(Buffer.byteLength(paths)).toBeLessThan(100_000);
  });
});

describe('the viewer page', () => {
  it('refuses text that is not a recording', () => {
    expect(() => renderViewerPage('{"type":"nope"}\n')).toThrow(/inspect: line 1 of recording is not an inspection event/);
  });

  it('inlines everything, forbids the network, and cannot be closed by a recording', () => {
    const line = JSON.stringify({ type: '@xstate.event', timestamp: 1, runId: 'r', sessionId: 'x:0', createdAt: '1', _version: '0.7.2', event: { type: '</script><script>alert(1)</script>' } });
    const page = renderViewerPage(`${line}\n`);
    expect(page).toContain(`Content-Security-Policy" content="default-src 'none'`);
    expect(page).not.toMatch(/<link|<script src=|<img/);
    expect(page.match(/<\/script>/g)).toHaveLength(2); // the recording's element and the viewer's
    expect(page).toContain('\\u003c/script>\\u003cscript>alert(1)\\u003c/script>');
    expect(page).toContain(renderSvg().trimEnd());
  });
});

describe('README', () => {
  it('embeds the current diagram', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(`\`\`\`mermaid\n${rendered['run-machine.mmd']}\`\`\``);
  });
});

describe('README configuration example', () => {
  it('is a config the schema accepts (the hash placeholder filled in)', async () => {
    const { parse } = await import('yaml');
    const { parseConfig } = await import('../../src/config.js');
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Configuration'));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)![1]!.replace('<64 hex>', 'a'.repeat(64));
    const config = parseConfig(parse(yaml));
    expect(config.http.api_keys).toHaveLength(1);
    expect(config.policy.rules.map((rule) => rule.id)).toContain('refunds-need-approval');
  });
});
