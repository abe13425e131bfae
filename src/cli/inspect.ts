import { createServer } from 'node:net';
import { createWebSocketInspector } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import type { InspectionEvent } from 'xstate';

/** A live connection to the Stately inspector. */
export interface InspectorConnection {
  inspect: (event: InspectionEvent) => void;
  /** Sends a recorded inspection-protocol event as it was (for replays). */
  send: (event: unknown) => void;
  /** Where a person opens the inspector, or null when connected to someone else's server. */
  pageUrl: string | null;
  close(): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Connects runs to the Stately inspector. With a `ws://` URL, to that inspector server; without,
 * it starts a local bridge (`@statelyai/inspect/server`) whose page embeds the inspector UI (the
 * UI itself loads from stately.ai, so that page needs the internet; recording does not).
 */
export async function connectInspector(target: string | undefined): Promise<InspectorConnection> {
  let url = target;
  let stopServer: (() => void) | undefined;
  let pageUrl: string | null = null;
  if (!url) {
    const port = await freePort();
    const server = createInspectorServer({ port, autoOpen: false });
    stopServer = () => server.stop();
    url = `ws://127.0.0.1:${port}`;
    pageUrl = `http://localhost:${port}`;
  }
  const inspector = createWebSocketInspector({ url });
  const adapter = inspector.adapter as unknown as { send(event: unknown): void };
  return {
    inspect: (event) => inspector.inspect.next?.(event),
    send: (event) => adapter.send(event),
    pageUrl,
    close() {
      inspector.stop();
      stopServer?.();
    },
  };
}
