import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import type { InspectionEvent } from 'xstate';
import { RunchartError } from '../errors.js';
import { createProtocolConverter } from '../inspect/protocol.js';
import { plain, runActorOf, type Inspected } from '../inspect/recorder.js';
import { isOutputAllowed, withholdModelText } from '../inspect/withhold.js';

/** A live connection to the Stately inspector. */
export interface InspectorConnection {
  inspect: (event: InspectionEvent) => void;
  /** Sends a recorded inspection-protocol event as it was (for replays). */
  send: (event: unknown) => void;
  /** Where a person opens the inspector, or null when connected to someone else's server. */
  pageUrl: string | null;
  /** Sends what is still buffered, then closes the socket (and the local bridge); never leaves a timer or a socket behind. */
  close(): Promise<void>;
}

/** How long a connection to an inspector server may take before it counts as failed. */
const CONNECT_TIMEOUT_MS = 5_000;
/** Events the bridge keeps for a page opened late (the run may be over by then). */
const BRIDGE_BUFFER = 20_000;

/** JSON for anything XState hands the inspector: snapshots through their `toJSON`, errors with their message, no functions. */
function serialize(event: unknown): string {
  return JSON.stringify(event, (_key, value: unknown) => {
    if (value instanceof Error) return { name: value.name, message: value.message };
    if (typeof value === 'function' || typeof value === 'symbol') return undefined;
    if (typeof value === 'bigint') return value.toString();
    return value;
  });
}

/**
 * The page of the local bridge: the Stately inspector (its UI loads from stately.ai) in a frame,
 * fed from the bridge's socket, under a line that says it needs the internet and what to use offline.
 */
export function bridgePage(port: number): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>runchart: Stately inspector bridge</title>
<style>
  html, body { height: 100%; margin: 0; font-family: Helvetica, Arial, sans-serif; }
  body { display: flex; flex-direction: column; }
  #notice { padding: 8px 14px; background: #0f172a; color: #f8fafc; font-size: 14px; }
  #notice code { background: #1e293b; padding: 1px 4px; border-radius: 3px; }
  #offline { display: none; color: #fca5a5; }
  iframe { flex: 1; width: 100%; border: none; }
</style>
</head>
<body>
<div id="notice">This page shows the runs in the Stately inspector, whose UI loads from stately.ai: it needs the internet.
Offline, write a self-contained viewer page of a run instead: <code>runchart runs show &lt;runId&gt; --html run.html</code>.
<span id="offline">The inspector has not loaded (no internet?).</span></div>
<iframe id="inspector" src="https://stately.ai/inspect"></iframe>
<script>
  const frame = document.getElementById('inspector');
  const waiting = [];
  let connected = false;
  window.addEventListener('message', (event) => {
    if (!event.data || event.data.type !== '@statelyai.connected') return;
    connected = true;
    for (const data of waiting.splice(0)) frame.contentWindow.postMessage(data, '*');
  });
  setTimeout(() => { if (!connected) document.getElementById('offline').style.display = 'inline'; }, 8000);
  const socket = new WebSocket('ws://' + location.host);
  socket.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (connected) frame.contentWindow.postMessage(data, '*');
    else waiting.push(data);
  };
</script>
</body>
</html>
`;
}

/** The local bridge: the page over HTTP and a WebSocket that relays each message to every other client (as `@statelyai/inspect/server` does). */
async function startBridge(): Promise<{ port: number; stop(): Promise<void> }> {
  const server: Server = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    response.end(bridgePage(port));
  });
  const sockets = new WebSocketServer({ server });
  const kept: string[] = [];
  sockets.on('connection', (client) => {
    for (const message of kept) client.send(message);
    client.on('message', (data) => {
      const message = data.toString();
      kept.push(message);
      if (kept.length > BRIDGE_BUFFER) kept.shift();
      for (const other of sockets.clients) if (other !== client && other.readyState === WebSocket.OPEN) other.send(message);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    async stop() {
      // Open pages and keep-alive connections would hold the process: end them all.
      for (const client of sockets.clients) client.terminate();
      sockets.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Opens a WebSocket and waits until it is open; a socket it cannot open is an error naming the URL. */
async function openSocket(url: string): Promise<WebSocket> {
  let socket: WebSocket;
  try {
    socket = new WebSocket(url);
  } catch (error) {
    throw new RunchartError('invalid-input', 'telemetry', `inspect: "${url}" is not a WebSocket URL (${(error as Error).message}); give one such as ws://127.0.0.1:8080, or leave it out for a local bridge page`);
  }
  return new Promise<WebSocket>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    function fail(error: Error) {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on('error', () => {});
      socket.terminate();
      const reason = (error as NodeJS.ErrnoException).code ?? error.message;
      reject(
        new RunchartError(
          'invalid-input',
          'telemetry',
          `inspect: cannot connect to the inspector at ${url} (${reason}); start an inspector server there (createInspectorServer from @statelyai/inspect/server), or leave the URL out for a local bridge page`,
          { cause: error },
        ),
      );
    }
    socket.once('open', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      // Later socket errors end the connection quietly; the runs go on, unwatched.
      socket.on('error', () => {});
      resolve(socket);
    });
    socket.once('error', fail);
  });
}

/**
 * Connects runs to the Stately inspector. With a `ws://` URL, to that inspector server (failing
 * at once, naming the URL, when it cannot connect); without, it starts a local bridge whose page
 * embeds the inspector UI (which loads from stately.ai, so that page needs the internet;
 * recording does not). Nothing retries in the background: once closed, nothing is left running.
 */
export async function connectInspector(target: string | undefined): Promise<InspectorConnection> {
  const bridge = target === undefined ? await startBridge() : undefined;
  const url = target ?? `ws://127.0.0.1:${bridge!.port}`;
  let socket: WebSocket;
  try {
    socket = await openSocket(url);
  } catch (error) {
    await bridge?.stop();
    throw error;
  }
  const send = (event: unknown) => {
    if (socket.readyState !== WebSocket.OPEN) return;
    try {
      socket.send(serialize(event));
    } catch {
      // An event that cannot be sent is lost to the inspector only; the run goes on.
    }
  };
  // Converted as they are emitted: no timer per event holds an actor (and its run) until it fires.
  const converter = createProtocolConverter();
  /** Runs whose output the policy has allowed: their model text may be shown. */
  const allowed = new WeakSet<object>();
  return {
    inspect: (event) => {
      // As in recordings: no model text reaches the inspector before the run's output allow.
      const run = runActorOf(event.actorRef as unknown as Inspected);
      if (run && event.type === '@xstate.snapshot' && event.actorRef === (run as unknown) && isOutputAllowed((event.snapshot as { context?: unknown }).context)) allowed.add(run);
      const converted = converter.convert(event, () => true);
      if (!converted) return;
      const line = !run || allowed.has(run) ? converted : withholdModelText(plain(converted));
      send(Object.assign(line, { createdAt: String(Date.now()) }));
    },
    send,
    pageUrl: bridge ? `http://localhost:${bridge.port}` : null,
    async close() {
      // Let the socket write out what was sent.
      if (socket.readyState === WebSocket.OPEN && socket.bufferedAmount > 0) await new Promise((resolve) => setTimeout(resolve, 50));
      await new Promise<void>((resolve) => {
        if (socket.readyState === WebSocket.CLOSED) return resolve();
        const timer = setTimeout(() => (socket.terminate(), resolve()), 1_000);
        socket.once('close', () => (clearTimeout(timer), resolve()));
        socket.close();
      });
      await bridge?.stop();
    },
  };
}
