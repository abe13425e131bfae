// An OpenAI-compatible Chat Completions server on 127.0.0.1 for tests: it answers from a script,
// replays recorded bodies from test/fixtures/openai/, and records every request it receives.
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach } from 'vitest';
import type { ChatMessage, ModelRequest, ToolCall, ToolSpec, Usage } from '../../src/models/contract.js';

/** What the server does with one request, in script order. */
export type ServerStep =
  /** A JSON body (a chat completion, or an error body with `status`). */
  | { json: unknown; status?: number; headers?: Record<string, string> }
  /** Server-sent events: `data: <chunk>` per chunk, then `data: [DONE]`, unless the stream is cut or left hanging. */
  | { stream: unknown[]; cutAfter?: number; hangAfter?: number; done?: boolean }
  /** Any body, sent as is (malformed JSON, HTML from a proxy). */
  | { raw: string; status?: number; contentType: string }
  /** A final answer or tool calls, as JSON or as a stream: whichever the request asked for. */
  | { answer: Answer }
  /** Never answer; the client has to time out or abort. */
  | { hang: true };

/** An answer in our own terms, turned into the OpenAI format by the server. */
export type Answer = { text: string; usage?: Usage; pieces?: string[] } | { toolCalls: ToolCall[]; usage?: Usage; text?: string };

/** A request as the server saw it. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: ChatCompletionsBody;
  /** True once the client closed the connection before the response was complete. */
  disconnected: boolean;
}

/** The parts of a Chat Completions request body the tests look at. */
export interface ChatCompletionsBody {
  model: string;
  messages: { role: string; content: string | null; tool_calls?: { id: string; type: string; function: { name: string; arguments: string } }[]; tool_call_id?: string }[];
  tools?: { type: string; function: { name: string; description: string; parameters: Record<string, unknown> } }[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  [key: string]: unknown;
}

/** A running test server: its URL, what it received, and ways to wait for the client. */
export interface OpenAIServer {
  /** The base URL to give the client, ending in `/v1`. */
  url: string;
  requests: RecordedRequest[];
  /** Resolves once `count` requests have arrived. */
  received(count: number): Promise<void>;
  /** Resolves once the client has closed the connection of request `index` (0-based) before its response was complete. */
  disconnected(index: number): Promise<void>;
  /** Throws when scripted steps were left unused or requests came beyond the script. */
  verify(): void;
  close(): Promise<void>;
}

const fixtureDir = new URL('../fixtures/openai/', import.meta.url);

/** A recorded OpenAI response body from test/fixtures/openai/ (a chat completion, an error, or a list of stream chunks). */
export function fixture<T = unknown>(name: string): T {
  return JSON.parse(readFileSync(new URL(`${name}.json`, fixtureDir), 'utf8')) as T;
}

/** Fault steps, each with the body the real API sends. */
export const faults = {
  /** 429 with `retry-after-ms: 10`, which the SDK honours before it retries. */
  rateLimited: (): ServerStep => ({ json: fixture('error-429-rate-limit'), status: 429, headers: { 'retry-after-ms': '10', 'x-request-id': 'req_rate_limited' } }),
  serverError: (): ServerStep => ({ json: fixture('error-500-server'), status: 500, headers: { 'x-request-id': 'req_server_error' } }),
  badKey: (): ServerStep => ({ json: fixture('error-401-invalid-key'), status: 401 }),
  malformed: (): ServerStep => ({ raw: '{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assist', contentType: 'application/json' }),
  hang: (): ServerStep => ({ hang: true }),
};

const open = new Set<{ close(): Promise<void> }>();
afterEach(async () => {
  await Promise.all([...open].map((server) => server.close()));
});

/**
 * Starts a Chat Completions server on 127.0.0.1 (port 0) that answers request N with `script[N]`
 * (or with what `script(body, N)` decides, for a model whose answers follow the conversation).
 * Every server is closed after the test, sockets and all.
 * @example
 * const server = await startOpenAIServer([faults.rateLimited(), { json: fixture('chat-answer') }]);
 * const model = openaiModel({ baseURL: server.url, apiKey: 'test-key' });
 */
export async function startOpenAIServer(script: ServerStep[] | ((body: ChatCompletionsBody, index: number) => ServerStep)): Promise<OpenAIServer> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const waiting: { count: number; resolve: () => void }[] = [];
  const disconnects = new Map<number, { promise: Promise<void>; resolve: () => void }>();
  const extra: string[] = [];
  const disconnectOf = (index: number) => {
    let entry = disconnects.get(index);
    if (!entry) {
      let resolve!: () => void;
      const promise = new Promise<void>((settle) => (resolve = settle));
      disconnects.set(index, (entry = { promise, resolve }));
    }
    return entry;
  };

  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const index = requests.length;
    const recorded: RecordedRequest = {
      method: request.method ?? '',
      path: request.url ?? '',
      headers: request.headers,
      body: (text ? JSON.parse(text) : {}) as ChatCompletionsBody,
      disconnected: false,
    };
    requests.push(recorded);
    response.on('close', () => {
      if (response.writableFinished || cutByServer.has(response)) return;
      recorded.disconnected = true;
      disconnectOf(index).resolve();
    });
    for (const waiter of waiting.filter((waiter) => requests.length >= waiter.count)) waiter.resolve();

    const step = typeof script === 'function' ? script(recorded.body, index) : script[index];
    if (request.method !== 'POST' || request.url !== '/v1/chat/completions') {
      extra.push(`${request.method} ${request.url}`);
      return sendJson(response, 404, { error: { message: `test server: no route ${request.method} ${request.url}`, type: 'invalid_request_error', param: null, code: null } });
    }
    if (!step) {
      extra.push(`request ${index + 1} is beyond the script of ${script.length}`);
      // x-should-retry: false, so an unscripted request fails at once instead of being retried.
      return sendJson(response, 500, { error: { message: `test server: no scripted response for request ${index + 1}`, type: 'server_error', param: null, code: null } }, { 'x-should-retry': 'false' });
    }
    await respond(step, recorded.body, response);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  const handle: OpenAIServer = {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    received: (count) => (requests.length >= count ? Promise.resolve() : new Promise((resolve) => waiting.push({ count, resolve }))),
    disconnected: (index) => disconnectOf(index).promise,
    verify() {
      const problems = [...extra];
      if (Array.isArray(script) && requests.length < script.length) problems.push(`${script.length - requests.length} of ${script.length} scripted responses were never requested`);
      if (problems.length) throw new Error(`openai test server: ${problems.join('; ')}`);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        open.delete(handle);
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      return closing;
    },
  };
  open.add(handle);
  return handle;
}

function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  response.end(text);
}

async function respond(step: ServerStep, body: ChatCompletionsBody, response: ServerResponse): Promise<void> {
  if ('hang' in step) return;
  if ('json' in step) return sendJson(response, step.status ?? 200, step.json, step.headers);
  if ('raw' in step) {
    response.writeHead(step.status ?? 200, { 'content-type': step.contentType });
    return void response.end(step.raw);
  }
  if ('answer' in step) {
    if (body.stream) return sendStream(response, { stream: streamChunksFor(step.answer, body.model) });
    return sendJson(response, 200, completionFor(step.answer, body.model));
  }
  return sendStream(response, step);
}

/** Responses whose connection the server dropped on purpose: not a client disconnect. */
const cutByServer = new WeakSet<ServerResponse>();

const write = (response: ServerResponse, text: string) => new Promise<void>((resolve) => response.write(text, () => resolve()));

async function sendStream(response: ServerResponse, step: Extract<ServerStep, { stream: unknown[] }>): Promise<void> {
  response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const last = step.cutAfter ?? step.hangAfter ?? step.stream.length;
  for (const chunk of step.stream.slice(0, last)) {
    if (response.destroyed) return;
    await write(response, `data: ${JSON.stringify(chunk)}\n\n`);
  }
  // Cut: the chunks written so far are flushed, then the connection drops with no end of stream.
  if (step.cutAfter !== undefined) {
    cutByServer.add(response);
    return void response.socket?.destroy();
  }
  if (step.hangAfter !== undefined) return;
  if (step.done !== false) await write(response, 'data: [DONE]\n\n');
  response.end();
}

const defaultUsage: Usage = { inputTokens: 20, outputTokens: 7 };
const wireUsage = (usage: Usage) => ({ prompt_tokens: usage.inputTokens, completion_tokens: usage.outputTokens, total_tokens: usage.inputTokens + usage.outputTokens });
const wireCalls = (calls: ToolCall[]) => calls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }));

/** A chat completion body in the real API's format. */
export function completionFor(answer: Answer, model = 'gpt-4.1-mini-2025-04-14') {
  const calls = 'toolCalls' in answer ? answer.toolCalls : [];
  return {
    id: 'chatcmpl-test',
    object: 'chat.completion',
    created: 1767225600,
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: answer.text ?? null, ...(calls.length ? { tool_calls: wireCalls(calls) } : {}), refusal: null, annotations: [] },
        logprobs: null,
        finish_reason: calls.length ? 'tool_calls' : 'stop',
      },
    ],
    usage: wireUsage(answer.usage ?? defaultUsage),
    service_tier: 'default',
    system_fingerprint: 'fp_test',
  };
}

/**
 * Stream chunks in the real API's format: the first carries `delta.role`, text comes in pieces,
 * each tool call's name comes once and its arguments in two pieces, and usage comes last.
 */
export function streamChunksFor(answer: Answer, model = 'gpt-4.1-mini-2025-04-14'): unknown[] {
  const base = { id: 'chatcmpl-test', object: 'chat.completion.chunk', created: 1767225600, model, service_tier: 'default', system_fingerprint: 'fp_test' };
  const chunk = (delta: object, finish: string | null = null) => ({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], usage: null });
  const chunks: unknown[] = [chunk({ role: 'assistant', content: '', refusal: null })];
  const text = answer.text ?? '';
  const pieces = 'pieces' in answer && answer.pieces ? answer.pieces : text.match(/.{1,4}/gs) ?? [];
  for (const piece of pieces) chunks.push(chunk({ content: piece }));
  const calls = 'toolCalls' in answer ? answer.toolCalls : [];
  calls.forEach((call, index) => {
    const half = Math.ceil(call.arguments.length / 2);
    chunks.push(chunk({ tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] }));
    chunks.push(chunk({ tool_calls: [{ index, function: { arguments: call.arguments.slice(0, half) } }] }));
    chunks.push(chunk({ tool_calls: [{ index, function: { arguments: call.arguments.slice(half) } }] }));
  });
  chunks.push(chunk({}, calls.length ? 'tool_calls' : 'stop'));
  chunks.push({ ...base, choices: [], usage: wireUsage(answer.usage ?? defaultUsage) });
  return chunks;
}

/** A recorded request body mapped back to our shapes: what the model was asked, as the contract says it. */
export function toModelRequest(body: ChatCompletionsBody): ModelRequest {
  const messages = body.messages.map((message): ChatMessage => {
    if (message.role === 'tool') return { role: 'tool', toolCallId: message.tool_call_id ?? '', content: message.content ?? '' };
    if (message.role === 'assistant') {
      return {
        role: 'assistant',
        content: message.content,
        ...(message.tool_calls ? { toolCalls: message.tool_calls.map((call) => ({ id: call.id, name: call.function.name, arguments: call.function.arguments })) } : {}),
      };
    }
    return { role: message.role as 'system' | 'user', content: message.content ?? '' };
  });
  const tools = (body.tools ?? []).map((tool): ToolSpec => ({ name: tool.function.name, description: tool.function.description, parameters: tool.function.parameters }));
  return { model: body.model, messages, tools };
}
