import { appendFileSync, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StatelyInspectionEvent } from '@statelyai/inspect';
import type { InspectionEvent } from 'xstate';
import { z } from 'zod';
import { RunchartError } from '../errors.js';
import { createRedactor } from '../redaction.js';
import { createProtocolConverter } from './protocol.js';
import { isOutputAllowed, withholdModelText } from './withhold.js';

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
  /** How many bytes of lines may wait to be written before further lines are dropped; defaults to 32 MB. */
  maxQueuedBytes?: number;
}

/** Records runs for the offline viewer and the Stately inspector. */
export interface RunRecorder {
  /** The XState inspection observer: pass it as `createRuntime({ inspect })` (or to `createActor`). */
  inspect: (event: InspectionEvent) => void;
  /** Resolves once every event seen so far is on disk: call it after `runtime.drain()`. */
  flush(): Promise<void>;
}

/** Lines waiting to be written, across all runs, beyond which new lines are dropped (see `createRunRecorder`). */
const DEFAULT_MAX_QUEUED_BYTES = 32 * 1024 * 1024;

/** JSON for anything XState hands us: snapshots through their `toJSON`, errors with their message, no functions. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return Object.assign({}, value, { name: value.name, message: value.message });
  if (typeof value === 'function' || typeof value === 'symbol') return undefined;
  if (typeof value === 'bigint') return value.toString();
  return value;
}
export const plain = <T>(value: T): T => (value === undefined ? value : (JSON.parse(JSON.stringify(value, replacer)) as T));

export type Inspected = { sessionId: string; _parent?: Inspected; options?: { input?: { runId?: unknown }; snapshot?: { context?: { runId?: unknown } } } };

/** The run id of a run actor: from its input when it starts, from its snapshot when it is restored. */
function runIdOf(actorRef: Inspected): string | undefined {
  const runId = actorRef.options?.input?.runId ?? actorRef.options?.snapshot?.context?.runId;
  return typeof runId === 'string' ? runId : undefined;
}

/**
 * The run an actor belongs to: the run itself (a child of the runtime's actor, or a root of its own
 * when spawned alone), or the run above a layer call. The runtime's actor belongs to none.
 */
export function runActorOf(actorRef: Inspected): Inspected | undefined {
  let run: Inspected | undefined;
  for (let actor: Inspected | undefined = actorRef; actor; actor = actor._parent) if (runIdOf(actor) !== undefined) run = actor;
  return run;
}

/** What the recorder knows of a live run actor. */
interface LiveRun {
  runId: string;
  /** The machines whose definition this run's recording has (written once per recording and process). */
  defined: WeakSet<object>;
  /** Set once the run's output check allows: model text is recorded from then on. */
  allowed: boolean;
}

/**
 * Records each run's inspection events as JSONL in the Stately inspection protocol
 * (`@xstate.actor`, `@xstate.event`, `@xstate.snapshot`), one file per run at
 * `<dir>/inspect/<runId>.jsonl`: the run and the actor of each layer call it makes (the runtime's
 * actor, which spawns every run, is in none). A run restored in another process appends to its file.
 *
 * Each event is converted as it is emitted (nothing holds an actor after its event) and appended
 * right after the step that emitted it (one append per file, in a microtask queued by the step's
 * first event), so a step's lines are on disk before the run store writes that step's snapshot,
 * and a killed process loses at most the lines of the step it was in. The run machine's
 * definition is written once per recording. Model text (assistant messages, the answer) is
 * replaced by `WITHHELD` until the run's output check allows it. Past `maxQueuedBytes` (32 MB) of lines waiting at once, the rest are dropped, with
 * one `onError`, rather than held without bound. See docs/recordings.md.
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
  const maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
  const converter = createProtocolConverter();
  /** Run actor → what is known of the run; weak, so a run stopped anywhere (even while active) is forgotten with its actor. */
  const live = new WeakMap<object, LiveRun>();
  /** Lines not written yet, per run, in order. */
  const queued = new Map<string, string[]>();
  let queuedBytes = 0;
  let dropped = 0;
  let pending = false;
  let madeFolder = false;
  /** With `keep`: the recordings in the folder, the one written longest ago first (read from the folder once). */
  let kept: Map<string, true> | undefined;

  function liveRunOf(run: Inspected): LiveRun {
    let found = live.get(run);
    if (!found) {
      const restored = run.options?.snapshot?.context;
      live.set(run, (found = { runId: runIdOf(run)!, defined: new WeakSet(), allowed: isOutputAllowed(restored) }));
    }
    return found;
  }

  function record(event: InspectionEvent) {
    const run = runActorOf(event.actorRef as unknown as Inspected);
    if (!run) return; // the runtime's own actor, or an actor system that is not a run
    const state = liveRunOf(run);
    if (!state.allowed && event.type === '@xstate.snapshot' && event.actorRef === (run as unknown)) {
      state.allowed = isOutputAllowed((event.snapshot as { context?: unknown }).context);
    }
    const converted = converter.convert(event, (logic) => {
      if (state.defined.has(logic)) return false;
      state.defined.add(logic);
      return true;
    });
    if (!converted) return;
    const timestamp = now();
    let line = plain({ timestamp, runId: state.runId, ...converted, createdAt: String(timestamp) });
    if (!state.allowed) line = withholdModelText(line);
    enqueue(state.runId, JSON.stringify(redact(line)));
  }

  function enqueue(runId: string, line: string) {
    if (queuedBytes + line.length > maxQueuedBytes) {
      if (dropped++ === 0) {
        onError(`inspect: more than ${maxQueuedBytes} bytes of recording lines wait for ${folder}; lines are dropped until they are written (runchart runs show <runId> --html builds the page from the stored run)`, undefined);
      }
      return;
    }
    queuedBytes += line.length;
    const lines = queued.get(runId);
    if (lines) lines.push(line);
    else queued.set(runId, [line]);
    if (!pending) {
      pending = true;
      queueMicrotask(write);
    }
  }

  /**
   * Appends what is queued, one append per recording. Synchronous on purpose: the lines reach the
   * file (the page cache) before the store's write of the same step, which is queued after this
   * microtask, and no backlog waits behind the thread pool's other work (the store's syncs).
   */
  function write() {
    pending = false;
    const batches = [...queued];
    queued.clear();
    queuedBytes = 0;
    dropped = 0;
    if (batches.length === 0) return;
    try {
      if (!madeFolder) mkdirSync(folder, { recursive: true });
      madeFolder = true;
    } catch (error) {
      return onError(`inspect: cannot create ${folder}; check that the store directory is writable`, error);
    }
    for (const [runId, lines] of batches) {
      const path = join(folder, `${runId}.jsonl`);
      try {
        appendFileSync(path, `${lines.join('\n')}\n`);
      } catch (error) {
        onError(`inspect: cannot write ${path}`, error);
      }
    }
    if (options.keep !== undefined) prune(batches.map(([runId]) => `${runId}.jsonl`), options.keep);
  }

  /** Moves the recordings just written to the newest end, and removes the oldest beyond `keep`. */
  function prune(written: string[], keep: number) {
    kept ??= recordingsByAge(folder);
    for (const name of written) {
      kept.delete(name);
      kept.set(name, true);
    }
    while (kept.size > keep) {
      const oldest = kept.keys().next().value!;
      kept.delete(oldest);
      try {
        unlinkSync(join(folder, oldest));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') onError(`inspect: cannot remove the old recording ${join(folder, oldest)}`, error);
      }
    }
  }

  return {
    inspect(event) {
      if (event.type !== '@xstate.actor' && event.type !== '@xstate.event' && event.type !== '@xstate.snapshot') return;
      try {
        record(event);
      } catch (error) {
        onError('inspect: an inspection event could not be recorded', error);
      }
    },
    async flush() {
      write();
    },
  };
}

/** The recordings in `folder`, the one modified longest ago first. */
function recordingsByAge(folder: string): Map<string, true> {
  let names: string[] = [];
  try {
    names = readdirSync(folder).filter((name) => name.endsWith('.jsonl'));
  } catch {
    // No folder yet: nothing to keep.
  }
  const modified = (name: string) => {
    try {
      return statSync(join(folder, name)).mtimeMs;
    } catch {
      return 0;
    }
  };
  const dated = names.map((name) => ({ name, at: modified(name) }));
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
