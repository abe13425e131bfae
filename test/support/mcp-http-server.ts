// A real Streamable HTTP MCP server for the tests: the SDK's McpServer on node:http, bound to 127.0.0.1.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ListToolsRequestSchema, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const HANGING = 'hang: waiting to be cancelled';
const PAGE_SIZE = 2;
/** A valid-looking schema whose $ref leads nowhere: `z.fromJSONSchema` cannot read it. */
export const UNREADABLE_SCHEMA = {
  type: 'object',
  properties: { text: { $ref: '#/definitions/Missing' } },
  required: ['text'],
} as const satisfies Tool['inputSchema'];

/** A running test server: what it was asked to do, and a way to make it vanish. */
export interface McpHttpServer {
  /** The MCP endpoint, e.g. `http://127.0.0.1:41234/mcp`. */
  url: string;
  /** Every tool call that reached a tool handler, in order. */
  calls: { tool: string; args: unknown }[];
  /** Tools whose call was cancelled by the client (the request's signal aborted on the server). */
  cancelled: string[];
  /** tools/list requests served (a page each). */
  listRequests(): number;
  /** Sessions the server holds open right now. */
  sessions(): number;
  /** Resolves when a call of `tool` has reached its handler. */
  reached(tool: string): Promise<void>;
  /** Closes every session and connection at once, as a crashed server would. */
  kill(): Promise<void>;
}

/**
 * Starts the server with five tools, listed two a page: `greet` (a normal tool), `hang` (never
 * answers until cancelled), `fail` (answers with `isError`), `lookup.city` (a name that needs
 * sanitizing, with structured content) and `raw` (a listed schema zod cannot read).
 * @example
 * const server = await startMcpHttpServer(); // … await server.kill();
 */
export async function startMcpHttpServer(options: { name?: string; version?: string } = {}): Promise<McpHttpServer> {
  const calls: McpHttpServer['calls'] = [];
  const cancelled: string[] = [];
  const waiters: { tool: string; resolve: () => void }[] = [];
  const record = (tool: string, args: unknown) => {
    calls.push({ tool, args });
    for (const waiter of waiters.filter((waiter) => waiter.tool === tool)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };

  const flushes: (() => void)[] = [];
  /** Tells `hang` when its log line has been handed to the socket. */
  function watchWrites(response: ServerResponse) {
    const write = response.write.bind(response) as (...parameters: unknown[]) => boolean;
    response.write = ((chunk: unknown, ...rest: unknown[]) => {
      const text = typeof chunk === 'string' ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk).toString('utf8') : '';
      if (!text.includes(HANGING)) return write(chunk, ...rest);
      const callback = typeof rest.at(-1) === 'function' ? (rest.pop() as (error?: Error | null) => void) : undefined;
      return write(chunk, ...rest, (error?: Error | null) => {
        flushes.shift()?.();
        callback?.(error);
      });
    }) as ServerResponse['write'];
  }

  const shapes = {
    greet: { name: z.string().min(1).describe('Who to greet') },
    hang: {},
    fail: { reason: z.string() },
    'lookup.city': { city: z.enum(['Oslo', 'Lima']) },
    raw: { text: z.string() },
  };
  const citySchema = { city: z.string(), population: z.number() };
  const descriptions: Record<keyof typeof shapes, string> = {
    greet: 'Greets someone by name',
    hang: 'Never answers',
    fail: 'Always reports an error',
    'lookup.city': 'Looks up a city',
    raw: 'Echoes text; lists a schema that zod cannot read',
  };
  const jsonSchema = (shape: z.ZodRawShape) => z.toJSONSchema(z.object(shape), { target: 'draft-07', io: 'input' }) as Tool['inputSchema'];
  /** What tools/list serves, PAGE_SIZE tools a page; `raw` advertises a $ref to nowhere. */
  const listing: Tool[] = (Object.keys(shapes) as (keyof typeof shapes)[]).map((name) => ({
    name,
    description: descriptions[name],
    inputSchema: name === 'raw' ? UNREADABLE_SCHEMA : jsonSchema(shapes[name]),
    ...(name === 'lookup.city' ? { outputSchema: jsonSchema(citySchema) as Tool['outputSchema'] } : {}),
  }));
  let listRequests = 0;

  function createMcpServer(): McpServer {
    const server = new McpServer({ name: options.name ?? 'runchart-test-server', version: options.version ?? '0.3' }, { capabilities: { logging: {} } });
    server.registerTool('greet', { description: descriptions.greet, inputSchema: shapes.greet }, async ({ name }) => {
      record('greet', { name });
      return { content: [{ type: 'text', text: `Hello, ${name}!` }] };
    });
    server.registerTool('hang', { description: descriptions.hang, inputSchema: shapes.hang }, async (args, extra) => {
      // A log line first, and only once it is on the wire is the call "reached": the client then
      // holds an open response stream while the tool hangs, as with any server that reports progress.
      const flushed = new Promise<void>((resolve) => flushes.push(resolve));
      await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data: HANGING } });
      await flushed;
      record('hang', args);
      return new Promise((_resolve, reject) => {
        extra.signal.addEventListener('abort', () => (cancelled.push('hang'), reject(new Error('cancelled'))), { once: true });
      });
    });
    server.registerTool('fail', { description: descriptions.fail, inputSchema: shapes.fail }, async ({ reason }) => {
      record('fail', { reason });
      return { isError: true, content: [{ type: 'text', text: `refused: ${reason}` }] };
    });
    server.registerTool(
      'lookup.city',
      { description: descriptions['lookup.city'], inputSchema: shapes['lookup.city'], outputSchema: citySchema },
      async ({ city }) => {
        record('lookup.city', { city });
        const structuredContent = { city, population: city === 'Oslo' ? 709_000 : 10_000_000 };
        return { content: [{ type: 'text', text: JSON.stringify(structuredContent) }], structuredContent };
      },
    );
    server.registerTool('raw', { description: descriptions.raw, inputSchema: shapes.raw }, async ({ text }) => {
      record('raw', { text });
      return { content: [{ type: 'text', text }] };
    });
    // Replaces McpServer's one-page listing (the calls still go to the tools above).
    server.server.setRequestHandler(ListToolsRequestSchema, (request) => {
      listRequests++;
      const start = Number(request.params?.cursor ?? 0);
      const next = start + PAGE_SIZE;
      return { tools: listing.slice(start, next), ...(next < listing.length ? { nextCursor: String(next) } : {}) };
    });
    return server;
  }

  const sessions = new Map<string, { transport: StreamableHTTPServerTransport; server: McpServer }>();

  async function handle(request: IncomingMessage, response: ServerResponse) {
    if (new URL(request.url ?? '/', 'http://localhost').pathname !== '/mcp') {
      response.writeHead(404).end();
      return;
    }
    watchWrites(response);
    const sessionId = request.headers['mcp-session-id'];
    const existing = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined;
    if (existing) return existing.transport.handleRequest(request, response);
    if (request.method !== 'POST' || sessionId !== undefined) {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }));
      return;
    }
    const server = createMcpServer();
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void sessions.set(id, { transport, server }),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    await transport.handleRequest(request, response);
  }

  const http = createServer((request, response) => {
    handle(request, response).catch(() => {
      if (!response.headersSent) response.writeHead(500);
      response.end();
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;

  let killed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    calls,
    cancelled,
    listRequests: () => listRequests,
    sessions: () => sessions.size,
    reached: (tool) => new Promise<void>((resolve) => waiters.push({ tool, resolve })),
    kill() {
      killed ??= (async () => {
        const closing = new Promise<void>((resolve) => http.close(() => resolve()));
        // Cut open SSE streams and in-flight requests first, as a crash would, then drop the sessions.
        http.closeAllConnections();
        await Promise.all([...sessions.values()].map(({ server }) => server.close().catch(() => {})));
        sessions.clear();
        await closing;
      })();
      return killed;
    },
  };
}
