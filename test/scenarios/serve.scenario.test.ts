import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { generateApiKey } from '../../src/ingress/http.js';
import { tempDir } from '../support/temp.js';

const child = fileURLToPath(new URL('../support/cli-child.ts', import.meta.url));

describe('runchart serve', () => {
  it('serves runs over HTTP with a configured key, and stops cleanly on SIGTERM', async () => {
    const dir = await tempDir();
    const { key, sha256 } = generateApiKey();
    const config = join(dir, 'runchart.yaml');
    await writeFile(
      config,
      [
        'policy:',
        '  rules:',
        '    - { id: allow-runs, stage: [precheck, output, memory.write], effect: allow }',
        '    - { id: allow-math, stage: tool, effect: allow, capabilities: ["math.*"] }',
        'telemetry: { emit_structured_events: false }',
        'http:',
        `  api_keys: [{ sha256: "${sha256}", tenant: acme, principal: ops }]`,
        '',
      ].join('\n'),
    );
    const server = spawn(process.execPath, ['--import', 'tsx', child, 'serve', '--port', '0', '--config', config, '--store', join(dir, 'store')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OPENAI_API_KEY: '', OPENAI_BASE_URL: '' },
    });
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      server.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const match = /serving on (http:\/\/\S+)/.exec(out);
        if (match) resolve(match[1]!);
      });
      server.on('exit', (code) => reject(new Error(`serve exited (${code}): ${out}`)));
    });
    const unauthenticated = await fetch(`${url}/v1/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ input: 'what is 2+3?' }) });
    expect(unauthenticated.status).toBe(401);
    const response = await fetch(`${url}/v1/runs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ input: 'what is 2+3?' }),
    });
    expect(response.status).toBe(200);
    const result = (await response.json()) as { runId: string };
    expect(result).toMatchObject({ status: 'completed', tenantId: 'acme', principalId: 'ops', output: '[offline demo model] The answer is 5.' });
    const fetched = await fetch(`${url}/v1/runs/${result.runId}`, { headers: { authorization: `Bearer ${key}` } });
    expect(((await fetched.json()) as { status: string }).status).toBe('completed');
    server.kill('SIGTERM');
    const code = await new Promise((resolve) => server.on('exit', resolve));
    expect(code).toBe(0);
  });
});
