import type { RunStreamEvent } from './stream.js';

/** The run an event belongs to, and whose it is: every read names the tenant. */
export interface RunScope {
  tenantId: string;
  runId: string;
}

/**
 * One event of a run as its listeners hear it, in order. `id` grows within the run (the SSE `id:`
 * line, resumed from with `Last-Event-ID`); `kind` names it: a mark's kind (`state.enter`,
 * `decision`, `tool.call`, …), `delta` (released model text), `settled` (a RunResult: parked or
 * final) or `review` (the outcome of an approval or rejection sent through the inbox).
 */
export interface LoggedRunEvent {
  id: number;
  kind: string;
  data: unknown;
}

/** Where a runtime writes the events of the runs it holds, and where anyone follows a run. */
export interface RunEventLog {
  /** Adds an event to the run's log; written in the order given (by the process holding the run). */
  append(scope: RunScope, kind: string, data: unknown): void;
  /** The run's events after `after` (0: from the start), oldest first. */
  read(scope: RunScope, after: number): Promise<LoggedRunEvent[]>;
  /** Calls `listener` with every event after `after`, those logged already first, then each new one; returns a way to stop. */
  follow(scope: RunScope, after: number, listener: (event: LoggedRunEvent) => void): () => void;
  /** Resolves once every appended event is readable by every process. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** A run's stream event as a logged event's kind and data. */
export function loggedFormOf(event: RunStreamEvent): { kind: string; data: unknown } {
  if (event.type === 'mark') return { kind: event.mark.kind, data: event.mark };
  if (event.type === 'delta') return { kind: 'delta', data: { text: event.text } };
  return { kind: 'settled', data: event.result };
}

/** True when a `settled` event's result is final: a follower of the run hears nothing after it. */
export function endsRun(event: LoggedRunEvent): boolean {
  if (event.kind !== 'settled') return false;
  const status = (event.data as { status?: string }).status;
  return status === 'completed' || status === 'denied' || status === 'failed' || status === 'cancelled';
}

/** Options of `createInMemoryEventLog`. */
export interface InMemoryEventLogOptions {
  /** Events kept per run; past it, the oldest go (a follower resuming before them starts at the oldest kept). */
  maxEventsPerRun?: number;
  /** Runs whose logs are kept; past it, the log written longest ago goes. */
  maxRuns?: number;
}

/**
 * The event log of one process (the file and in-memory stores): bounded in events per run and
 * in runs, so a long-lived server holds what recent listeners need and no more.
 * @example
 * const log = createInMemoryEventLog();
 * const stop = log.follow({ tenantId: 'acme', runId }, 0, (event) => console.log(event.id, event.kind));
 */
export function createInMemoryEventLog(options: InMemoryEventLogOptions = {}): RunEventLog {
  const maxEvents = options.maxEventsPerRun ?? 5_000;
  const maxRuns = options.maxRuns ?? 1_000;
  /** Run id → its log; a Map keeps insertion order, and a run written to moves to the end. */
  const logs = new Map<string, { tenantId: string; next: number; events: LoggedRunEvent[]; followers: Set<(event: LoggedRunEvent) => void> }>();
  const logOf = (scope: RunScope) => {
    const log = logs.get(scope.runId);
    return log && log.tenantId === scope.tenantId ? log : undefined;
  };
  return {
    append(scope, kind, data) {
      let log = logs.get(scope.runId);
      if (log && log.tenantId !== scope.tenantId) return;
      if (log) logs.delete(scope.runId);
      log ??= { tenantId: scope.tenantId, next: 1, events: [], followers: new Set() };
      logs.set(scope.runId, log);
      const event = { id: log.next++, kind, data };
      log.events.push(event);
      if (log.events.length > maxEvents) log.events.splice(0, log.events.length - maxEvents);
      for (const follower of [...log.followers]) follower(event);
      for (const [runId, old] of logs) {
        if (logs.size <= maxRuns) break;
        if (old.followers.size === 0) logs.delete(runId);
      }
    },
    read: async (scope, after) => (logOf(scope)?.events ?? []).filter((event) => event.id > after),
    follow(scope, after, listener) {
      let log = logOf(scope);
      if (!log) {
        if (logs.has(scope.runId)) return () => {};
        // Followed before its first event: the log starts now and the follower is in it.
        log = { tenantId: scope.tenantId, next: 1, events: [], followers: new Set() };
        logs.set(scope.runId, log);
      }
      for (const event of log.events) if (event.id > after) listener(event);
      const followers = log.followers;
      followers.add(listener);
      return () => void followers.delete(listener);
    },
    flush: async () => {},
    close: async () => {
      for (const log of logs.values()) log.followers.clear();
    },
  };
}
