// A server killed with SIGKILL in the middle of runs: every run it stored can still be shown in
// the viewer, from its recording where that reached the stored state, from the stored snapshot
// (with a note) where the recording is missing or cut short.
import { existsSync, readdirSync, readFileSync, truncateSync, unlinkSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from '../support/cli-inline.js';
import { generateApiKey } from '../../src/ingress/http.js';
import { startRunchart } from '../support/cli-process.js';
import { tempDir } from '../support/temp.js';


describe('runs show --html after a kill -9', () => {
  it('writes a viewer page for every run with a stored snapshot, noting a recording that is missing or cut short', { timeout: 90_000 }, async () => {
    const dir = await tempDir('runchart-killed-');
    const store = join(dir, 'store');
    const { key, sha256 } = generateApiKey();
    const config = join(dir, 'runchart.yaml');
    await writeFile(config, ['telemetry: { emit_structured_events: false }', 'http:', `  api_keys: [{ sha256: "${sha256}", tenant: acme, principal: ops }]`, ''].join('\n'));
    const server = startRunchart(['serve', '--port', '0', '--config', config, '--store', store]);
    const url = (await server.waitFor(/serving on (http:\/\/\S+)/))[1]!;
    const post = () =>
      fetch(`${url}/v1/runs`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify({ input: 'what is 2+3?' }) });
    // A few runs that finish, then a burst that the kill lands in the middle of.
    for (let index = 0; index < 3; index++) expect((await post()).status).toBe(200);
    let answered = 0;
    let killAfterSome!: () => void;
    const someAnswered = new Promise<void>((resolve) => (killAfterSome = resolve));
    const burst = Array.from({ length: 60 }, () =>
      post().then(
        () => void (++answered === 20 && killAfterSome()),
        () => {},
      ),
    );
    await someAnswered;
    server.child.kill('SIGKILL');
    await server.exited;
    await Promise.all(burst);

    const listed = await cli('runs', 'list', '--tenant', 'acme', '--json', '--store', store);
    expect(listed.code).toBe(0);
    const runs = JSON.parse(listed.out) as { runId: string; status: string }[];
    expect(runs.length).toBeGreaterThanOrEqual(3);
    // What a kill does to a recording, made certain for two runs: one never written, one torn mid-line.
    const recording = (runId: string) => join(store, 'inspect', `${runId}.jsonl`);
    const [gone, torn] = runs.filter((run) => run.status === 'completed' && existsSync(recording(run.runId)));
    unlinkSync(recording(gone!.runId));
    truncateSync(recording(torn!.runId), readFileSync(recording(torn!.runId)).length - 40);

    for (const run of runs) {
      const out = join(dir, 'pages', `${run.runId}.html`);
      const shown = await cli('runs', 'show', run.runId, '--tenant', 'acme', '--store', store, '--html', out);
      expect(shown.code, `${run.runId} (${run.status}): ${shown.err}`).toBe(0);
      const page = readFileSync(out, 'utf8');
      expect(page).toContain(run.runId);
      if (run.runId === gone!.runId || run.runId === torn!.runId) {
        expect(shown.err).toMatch(/the recording of this run is incomplete/i);
        expect(page).toMatch(/The recording of this run is incomplete/);
      } else {
        // Written as the run goes: a step's lines reach the recording before its snapshot reaches the store.
        expect(shown.err, `${run.runId} (${run.status})`).not.toMatch(/incomplete/);
      }
    }
    expect(readdirSync(join(dir, 'pages'))).toHaveLength(runs.length);
  });
});
