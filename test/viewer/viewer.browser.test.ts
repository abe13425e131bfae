// The run viewer in real headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core).
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { writeViewerPage } from '../../visualizations/viewer.js';
import { tempDir } from '../support/temp.js';
import { completeRecording, type StoredRun } from '../../src/inspect/fallback.js';
import { createInMemoryRunStore } from '../../src/testing/index.js';
import { allowRuns, approvedRun, recordedRuntime, recordingPath } from './recorded-run.js';

const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const answer = '2+3 is 5 <b>not bold</b></script><script>window.injected = true</script>';

let browser: Browser | undefined;
/** Launches Chromium once; without it every test here fails (never skips) and says how to install it. */
async function launched(): Promise<Browser> {
  if (!existsSync(executablePath)) {
    throw new Error(`the viewer test needs Chromium at ${executablePath}: install it with "apt-get install -y chromium" (npm test does so when run as root)`);
  }
  browser ??= await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  return browser;
}
afterAll(async () => {
  await browser?.close();
});

/** Opens `url` and collects page errors, console errors and every request that is not the page's own file. */
async function open(url: string, viewport = { width: 1600, height: 1000 }): Promise<{ page: Page; problems: string[] }> {
  const page = await (await launched()).newPage({ viewport });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => void (message.type() === 'error' && problems.push(`console: ${message.text()}`)));
  page.on('request', (request) => void (!request.url().startsWith('file://') && !request.url().startsWith('data:') && problems.push(`request: ${request.url()}`)));
  await page.goto(url);
  return { page, problems };
}

const classesOf = (page: Page, selector: string) => page.locator(selector).evaluateAll((nodes) => nodes.map((node) => node.getAttribute('class') ?? ''));
const stateClass = async (page: Page, state: string) => (await classesOf(page, `g.state[data-state="${state}"]`))[0] ?? 'missing';
const edgeClass = async (page: Page, from: string, to: string) => (await classesOf(page, `g.transition[data-from="${from}"][data-to="${to}"]`))[0] ?? 'missing';
const rowsOf = (page: Page, table: string) => page.locator(`table.${table} tbody tr`).evaluateAll((rows) => rows.map((row) => (row as unknown as { innerText: string }).innerText.replace(/\s+/g, ' ').trim()));

const onPath = ['ingress', 'policy', 'retrieval', 'modelStep', 'toolExecution.authorizing', 'toolExecution.awaitingApproval', 'toolExecution.reviewing', 'toolExecution.executing', 'assembly', 'background.authorizing', 'background.queueing', 'completed'];
const offPath = ['denied', 'failed', 'cancelled'];

describe('the run viewer in Chromium', () => {
  it('highlights the recorded path and lists decisions, tool calls, approvals and the result', async () => {
    const dir = await tempDir();
    const { done, path } = await approvedRun(dir, answer);
    const out = join(dir, 'page', 'run.html');
    await writeViewerPage({ recording: await readFile(path, 'utf8'), out });

    const { page, problems } = await open(pathToFileURL(out).href);
    await page.waitForSelector('body.loaded');

    for (const state of onPath) expect(await stateClass(page, state), state).toMatch(/\bvisited\b/);
    for (const state of offPath) expect(await stateClass(page, state), state).not.toMatch(/\bvisited\b/);
    // The transient states the run passed through, and the compound states it was in.
    for (const state of ['toolExecution.next', 'toolExecution.reviewed', 'background.deciding', 'toolExecution', 'background']) expect(await stateClass(page, state), state).toMatch(/\bvisited\b/);
    expect(await stateClass(page, 'completed')).toMatch(/\bcurrent\b/);
    expect(await edgeClass(page, 'toolExecution.awaitingApproval', 'toolExecution.reviewing')).toMatch(/\btaken\b/);
    expect(await edgeClass(page, 'toolExecution.reviewed', 'toolExecution.executing')).toMatch(/\btaken\b/);
    expect(await edgeClass(page, 'policy', 'denied')).not.toMatch(/\btaken\b/);
    expect(await edgeClass(page, 'toolExecution.authorizing', 'toolExecution.executing')).not.toMatch(/\btaken\b/);

    expect(await page.locator('#run-status').innerText()).toBe('completed');
    expect(await page.locator('#run-title').innerText()).toBe(`run ${done.runId}`);
    expect(await rowsOf(page, 'path')).toHaveLength(13); // modelStep twice
    expect(await rowsOf(page, 'decisions')).toEqual([
      expect.stringMatching(/precheck allow allow-runs user-7/),
      expect.stringMatching(/tool require_approval math-needs-approval math\.add user-7/),
      expect.stringMatching(/approval allow managers-approve math\.add manager/),
      expect.stringMatching(/output allow allow-runs user-7/),
      expect.stringMatching(/memory\.write allow allow-runs user-7/),
    ]);
    const calls = await rowsOf(page, 'calls');
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(/c0\.0 math\.add@1\.0\.0 \{"a":2,"b":3\} ok 5 tool: require_approval \(math-needs-approval\); approval: allow by manager \(managers-approve\)/);
    expect(await rowsOf(page, 'approvals')).toEqual([expect.stringMatching(/approve c0\.0 manager .*allow/)]);
    // The model's answer is shown as text: nothing in a recording becomes markup or script.
    expect(await page.locator('pre.output').innerText()).toBe(answer);
    expect(await page.evaluate(() => (globalThis as { injected?: boolean }).injected)).toBeUndefined();
    expect(problems).toEqual([]);

    const screenshots = fileURLToPath(new URL('../../test-results/', import.meta.url));
    await mkdir(screenshots, { recursive: true });
    await page.screenshot({ path: join(screenshots, 'viewer.png'), fullPage: true });
    await page.close();
  });

  it('shows the run (input, tenant, principal, status, output) at the top, and the whole diagram within the window', async () => {
    const dir = await tempDir();
    const { path } = await approvedRun(dir, answer);
    const out = join(dir, 'run.html');
    await writeViewerPage({ recording: await readFile(path, 'utf8'), out });
    for (const viewport of [{ width: 1600, height: 1000 }, { width: 1400, height: 900 }, { width: 900, height: 700 }]) {
      const { page, problems } = await open(pathToFileURL(out).href, viewport);
      await page.waitForSelector('body.loaded');
      const text = (id: string) => page.locator(`#summary-${id}`).innerText();
      expect(await text('input')).toBe('what is 2+3?');
      expect(await text('tenant')).toBe('acme');
      expect(await text('principal')).toBe('user-7');
      expect(await text('status')).toBe('completed');
      expect(await text('output')).toBe(answer);
      const summary = (await page.locator('#summary').boundingBox())!;
      const diagram = (await page.locator('#diagram svg').boundingBox())!;
      const figure = (await page.locator('#diagram').boundingBox())!;
      // The summary comes first and is on the first screen; the diagram below it is never wider than its box or taller than the window.
      expect(summary.y + summary.height, `${viewport.width}px`).toBeLessThanOrEqual(viewport.height);
      expect(summary.y).toBeLessThan(diagram.y);
      expect(diagram.width).toBeLessThanOrEqual(figure.width);
      expect(diagram.height).toBeLessThanOrEqual(viewport.height);
      expect(diagram.width).toBeGreaterThan(viewport.width / 3);
      // The facts panel names the same identity.
      expect(await page.locator('dl.facts').innerText()).toMatch(/tenant\s+acme\s+principal\s+user-7/);
      expect(problems).toEqual([]);
      await page.close();
    }
  });

  it('the committed page (visualizations/viewer/index.html) loads a recording the user picks', async () => {
    const dir = await tempDir();
    const { path } = await approvedRun(dir);
    const { page, problems } = await open(new URL('../../visualizations/viewer/index.html', import.meta.url).href);
    expect(await page.locator('g.state[data-state]').count()).toBeGreaterThan(15);
    expect(await page.locator('g.state.visited').count()).toBe(0);

    await page.locator('#file').setInputFiles(path);
    await page.waitForSelector('body.loaded');
    for (const state of onPath) expect(await stateClass(page, state), state).toMatch(/\bvisited\b/);
    for (const state of offPath) expect(await stateClass(page, state), state).not.toMatch(/\bvisited\b/);
    expect(await rowsOf(page, 'decisions')).toHaveLength(5);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('shows an answer the output check denied as withheld, and nowhere as text', async () => {
    const dir = await tempDir();
    const secret = 'the model said something it should not';
    const { runtime, recorder } = recordedRuntime(dir, {
      rules: [{ id: 'runs', stage: ['precheck', 'memory.write'], effect: 'allow' }, { id: 'no-output', stage: 'output', effect: 'deny' }],
      steps: [{ text: secret }],
    });
    const result = await runtime.run({ input: 'hello', tenantId: 'acme', principalId: 'user-7' });
    await recorder.flush();
    await runtime.close();
    expect(result.status).toBe('denied');
    const out = join(dir, 'run.html');
    const recording = await readFile(recordingPath(dir, result.runId), 'utf8');
    expect(recording).not.toContain(secret);
    await writeViewerPage({ recording, out });

    const { page, problems } = await open(pathToFileURL(out).href);
    await page.waitForSelector('body.loaded');
    expect(await page.locator('#run-status').innerText()).toBe('denied');
    expect(await page.locator('p.withheld').innerText()).toMatch(/withheld: the output check has not allowed it/);
    expect(await page.locator('#summary-output').innerText()).toMatch(/^\(withheld/);
    expect(await page.locator('body').innerText()).not.toContain(secret);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('draws a run with no recording from its stored snapshot, under a note that says so', async () => {
    const dir = await tempDir();
    const runStore = createInMemoryRunStore();
    const { runtime } = recordedRuntime(join(dir, 'elsewhere'), { rules: [allowRuns], steps: [{ text: 'hello back' }], runStore });
    const result = await runtime.run({ input: 'hello', tenantId: 'acme', principalId: 'user-7' });
    await runtime.close();
    const stored = (await runStore.load(result.runId))!;
    const { text, note } = completeRecording('', stored as StoredRun);
    expect(note).toMatch(/there is no recording of it/);
    const out = join(dir, 'run.html');
    await writeViewerPage({ recording: text, out });

    const { page, problems } = await open(pathToFileURL(out).href);
    await page.waitForSelector('body.loaded');
    expect(await page.locator('p.incomplete').innerText()).toBe(note);
    expect(await page.locator('#run-status').innerText()).toBe('completed');
    expect(await stateClass(page, 'completed')).toMatch(/\bcurrent\b/);
    expect(await rowsOf(page, 'decisions')).toEqual([expect.stringMatching(/precheck allow allow-runs/), expect.stringMatching(/output allow allow-runs/), expect.stringMatching(/memory\.write allow allow-runs/)]);
    expect(await page.locator('pre.output').innerText()).toBe('hello back');
    expect(problems).toEqual([]);
    await page.close();
  });
});
