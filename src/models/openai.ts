// The OpenAI model adapter: the one file that imports 'openai'. It maps the model contract to
// Chat Completions and back, and turns every SDK failure into a RunchartError of layer 'model'.
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { z } from 'zod';
import { describeIssues, isRunchartError, RunchartError, type ErrorKind } from '../errors.js';
import type { ChatMessage, ModelAdapter, ModelDelta, ModelRequest, ModelResponse, ToolCall, ToolSpec } from './contract.js';

/** How to reach the model: a model name, where and with which key, and how patiently. */
export interface OpenAIModelOptions {
  /** The model to ask; when omitted, the run's model (`runtime.default_model`). */
  model?: string;
  /** Any OpenAI-compatible Chat Completions endpoint; the SDK's default (or `OPENAI_BASE_URL`) otherwise. */
  baseURL?: string;
  /** The API key; the SDK reads `OPENAI_API_KEY` when omitted. */
  apiKey?: string;
  /** A client you built yourself; `baseURL`, `apiKey` and `organization` are then ignored. */
  client?: OpenAI;
  /** Per attempt: how long to wait for the response to start, and while streaming, the longest silence between chunks. */
  timeoutMs?: number;
  /** How often the SDK retries 408, 409, 429, 5xx, timeouts and lost connections (the SDK's default: 2). */
  maxRetries?: number;
  /** `false` never streams, even when someone listens for deltas. */
  stream?: boolean;
  organization?: string;
}

type WireMessage = OpenAI.Chat.ChatCompletionMessageParam;
type WireTool = OpenAI.Chat.ChatCompletionFunctionTool;

// What we read from the network is parsed here (STYLE §3); unknown fields pass, missing ones fail.
const WireToolCall = z.object({ id: z.string().min(1), type: z.literal('function'), function: z.object({ name: z.string(), arguments: z.string() }) });
const WireUsage = z.object({ prompt_tokens: z.number().int().min(0), completion_tokens: z.number().int().min(0) });
const Completion = z.object({
  choices: z
    .array(
      z.object({
        message: z.object({ content: z.string().nullish(), tool_calls: z.array(WireToolCall).nullish() }),
        finish_reason: z.string(),
      }),
    )
    .min(1),
  usage: WireUsage.nullish(),
});
const Chunk = z.object({
  choices: z.array(
    z.object({
      index: z.number().int(),
      delta: z
        .object({
          content: z.string().nullish(),
          tool_calls: z
            .array(
              z.object({
                index: z.number().int().min(0),
                id: z.string().nullish(),
                function: z.object({ name: z.string().nullish(), arguments: z.string().nullish() }).nullish(),
              }),
            )
            .nullish(),
        })
        .nullish(),
      finish_reason: z.string().nullish(),
    }),
  ),
  usage: WireUsage.nullish(),
});

const failure = (kind: ErrorKind, message: string, options: { cause?: unknown; retryable?: boolean } = {}) =>
  new RunchartError(kind, 'model', `model: ${message}`, options);

function wire<Schema extends z.ZodType>(schema: Schema, value: unknown, what: string): z.output<Schema> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const shown = typeof value === 'string' ? `text: ${JSON.stringify(value.slice(0, 80))}` : describeIssues(result.error);
  throw failure('contract-violation', `the OpenAI API sent ${what} that is not a chat completion (${shown})`, { cause: result.error });
}

function toWireMessage(message: ChatMessage): WireMessage {
  switch (message.role) {
    case 'system':
    case 'user':
      return { role: message.role, content: message.content };
    case 'assistant':
      return {
        role: 'assistant',
        content: message.content,
        // OpenAI rejects an empty `tool_calls` array, so it is left out rather than sent empty.
        ...(message.toolCalls?.length
          ? { tool_calls: message.toolCalls.map((call) => ({ id: call.id, type: 'function' as const, function: { name: call.name, arguments: call.arguments } })) }
          : {}),
      };
    case 'tool':
      return { role: 'tool', tool_call_id: message.toolCallId, content: message.content };
  }
}

const toWireTool = (tool: ToolSpec): WireTool => ({
  type: 'function',
  function: { name: tool.name, description: tool.description, parameters: tool.parameters },
});

const usageOf = (usage: z.output<typeof WireUsage> | null | undefined) => ({
  inputTokens: usage?.prompt_tokens ?? 0,
  outputTokens: usage?.completion_tokens ?? 0,
});

/** What the error messages need to know about the client. */
interface Settings {
  client: OpenAI;
  timeoutMs: number | undefined;
  maxRetries: number | undefined;
}

/**
 * A model behind the OpenAI Chat Completions API, or any OpenAI-compatible `baseURL`. It streams
 * text when the caller listens for deltas, lets the SDK retry rate limits and server errors, aborts
 * the HTTP request when the run is cancelled, and reports every failure as a `RunchartError` of
 * layer `model` (`auth`, `rate-limited`, `invalid-input`, `upstream`, `timeout`, `cancelled`, `contract-violation`).
 * @example
 * const runtime = createRuntime({
 *   model: openaiModel({ model: 'gpt-5.4', apiKey: process.env.OPENAI_API_KEY, timeoutMs: 60_000 }),
 *   capabilities: mathCapabilities,
 * });
 * // a local OpenAI-compatible server:
 * const local = openaiModel({ baseURL: 'http://127.0.0.1:11434/v1', apiKey: 'not-needed', model: 'llama3.2' });
 */
export function openaiModel(options: OpenAIModelOptions = {}): ModelAdapter {
  let client: OpenAI;
  try {
    client =
      options.client ??
      new OpenAI(
        Object.assign(
          {},
          options.apiKey !== undefined ? { apiKey: options.apiKey } : {},
          options.baseURL !== undefined ? { baseURL: options.baseURL } : {},
          options.organization !== undefined ? { organization: options.organization } : {},
        ),
      );
  } catch (error) {
    throw failure('invalid-input', `no OpenAI API key was given; set OPENAI_API_KEY or pass apiKey (${(error as Error).message.split('\n')[0]})`, { cause: error });
  }
  const settings: Settings = { client, timeoutMs: options.timeoutMs, maxRetries: options.maxRetries };

  return {
    name: 'openai',
    async step(request, { signal, onDelta }) {
      const body = bodyFor(request, options.model);
      // Per request, so they hold for a client the caller built too.
      const requestOptions = {
        signal,
        ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {}),
        ...(options.maxRetries !== undefined ? { maxRetries: options.maxRetries } : {}),
      };
      try {
        if (onDelta && options.stream !== false) return await streamStep(client, body, requestOptions, onDelta, options.timeoutMs);
        const completion = await client.chat.completions.create(Object.assign({}, body, { stream: false as const }), requestOptions);
        return fromCompletion(wire(Completion, completion, 'a response'));
      } catch (error) {
        throw toModelError(error, signal, settings);
      }
    },
  };
}

function fromCompletion(completion: z.output<typeof Completion>): ModelResponse {
  const [choice] = completion.choices;
  return {
    text: choice!.message.content ?? null,
    toolCalls: (choice!.message.tool_calls ?? []).map((call) => ({ id: call.id, name: call.function.name, arguments: call.function.arguments })),
    usage: usageOf(completion.usage),
    finishReason: choice!.finish_reason,
  };
}

type Body = Omit<OpenAI.Chat.ChatCompletionCreateParamsNonStreaming, 'stream'>;

/** One streamed step: text goes to `onDelta` as it arrives; tool calls are put together from their pieces by `index`. */
async function streamStep(
  client: OpenAI,
  body: Body,
  requestOptions: { signal: AbortSignal; timeout?: number; maxRetries?: number },
  onDelta: (delta: ModelDelta) => void,
  idleMs: number | undefined,
): Promise<ModelResponse> {
  const { data: stream, response } = await client.chat.completions
    .create(Object.assign({}, body, { stream: true as const, stream_options: { include_usage: true } }), requestOptions)
    .withResponse();
  const contentType = response.headers.get('content-type') ?? '';
  if (!contentType.includes('text/event-stream')) {
    stream.controller.abort();
    throw failure('contract-violation', `the OpenAI API answered a streaming request with ${contentType || 'no content type'}, not text/event-stream`);
  }

  let text = '';
  let sawText = false;
  let finishReason: string | undefined;
  let usage = usageOf(undefined);
  const calls = new Map<number, { id: string; name: string; arguments: string }>();
  // The SDK's timeout ends once the headers arrive; a stream that goes silent after that is ours to stop.
  let stalled = false;
  let timer: NodeJS.Timeout | undefined;
  const rearm = () => {
    clearTimeout(timer);
    if (idleMs !== undefined) timer = setTimeout(() => ((stalled = true), stream.controller.abort()), idleMs);
  };
  try {
    rearm();
    for await (const raw of stream) {
      rearm();
      const chunk = wire(Chunk, raw, 'a stream chunk');
      if (chunk.usage) usage = usageOf(chunk.usage);
      for (const choice of chunk.choices) {
        if (choice.index !== 0) continue;
        if (choice.finish_reason) finishReason = choice.finish_reason;
        const content = choice.delta?.content;
        if (content) {
          text += content;
          sawText = true;
          try {
            onDelta({ text: content });
          } catch (error) {
            // Leaving the loop by a throw makes the SDK abort the request.
            throw failure('internal', `the onDelta listener threw: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
          }
        }
        for (const piece of choice.delta?.tool_calls ?? []) {
          const call = calls.get(piece.index) ?? { id: '', name: '', arguments: '' };
          if (piece.id) call.id = piece.id;
          if (piece.function?.name) call.name = piece.function.name;
          call.arguments += piece.function?.arguments ?? '';
          calls.set(piece.index, call);
        }
      }
    }
  } catch (error) {
    if (isRunchartError(error) || error instanceof APIError || error instanceof SyntaxError || requestOptions.signal.aborted) throw error;
    const cause = (error as Error).cause instanceof Error ? `: ${((error as Error).cause as Error).message}` : '';
    throw failure('upstream', `the response stream from the OpenAI API broke off before the model finished (${(error as Error).message}${cause})`, {
      cause: error,
      retryable: true,
    });
  } finally {
    clearTimeout(timer);
  }
  // The SDK ends the iteration quietly when the request is aborted, so the reason is checked here.
  if (requestOptions.signal.aborted) throw requestOptions.signal.reason;
  if (stalled) throw failure('timeout', `the response stream from the OpenAI API sent nothing for ${idleMs} ms`, { retryable: true });
  if (!finishReason) {
    throw failure('upstream', 'the response stream from the OpenAI API ended before the model finished (no finish_reason)', { retryable: true });
  }
  const toolCalls: ToolCall[] = [...calls.entries()]
    .sort(([a], [b]) => a - b)
    .map(([index, call]) => {
      if (!call.id || !call.name) throw failure('contract-violation', `the OpenAI API streamed tool call ${index} without ${call.id ? 'a name' : 'an id'}`);
      return call;
    });
  return { text: sawText ? text : null, toolCalls, usage, finishReason };
}

/** The body's own error message, shortened; never used for 401, whose message may echo part of the key. */
function apiMessage(error: APIError): string {
  const body = error.error as { message?: unknown } | undefined;
  const message = typeof body?.message === 'string' ? body.message : error.message;
  return message.length > 300 ? `${message.slice(0, 300)}…` : message;
}

function toModelError(error: unknown, signal: AbortSignal, settings: Settings): RunchartError {
  if (signal.aborted || error instanceof APIUserAbortError) {
    return failure('cancelled', 'the call to the OpenAI API was cancelled', { cause: error });
  }
  if (isRunchartError(error)) return error;
  const retries = settings.maxRetries ?? settings.client.maxRetries;
  const after = retries > 0 ? ` after ${retries} ${retries === 1 ? 'retry' : 'retries'}` : '';
  if (error instanceof APIConnectionTimeoutError) {
    const within = `${settings.timeoutMs ?? settings.client.timeout} ms`;
    return failure('timeout', `the OpenAI API did not answer within ${within}${after}`, { cause: error, retryable: true });
  }
  if (error instanceof APIConnectionError) {
    const cause = error.cause instanceof Error ? error.cause.message : error.message;
    return failure('upstream', `could not reach the OpenAI API at ${settings.client.baseURL}${after} (${cause})`, { cause: error, retryable: true });
  }
  if (error instanceof APIError) return statusError(error, after);
  if (error instanceof SyntaxError) {
    return failure('contract-violation', `the OpenAI API sent a body that is not valid JSON (${error.message})`, { cause: error });
  }
  return failure('internal', `the call to the OpenAI API failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

function statusError(error: APIError, after: string): RunchartError {
  const { status } = error;
  const request = error.requestID ? `; request ${error.requestID}` : '';
  if (status === 401) return failure('auth', 'the OpenAI API rejected the key (401); check OPENAI_API_KEY', { cause: error });
  if (status === 403) {
    return failure('auth', `the OpenAI API refused access (403): ${apiMessage(error)}; check OPENAI_API_KEY and its organization or project`, { cause: error });
  }
  if (status === 429) {
    return failure('rate-limited', `the OpenAI API kept rate limiting us (429)${after}: ${apiMessage(error)}${request}`, { cause: error, retryable: true });
  }
  if (status === undefined) {
    return failure('upstream', `the OpenAI API reported an error in the response stream: ${apiMessage(error)}${request}`, { cause: error, retryable: true });
  }
  if (status >= 500 || status === 408 || status === 409) {
    return failure('upstream', `the OpenAI API failed on its side (${status})${after}: ${apiMessage(error)}${request}`, { cause: error, retryable: true });
  }
  return failure('invalid-input', `the OpenAI API rejected the request (${status}): ${apiMessage(error)}`, { cause: error });
}

/**
 * The model the environment asks for: the OpenAI adapter when `OPENAI_API_KEY` or `OPENAI_BASE_URL`
 * is set (with `OPENAI_MODEL` as the model, if given), otherwise `fallback()`.
 * @example
 * const model = modelFromEnvironment(process.env, () => demoModel());
 */
export function modelFromEnvironment(env: NodeJS.ProcessEnv = process.env, fallback: () => ModelAdapter): ModelAdapter {
  if (!env.OPENAI_API_KEY && !env.OPENAI_BASE_URL) return fallback();
  return openaiModel({
    apiKey: env.OPENAI_API_KEY || 'not-needed',
    ...(env.OPENAI_BASE_URL ? { baseURL: env.OPENAI_BASE_URL } : {}),
    ...(env.OPENAI_MODEL ? { model: env.OPENAI_MODEL } : {}),
  });
}

/** The Chat Completions body for one step; tools are left out when there are none. */
function bodyFor(request: ModelRequest, model: string | undefined): Body {
  return {
    model: model ?? request.model,
    messages: request.messages.map(toWireMessage),
    ...(request.tools.length ? { tools: request.tools.map(toWireTool) } : {}),
  };
}
