import { createServer } from 'node:net';
import { createWebSocketReceiver } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import { describe, expect, it } from 'vitest';
import { connectInspector } from '../../src/cli/inspect.js';
import { main } from '../../src/cli/main.js';
import { createRuntime } from '../../src/runtime.js';
import { scriptedModel } from '../../src/testing/index.js';
import { tempDir } from '../support/temp.js';

const freePort = () =>
  new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });

describe('the Stately inspector', () => {
  it('receives a run’s actors, events and snapshots over its WebSocket protocol from "runchart run --inspect ws://…"', async () => {
    const port = await freePort();
    const server = createInspectorServer({ port, autoOpen: false });
    const received: { type: string; snapshot?: { value?: unknown } }[] = [];
    const receiver = createWebSocketReceiver({ server: `ws://127.0.0.1:${port}` });
    const subscription = receiver.subscribe((event) => void received.push(event as never));
    try {
      await new Promise((resolve) => setTimeout(resolve, 200)); // let the receiver connect before the run starts
      const write = process.stdout.write.bind(process.stdout);
      process.stdout.write = (() => true) as typeof process.stdout.write;
      try {
        await main(['run', 'what is 2+3?', '--inspect', `ws://127.0.0.1:${port}`, '--store', await tempDir()]);
      } finally {
        process.stdout.write = write;
        process.exitCode = undefined;
      }
      await expect.poll(() => received.some((event) => event.type === '@xstate.snapshot' && event.snapshot?.value === 'completed'), { timeout: 5_000 }).toBe(true);
      const types = new Set(received.map((event) => event.type));
      expect(types).toEqual(new Set(['@xstate.actor', '@xstate.event', '@xstate.snapshot']));
    } finally {
      subscription.unsubscribe();
      server.stop();
    }
  });

  it('sends no model text before the output allow: a denied answer never reaches the inspector, an allowed one does', async () => {
    const port = await freePort();
    const server = createInspectorServer({ port, autoOpen: false });
    const received: unknown[] = [];
    const receiver = createWebSocketReceiver({ server: `ws://127.0.0.1:${port}` });
    const subscription = receiver.subscribe((event) => void received.push(event));
    try {
      await new Promise((resolve) => setTimeout(resolve, 200));
      for (const verdict of ['deny', 'allow'] as const) {
        const connection = await connectInspector(`ws://127.0.0.1:${port}`);
        const runtime = createRuntime({
          config: { store: { kind: 'memory' }, telemetry: { emit_structured_events: false }, policy: { rules: [{ id: 'runs', stage: ['precheck', 'memory.write'], effect: 'allow' }, { id: 'out', stage: 'output', effect: verdict }] } },
          model: scriptedModel([{ text: `the launch codes are 0000 (${verdict})` }]),
          inspect: connection.inspect,
        });
        const result = await runtime.run({ input: 'tell me', tenantId: 'acme', principalId: 'u' });
        expect(result.status).toBe(verdict === 'deny' ? 'denied' : 'completed');
        await runtime.close();
        await connection.close();
      }
      await expect.poll(() => JSON.stringify(received).includes('the launch codes are 0000 (allow)'), { timeout: 5_000 }).toBe(true);
      expect(JSON.stringify(received)).not.toContain('the launch codes are 0000 (deny)');
      expect(JSON.stringify(received)).toContain('[withheld until the output check allows it]');
    } finally {
      subscription.unsubscribe();
      server.stop();
    }
  });

  it('starts a local bridge page when no URL is given, which says it needs the internet and what works offline, and closes it', async () => {
    const connection = await connectInspector(undefined);
    expect(connection.pageUrl).toMatch(/^http:\/\/localhost:\d+$/);
    const page = await (await fetch(connection.pageUrl!)).text();
    expect(page).toContain('https://stately.ai/inspect');
    expect(page).toContain('it needs the internet');
    expect(page).toContain('runchart runs show &lt;runId&gt; --html run.html');
    await connection.close();
    await expect(fetch(connection.pageUrl!)).rejects.toThrow();
  });

  it('relays what a run sends to a page that connects later (the bridge keeps the events)', async () => {
    const connection = await connectInspector(undefined);
    try {
      connection.send({ type: '@xstate.event', sessionId: 'x', event: { type: 'early' } });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const { WebSocket } = await import('ws');
      const page = new WebSocket(connection.pageUrl!.replace('http://', 'ws://'));
      const first = await new Promise<string>((resolve, reject) => (page.once('message', (data) => resolve(data.toString())), page.once('error', reject)));
      expect(JSON.parse(first)).toMatchObject({ event: { type: 'early' } });
      page.close();
    } finally {
      await connection.close();
    }
  });

  it('fails at once, naming the URL, when it cannot connect to an inspector server', async () => {
    const port = await freePort();
    await expect(connectInspector(`ws://127.0.0.1:${port}`)).rejects.toThrow(`inspect: cannot connect to the inspector at ws://127.0.0.1:${port} (ECONNREFUSED)`);
    await expect(connectInspector('not a url')).rejects.toThrow('inspect: "not a url" is not a WebSocket URL');
  });
});
