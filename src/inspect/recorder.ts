import { appendFile, mkdir, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import type { InspectionEvent } from 'xstate';
import { z } from 'zod';
import { RunchartError } from '../errors.js';
import { createRedactor } from '../redaction.js';

/** One line of a recording: a Stately inspection protocol event, the run it belongs to, and when XState emitted it. */
export const RecordedEvent = z.looseObject({
  type: z.enum(['@xstate.actor', '@xstate.event', '@xstate.snapshot']),
  /** Milliseconds since the epoch, taken (with the recorder's `now`) when XState emitted the event. */
  timestamp: z.number(),
  runId: z.string(),
  sessionId: z.string(),
  rootId: z.string().optional(),
  createdAt: z.string(),
  _version: z.string(),
});
export type RecordedEvent = z.infer<typeof RecordedEvent> & Omit<StatelyInspectionEvent, 'rootId'>;

/** Where and how a recorder writes. */
export interface RunRecorderOptions {
  /** The store directory; recordings go to `<dir>/inspect/<runId>.jsonl`. */
  dir: string;
  /** The clock of the timestamps (the runtime's `clock.now`); defaults to `Date.now`. */
  now?: () => number;
  /** Applied to every event before it is written; defaults to the built-in secret patterns (see `createRedactor`). */
  redact?: <T>(value: T) => T;
  /** Told when a recording cannot be written; a recorder never fails a run. */
  onError?: (message: string, error: unknown) => void;
  /**
   * How many recordings `<dir>/inspect` keeps (the config's `telemetry.keep_recordings`): once a
   * run's recording would pass it, the ones written longest ago are removed. Unset: all are kept.
   */
  keep?: number;
}

/** Records runs for the offline viewer and the Stately inspector. */
export interface RunRecorder {
  /** The XState inspection observer: pass it as `createRuntime({ inspect })` (or to `createActor`). */
  inspect: (event: InspectionEvent) => void;
  /** Resolves once every event seen so far is on disk: call it after `runtime.drain()`. */
  flush(): Promise<void>;
}

const recorded = new Set(['@xstate.actor', '@xstate.event', '@xstate.snapshot']);

/** JSON for anything XState hands us: snapshots through their `toJSON`, errors with their message, no functions. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return Object.assign({}, value, { name: value.name, message: value.message });
  if (typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (typeof value === 'bigint') return value.toString();
  return value;
}
const plain = <T>(value: T): T => (value === undefined ? value : (JSON.parse(JSON.stringify(value, replacer)) as T));

type Inspected = { sessionId: string; _parent?: Inspected; options?: { input?: { runId?: unknown }; snapshot?: { context?: { runId?: unknown } } }; getSnapshot?: () => { context?: { runId?: unknown } } };

/** The run id of a run actor: from its input when it starts, from its snapshot when it is restored. */
function runIdOf(actorRef: Inspected): string | undefined {
  const runId = actorRef.options?.input?.runId ?? actorRef.options?.snapshot?.context?.runId;
  return typeof runId === 'string' ? runId : undefined;
}

/**
 * The run an actor belongs to: the run itself (a child of the runtime's actor, or a root of its own
 * when spawned alone), or the run above a layer call. The runtime's actor belongs to none.
 */
function runActorOf(actorRef: Inspected): Inspected | undefined {
  let run: Inspected | undefined;
  for (let actor: Inspected | undefined = actorRef; actor; actor = actor._parent) if (runIdOf(actor) !== undefined) run = actor;
  return run;
}

/**
 * Records each run's inspection events as JSONL in the Stately inspection protocol
 * (`@xstate.actor`, `@xstate.event`, `@xstate.snapshot`, converted by `@statelyai/inspect`),
 * one file per run at `<dir>/inspect/<runId>.jsonl`: the run and the actor of each layer call it
 * makes (the runtime's actor, which spawns every run, is in none). A run restored in another
 * process appends to its file.
 * @example
 * const recorder = createRunRecorder({ dir: '.runchart' });
 * const runtime = createRuntime({ inspect: recorder.inspect });
 * await runtime.run(request); await runtime.drain(); await recorder.flush();
 */
export function createRunRecorder(options: RunRecorderOptions): RunRecorder {
  const now = options.now ?? Date.now;
  const redact = options.redact ?? createRedactor([]);
  const onError = options.onError ?? (() => {});
  const folder = join(options.dir, 'inspect');
  /** Run actor session id → run id, while the run is live. */
  const runOfSession = new Map<string, string>();
  /**
   * The inspector converts each event on a timer, one timer per event, in the order given.
   * This queue holds what only the moment of emission knows (the time, the run), in the same order.
   */
  const emitted: { timestamp: number; runId: string }[] = [];
  const buffers = new Map<string, string[]>();
  let writing: Promise<void> = Promise.resolve();
  let scheduled = false;
  let madeFolder = false;
  /** With `keep`: the recordings in the folder, the one written longest ago first (read from the folder once). */
  let kept: Map<string, true> | undefined;

  const inspector = createInspector(
    {
      send(event) {
        try {
          receive(event);
        } catch (error) {
          onError('inspect: an inspection event could not be recorded', error);
        }
      },
    },
    // The run's context is plain JSON of moderate depth; keep all of it.
    { serializationDepthLimit: 64 },
  );

  function receive(event: StatelyInspectionEvent) {
    const meta = emitted.shift();
    if (!meta) return;
    const line = redact(plain({ timestamp: meta.timestamp, runId: meta.runId, ...event, createdAt: String(meta.timestamp) }));
    const buffer = buffers.get(meta.runId);
    if (buffer) buffer.push(JSON.stringify(line));
    else buffers.set(meta.runId, [JSON.stringify(line)]);
    if (!scheduled) {
      scheduled = true;
      writing = writing.then(write);
    }
  }

  async function write() {
    scheduled = false;
    const batches = [...buffers].map(([runId, lines]) => [runId, lines.splice(0)] as const);
    buffers.clear();
    try {
      if (!madeFolder) await mkdir(folder, { recursive: true });
      madeFolder = true;
    } catch (error) {
      return onError(`inspect: cannot create ${folder}`, error);
    }
    for (const [runId, lines] of batches) {
      const path = join(folder, `${runId}.jsonl`);
      await appendFile(path, `${lines.join('\n')}\n`).catch((error: unknown) => onError(`inspect: cannot write ${path}`, error));
    }
    if (options.keep !== undefined) await prune(batches.map(([runId]) => `${runId}.jsonl`), options.keep);
  }

  /** Moves the recordings just written to the newest end, and removes the oldest beyond `keep`. */
  async function prune(written: string[], keep: number) {
    kept ??= await recordingsByAge(folder);
    for (const name of written) {
      kept.delete(name);
      kept.set(name, true);
    }
    while (kept.size > keep) {
      const oldest = kept.keys().next().value!;
      kept.delete(oldest);
      await unlink(join(folder, oldest)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') onError(`inspect: cannot remove the old recording ${join(folder, oldest)}`, error);
      });
    }
  }

  return {
    inspect(event) {
      if (!recorded.has(event.type)) return;
      const run = runActorOf(event.actorRef as unknown as Inspected);
      if (!run) return; // the runtime's own actor, or an actor system that is not a run
      let runId = runOfSession.get(run.sessionId);
      if (runId === undefined) runOfSession.set(run.sessionId, (runId = runIdOf(run)!));
      if (event.type === '@xstate.snapshot' && event.actorRef === (run as unknown) && event.snapshot.status !== 'active') {
        // The run's last events (its children stopping) follow in the same synchronous step; then forget it.
        queueMicrotask(() => runOfSession.delete(run.sessionId));
      }
      emitted.push({ timestamp: now(), runId });
      // Errors in snapshots and events keep their message: the inspector's own serializer would drop it.
      const forwarded =
        event.type === '@xstate.snapshot'
          ? Object.assign({}, event, { snapshot: plain(event.snapshot) })
          : event.type === '@xstate.event'
            ? Object.assign({}, event, { event: plain(event.event) })
            : event;
      inspector.inspect.next?.(forwarded as InspectionEvent);
    },
    async flush() {
      // Wait for the inspector's timers to convert what was emitted, then for the writes.
      const giveUp = Date.now() + 10_000;
      while (emitted.length > 0) {
        if (Date.now() > giveUp) {
          onError(`inspect: ${emitted.length} inspection events were never converted; the recordings may be incomplete`, undefined);
          emitted.length = 0;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      await writing;
      if (buffers.size > 0) await (writing = writing.then(write));
    },
  };
}

/** The recordings in `folder`, the one modified longest ago first. */
async function recordingsByAge(folder: string): Promise<Map<string, true>> {
  const names = (await readdir(folder).catch(() => [] as string[])).filter((name) => name.endsWith('.jsonl'));
  const dated = await Promise.all(names.map(async (name) => ({ name, at: await stat(join(folder, name)).then((entry) => entry.mtimeMs, () => 0) })));
  dated.sort((a, b) => a.at - b.at || (a.name < b.name ? -1 : 1));
  return new Map(dated.map(({ name }) => [name, true]));
}

/** Parses a recording's JSONL text; `source` names it in errors. */
export function parseRecording(text: string, source = 'recording'): RecordedEvent[] {
  const events: RecordedEvent[] = [];
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new RunchartError('invalid-input', 'telemetry', `inspect: line ${index + 1} of ${source} is not JSON`, { cause: error });
    }
    const parsed = RecordedEvent.safeParse(value);
    if (!parsed.success) {
      throw new RunchartError('invalid-input', 'telemetry', `inspect: line ${index + 1} of ${source} is not an inspection event: ${parsed.error.issues[0]?.message}`, {
        cause: parsed.error,
      });
    }
    events.push(parsed.data as RecordedEvent);
  });
  return events;
}

/**
 * Reads one run's recording back.
 * @example
 * const events = await readRecording('.runchart/inspect/<runId>.jsonl');
 */
export async function readRecording(path: string): Promise<RecordedEvent[]> {
  return parseRecording(await readFile(path, 'utf8'), path);
}
