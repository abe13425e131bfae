import { PROTOCOL_VERSION } from './protocol.js';
import { RecordedEvent } from './recorder.js';
import { isOutputAllowed, withholdModelText } from './withhold.js';

/** A run as the run store keeps it: enough to draw it when its recording falls short. */
export interface StoredRun {
  runId: string;
  updatedAt: number;
  snapshot: { value: unknown; context: { decisions?: unknown[] } & Record<string, unknown> };
}

/** A recording made whole for the viewer, and what was missing from it. */
export interface CompletedRecording {
  /** JSONL the viewer reads: the readable lines of the recording, then the stored run when needed. */
  text: string;
  /** Null when the recording reached the stored run; otherwise the note the viewer shows. */
  note: string | null;
}

type Line = RecordedEvent & { parentId?: string; snapshot?: { value?: unknown; context?: { decisions?: unknown[] } } };

/**
 * Completes a run's recording from its stored snapshot: a recording that is missing, has torn or
 * unreadable lines (a process killed while writing), or never reached the state the store holds
 * gets the stored run appended as its last snapshot (model text withheld unless the output check
 * allowed it), with a note saying the recording was incomplete.
 * @example
 * const { text, note } = completeRecording(await readFile(path, 'utf8').catch(() => ''), storedRun);
 */
export function completeRecording(recording: string, stored: StoredRun): CompletedRecording {
  const lines: Line[] = [];
  let unreadable = 0;
  for (const text of recording.split('\n')) {
    if (text.trim() === '') continue;
    try {
      const parsed = RecordedEvent.safeParse(JSON.parse(text));
      if (parsed.success) lines.push(parsed.data as Line);
      else unreadable++;
    } catch {
      unreadable++;
    }
  }
  const sessions = new Set(lines.map((line) => line.sessionId));
  // The run actors: their parent (the runtime's actor) is in no recording.
  const runs = lines.filter((line) => line.type === '@xstate.actor' && (line.parentId === undefined || !sessions.has(line.parentId)));
  const decisions = stored.snapshot.context.decisions?.length ?? 0;
  const reached = lines.some(
    (line) =>
      line.type === '@xstate.snapshot' &&
      JSON.stringify(line.snapshot?.value) === JSON.stringify(stored.snapshot.value) &&
      (line.snapshot?.context?.decisions?.length ?? 0) === decisions,
  );
  if (reached && unreadable === 0) return { text: recording, note: null };

  const why = lines.length === 0 ? 'there is no recording of it' : reached ? `${unreadable} line${unreadable === 1 ? '' : 's'} of its recording could not be read` : 'its recording ends before the state the store holds';
  const note = `The recording of this run is incomplete (${why}); the last state, context and decisions shown come from the run's stored snapshot.`;
  const at = Math.max(stored.updatedAt, ...lines.map((line) => line.timestamp));
  const sessionId = runs.at(-1)?.sessionId ?? `stored:${stored.runId}`;
  const base = { runId: stored.runId, sessionId, rootId: sessionId, id: null, _version: PROTOCOL_VERSION, timestamp: at, createdAt: String(at) };
  const added: object[] = [];
  if (runs.length === 0) added.push(Object.assign({ type: '@xstate.actor', name: stored.runId, snapshot: { status: 'active' } }, base));
  const snapshot = structuredClone(stored.snapshot);
  added.push(
    Object.assign(
      { type: '@xstate.snapshot', event: { type: 'runchart.stored' }, snapshot: isOutputAllowed(snapshot.context) ? snapshot : withholdModelText(snapshot), note },
      base,
    ),
  );
  const text = [...lines, ...added].map((line) => JSON.stringify(line)).join('\n');
  return { text: `${text}\n`, note };
}
