import type { JournalEntry } from './contract.js';

/** The run a journal key belongs to: keys are `runId:callId`, and a call id holds no `:` (a run id may). */
export function runOfKey(key: string): string {
  const at = key.lastIndexOf(':');
  return at < 0 ? key : key.slice(0, at);
}

/** Journal entries by key, grouped by run, so releasing a run touches its own keys and no others. */
export interface JournalEntries {
  readonly size: number;
  get(key: string): JournalEntry | undefined;
  has(key: string): boolean;
  set(entry: JournalEntry): void;
  /** True when the run has entries. */
  holds(runId: string): boolean;
  /** Drops the run's entries. */
  forget(runId: string): void;
  values(): IterableIterator<JournalEntry>;
}

/**
 * An empty set of journal entries.
 * @example
 * const entries = createJournalEntries(); entries.set(entry); entries.forget(runId);
 */
export function createJournalEntries(): JournalEntries {
  const byKey = new Map<string, JournalEntry>();
  const keysByRun = new Map<string, string[]>();
  return {
    get size() {
      return byKey.size;
    },
    get: (key) => byKey.get(key),
    has: (key) => byKey.has(key),
    set(entry) {
      if (!byKey.has(entry.key)) {
        const runId = runOfKey(entry.key);
        const keys = keysByRun.get(runId);
        if (keys) keys.push(entry.key);
        else keysByRun.set(runId, [entry.key]);
      }
      byKey.set(entry.key, entry);
    },
    holds: (runId) => keysByRun.has(runId),
    forget(runId) {
      for (const key of keysByRun.get(runId) ?? []) byKey.delete(key);
      keysByRun.delete(runId);
    },
    values: () => byKey.values(),
  };
}
