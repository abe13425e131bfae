// MCP servers as catalog capabilities. The only file that imports the MCP SDK (client side).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ErrorCode, McpError, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { defineCapability } from '../catalog/capability.js';
import type { Capability } from '../catalog/contract.js';
import { describeIssues, isRunchartError, RunchartError, type ErrorKind } from '../errors.js';

const ServerName = z
  .string()
  .regex(/^[a-zA-Z][a-zA-Z0-9_-]*(\.[a-zA-Z0-9_-]+)*$/, 'use letters, digits, "_" and "-" in dot-separated parts: it prefixes every capability name');

/** An MCP server started as a child process and spoken to over stdio. */
export const McpStdioSource = z.strictObject({
  /** Prefix of every capability name: `<server>.<tool>`. */
  server: ServerName,
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  /** Added to the SDK's safe default environment (PATH, HOME, …); the rest of ours is not inherited. */
  env: z.record(z.string(), z.string()).optional(),
  cwd: z.string().optional(),
});
export type McpStdioSource = z.infer<typeof McpStdioSource>;

/** An MCP server reached over Streamable HTTP. */
export const McpHttpSource = z.strictObject({
  server: ServerName,
  url: z.url({ protocol: /^https?$/ }),
  /** Sent with every request, e.g. `{ authorization: 'Bearer …' }`. */
  headers: z.record(z.string(), z.string()).optional(),
});
export type McpHttpSource = z.infer<typeof McpHttpSource>;

/** Where an MCP server lives: a command to spawn (stdio) or a URL (Streamable HTTP). */
export const McpSource = z.union([McpStdioSource, McpHttpSource]);
export type McpSource = z.infer<typeof McpSource>;

/** Options of `mcpCapabilities`. */
export const McpCapabilitiesOptions = z.strictObject({
  /** Per call (the capability's `timeoutMs`), and for connecting and listing tools. Default 30 000. */
  timeoutMs: z.number().int().positive().max(600_000).optional(),
  /** The version of every capability; default: the server's reported version, coerced to semver. */
  version: z.string().optional(),
  /** Aborts connecting and listing. */
  signal: z.instanceof(AbortSignal).optional(),
});
export type McpCapabilitiesOptions = z.infer<typeof McpCapabilitiesOptions>;

/** The tools of one MCP server as capabilities, plus the connection's `close()`. */
export type McpCapabilities = Capability[] & {
  /** Closes the connection: the child process exits (stdio) or the session ends (HTTP). Idempotent. */
  close(): Promise<void>;
};

const DEFAULT_TIMEOUT_MS = 30_000;
/** The gateway's signal decides a timeout; the SDK's own timer is only a backstop, so it fires later. */
const SDK_TIMEOUT_GRACE_MS = 1_000;
const STDERR_TAIL_CHARS = 2_000;

/**
 * Connects to an MCP server, lists its tools (every page) and returns each as a capability named
 * `<server>.<tool>`, with the tool's own JSON Schema shown to the model (less its `$schema`
 * line, as for any capability) and the same schema, as zod, checking the arguments before the
 * call (a schema zod cannot read still requires an object). The capabilities are ordinary catalog entries:
 * deny by default applies until a rule allows them. Tools that require task-based execution are
 * left out. Call `close()` when done.
 * @example
 * const everything = await mcpCapabilities({ server: 'everything', command: 'npx', args: ['-y', '@modelcontextprotocol/server-everything'] });
 * const runtime = createRuntime({ capabilities: [...everything], config: { policy: { rules: [
 *   { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
 *   { id: 'allow-everything', stage: 'tool', effect: 'allow', capabilities: ['everything.*'] },
 * ] } } });
 * // … await runtime.close(); await everything.close();
 */
export async function mcpCapabilities(source: McpSource, options: McpCapabilitiesOptions = {}): Promise<McpCapabilities> {
  // Checked against the kind it names (a `url` means HTTP, else a command), so the issues name fields, not the union.
  const byUrl = typeof source === 'object' && source !== null && 'url' in source;
  const parsedSource = (byUrl ? McpHttpSource : McpStdioSource).safeParse(source);
  if (!parsedSource.success) {
    const kind = byUrl ? 'an HTTP source ({ server, url, headers? })' : 'a stdio source ({ server, command, args?, env?, cwd? })';
    throw new RunchartError('invalid-input', 'execution', `execution: the MCP source is invalid as ${kind}: ${describeIssues(parsedSource.error)}`, { cause: parsedSource.error });
  }
  const parsedOptions = McpCapabilitiesOptions.safeParse(options);
  if (!parsedOptions.success) {
    throw new RunchartError('invalid-input', 'execution', `execution: the MCP options are invalid: ${describeIssues(parsedOptions.error)}`, { cause: parsedOptions.error });
  }
  const timeoutMs = parsedOptions.data.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const setup = { timeout: timeoutMs, ...(parsedOptions.data.signal ? { signal: parsedOptions.data.signal } : {}) };
  const connection = await connect(parsedSource.data, timeoutMs, setup);
  try {
    const tools = await listTools(connection, setup);
    const version = parsedOptions.data.version ?? toSemver(connection.client.getServerVersion()?.version);
    const names = uniqueNames(connection.server, tools.map((tool) => tool.name));
    const capabilities = tools.map((tool, index) => toCapability(connection, tool, names[index]!, version, timeoutMs));
    return Object.assign(capabilities, { close: connection.close });
  } catch (error) {
    await connection.close();
    throw error;
  }
}

interface Connection {
  server: string;
  client: Client;
  call(tool: string, args: Record<string, unknown>, signal: AbortSignal, timeoutMs: number): Promise<CallToolResult>;
  close(): Promise<void>;
}

/** What connecting and listing are bounded by. */
interface SetupOptions {
  timeout: number;
  signal?: AbortSignal;
}

async function connect(source: McpSource, timeoutMs: number, setup: SetupOptions): Promise<Connection> {
  const server = source.server;
  const client = new Client({ name: 'runchart', version: '0.1.0' });
  const stdio = 'command' in source;
  let stderrTail = '';
  const transport = stdio
    ? new StdioClientTransport({
        command: source.command,
        ...(source.args ? { args: source.args } : {}),
        ...(source.env ? { env: source.env } : {}),
        ...(source.cwd ? { cwd: source.cwd } : {}),
        // Piped, not inherited: a server's log lines stay out of our output and explain its death.
        stderr: 'pipe',
      })
    : new StreamableHTTPClientTransport(new URL(source.url), source.headers ? { requestInit: { headers: source.headers } } : {});
  if (transport instanceof StdioClientTransport) {
    transport.stderr?.on('data', (chunk: Buffer) => void (stderrTail = (stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_CHARS)));
  }

  let closing: Promise<void> | undefined;
  /** Set once the server is known to be gone for good (a stdio process that exited). */
  let lost: RunchartError | undefined;
  /** Rejecters of the calls in flight: a lost connection fails them at once instead of at their timeout. */
  const inFlight = new Set<(error: RunchartError) => void>();
  const failInFlight = (error: RunchartError) => {
    for (const reject of inFlight) reject(error);
  };
  const gone = (detail: string, cause?: unknown) =>
    new RunchartError('upstream', 'execution', `execution: MCP server "${server}" is unreachable: ${detail}`, { cause, retryable: !stdio });

  let markClosed!: () => void;
  const transportClosed = new Promise<void>((resolve) => (markClosed = resolve));
  client.onclose = () => {
    markClosed();
    if (closing || !stdio) return;
    const tail = stderrTail.trim().split('\n').slice(-3).join(' | ');
    lost = gone(`its process exited${tail ? ` (stderr: ${tail})` : ''}`);
    failInFlight(lost);
  };
  // A cut HTTP stream only shows up as a transport error. While calls wait, ask the server whether
  // it is still there; a server that cannot be reached fails them now rather than at their timeout.
  let probing = false;
  client.onerror = () => {
    if (stdio || closing || probing || inFlight.size === 0) return;
    probing = true;
    client
      .ping({ timeout: Math.min(timeoutMs, 5_000) })
      .then(
        () => {},
        (error: unknown) => {
          if (!(error instanceof McpError)) failInFlight(gone(messageOf(error), error));
        },
      )
      .finally(() => (probing = false));
  };

  const close = () =>
    (closing ??= (async () => {
      if (transport instanceof StreamableHTTPClientTransport && !lost) {
        // Ends the session on the server; bounded, since a hung server must not hold up our shutdown.
        await Promise.race([transport.terminateSession().catch(() => {}), delay(1_000)]);
      }
      await client.close().catch(() => {});
      // The SDK may already be closing the process (a failed connect does that) and then returns
      // at once; wait for the exit itself, bounded by the SDK's own SIGTERM/SIGKILL escalation.
      if (stdio) await Promise.race([transportClosed, delay(5_000)]);
    })());

  try {
    await client.connect(transport, setup);
  } catch (error) {
    await close();
    if (setup.signal?.aborted) throw setup.signal.reason;
    const tail = stderrTail.trim().split('\n').slice(-3).join(' | ');
    throw new RunchartError('upstream', 'execution', `execution: cannot connect to MCP server "${server}": ${messageOf(error)}${tail ? ` (stderr: ${tail})` : ''}`, {
      cause: error,
      retryable: true,
    });
  }

  async function call(tool: string, args: Record<string, unknown>, signal: AbortSignal, callTimeoutMs: number): Promise<CallToolResult> {
    if (lost) throw lost;
    if (closing) throw new RunchartError('not-provided', 'execution', `execution: the connection to MCP server "${server}" was closed; its tools are no longer available`);
    let reject!: (error: RunchartError) => void;
    const failed = new Promise<never>((_resolve, rejectWith) => (reject = rejectWith));
    inFlight.add(reject);
    try {
      const calling = client.callTool({ name: tool, arguments: args }, undefined, { signal, timeout: callTimeoutMs + SDK_TIMEOUT_GRACE_MS });
      return (await Promise.race([calling, failed])) as CallToolResult;
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw toCallError(error, server, tool, lost, gone);
    } finally {
      inFlight.delete(reject);
    }
  }

  return { server, client, call, close };
}

async function listTools(connection: Connection, setup: SetupOptions): Promise<Tool[]> {
  const tools: Tool[] = [];
  const seen = new Set<string>();
  let cursor: string | undefined;
  try {
    do {
      const page = await connection.client.listTools(cursor === undefined ? undefined : { cursor }, setup);
      tools.push(...page.tools);
      cursor = page.nextCursor;
      // A server that hands out the same cursor twice would page forever.
      if (cursor !== undefined && seen.has(cursor)) break;
      if (cursor !== undefined) seen.add(cursor);
    } while (cursor !== undefined);
  } catch (error) {
    if (setup.signal?.aborted) throw setup.signal.reason;
    throw new RunchartError('upstream', 'execution', `execution: MCP server "${connection.server}" did not list its tools: ${messageOf(error)}`, { cause: error, retryable: true });
  }
  // tools/call cannot run these: they answer only through the experimental task API.
  return tools.filter((tool) => tool.execution?.taskSupport !== 'required');
}

function toCapability(connection: Connection, tool: Tool, name: string, version: string, timeoutMs: number): Capability {
  const { $schema: _dialect, ...parameters } = tool.inputSchema as Record<string, unknown>;
  const description = tool.description?.trim() || tool.title?.trim() || tool.annotations?.title?.trim() || `the "${tool.name}" tool of MCP server "${connection.server}"`;
  return defineCapability<Record<string, unknown>, unknown>({
    name,
    version,
    description,
    input: inputSchemaFor(tool.inputSchema),
    output: z.unknown(),
    effects: 'external',
    timeoutMs,
    parameters,
    handler: async (args, { signal }) => toOutput(await connection.call(tool.name, args, signal, timeoutMs), connection.server, tool.name),
  }) as Capability;
}

/** The server's JSON Schema as zod; a schema zod cannot read still requires an object. */
function inputSchemaFor(schema: Tool['inputSchema']): z.ZodType<Record<string, unknown>> {
  try {
    return z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]) as z.ZodType<Record<string, unknown>>;
  } catch {
    return z.looseObject({});
  }
}

/** Text-only results become their text; anything else keeps its content blocks and structured content. */
function toOutput(result: CallToolResult, server: string, tool: string): unknown {
  const content = result.content ?? [];
  const text = content
    .filter((block): block is Extract<typeof block, { type: 'text' }> => block.type === 'text')
    .map((block) => block.text)
    .join('\n');
  if (result.isError) {
    throw new RunchartError('tool-failed', 'execution', `execution: MCP tool "${tool}" of server "${server}" reported an error: ${text || 'no details given'}`);
  }
  if (content.every((block) => block.type === 'text') && result.structuredContent === undefined) return text;
  return { content, ...(result.structuredContent === undefined ? {} : { structuredContent: result.structuredContent }) };
}

function toCallError(error: unknown, server: string, tool: string, lost: RunchartError | undefined, gone: (detail: string, cause?: unknown) => RunchartError): RunchartError {
  if (isRunchartError(error)) return error;
  if (lost) return lost;
  if (error instanceof McpError) {
    if (error.code === ErrorCode.ConnectionClosed) return gone('the connection closed', error);
    if (error.code === ErrorCode.RequestTimeout) {
      return new RunchartError('timeout', 'execution', `execution: MCP tool "${tool}" of server "${server}" timed out`, { cause: error, retryable: true });
    }
    return new RunchartError('tool-failed', 'execution', `execution: MCP server "${server}" refused the call to "${tool}": ${error.message}`, { cause: error });
  }
  const kind = errorKindOf(error);
  if (kind !== 'upstream') {
    return new RunchartError(kind, 'execution', `execution: MCP server "${server}" refused the call to "${tool}": ${messageOf(error)}`, { cause: error, retryable: kind === 'rate-limited' });
  }
  return gone(messageOf(error), error);
}

function errorKindOf(error: unknown): ErrorKind {
  if (error instanceof UnauthorizedError) return 'auth';
  if (error instanceof StreamableHTTPError) {
    if (error.code === 401 || error.code === 403) return 'auth';
    if (error.code === 429) return 'rate-limited';
  }
  return 'upstream';
}

/** `<server>.<tool>` with the tool part reduced to letters, digits, `_` and `-`; clashes get `_2`, `_3`, … */
function uniqueNames(server: string, tools: string[]): string[] {
  const taken = new Set<string>();
  return tools.map((tool) => {
    const base = `${server}.${tool.replace(/[^a-zA-Z0-9_-]/g, '_') || '_'}`;
    let name = base;
    for (let suffix = 2; taken.has(name); suffix++) name = `${base}_${suffix}`;
    taken.add(name);
    return name;
  });
}

/** A semantic version from whatever the server reports: `2.0.0` stays, `0.3` becomes `0.3.0`, nothing becomes `1.0.0`. */
function toSemver(reported: string | undefined): string {
  if (reported && /^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$/.test(reported)) return reported;
  const match = reported?.match(/(\d+)(?:\.(\d+))?(?:\.(\d+))?/);
  if (!match) return '1.0.0';
  return `${Number(match[1])}.${Number(match[2] ?? 0)}.${Number(match[3] ?? 0)}`;
}

function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as Error & { cause?: unknown }).cause;
  const code = typeof cause === 'object' && cause !== null && 'code' in cause ? ` (${String(cause.code)})` : '';
  return `${error.message}${code}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
