import { z } from 'zod';

/** A tool call as the model made it; `arguments` is the model's raw JSON text. */
export const ToolCall = z.object({
  id: z.string().min(1),
  name: z.string(),
  arguments: z.string(),
  /** Set when the arguments were cut to fit `limits.max_tool_argument_chars`: how long the model's were. The call is refused. */
  argumentsChars: z.number().int().optional(),
});
export type ToolCall = z.infer<typeof ToolCall>;

export const ChatMessage = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: z.string() }),
  z.object({ role: z.literal('user'), content: z.string() }),
  z.object({ role: z.literal('assistant'), content: z.string().nullable(), toolCalls: z.array(ToolCall).optional() }),
  z.object({ role: z.literal('tool'), toolCallId: z.string(), content: z.string() }),
]);
export type ChatMessage = z.infer<typeof ChatMessage>;

/** A tool as the model sees it: the derived name and the JSON Schema of the input. */
export const ToolSpec = z.object({
  name: z.string(),
  description: z.string(),
  parameters: z.record(z.string(), z.unknown()),
});
export type ToolSpec = z.infer<typeof ToolSpec>;

export const ModelRequest = z.object({ model: z.string(), messages: z.array(ChatMessage), tools: z.array(ToolSpec) });
export type ModelRequest = z.infer<typeof ModelRequest>;

export const Usage = z.object({ inputTokens: z.number().int().min(0), outputTokens: z.number().int().min(0) });
export type Usage = z.infer<typeof Usage>;

/** One model step: a text, tool calls, or both. */
export const ModelResponse = z.object({
  text: z.string().nullable(),
  toolCalls: z.array(ToolCall),
  usage: Usage,
  finishReason: z.string(),
});
export type ModelResponse = z.infer<typeof ModelResponse>;

/** A piece of streamed output: text as it arrives. */
export interface ModelDelta {
  text: string;
}

/** What `step` gets besides the request: the signal to honour and, when someone listens, where to stream text. */
export interface ModelStepOptions {
  signal: AbortSignal;
  /** Called with each piece of text as it streams; an adapter that cannot stream never calls it. */
  onDelta?: (delta: ModelDelta) => void;
}

/**
 * Any object with a name and a `step` is a model: the OpenAI adapter and the scripted model are two.
 * @example
 * const echo: ModelAdapter = { name: 'echo', step: async ({ messages }) =>
 *   ({ text: String(messages.at(-1)?.content), toolCalls: [], usage: { inputTokens: 0, outputTokens: 0 }, finishReason: 'stop' }) };
 */
export interface ModelAdapter {
  readonly name: string;
  step(request: ModelRequest, options: ModelStepOptions): Promise<ModelResponse>;
}
