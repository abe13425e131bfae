import type { JournalEntry } from './contract.js';

/**
 * The run of an entry written without its `runId` (by an earlier version): keys are `runId:callId`
 * (a tool call) or `runId:callId:approval` (an approval deadline), and a call id holds no `:`,
 * while a run id may.
 */
export function runOfKey(key: string): string {
  const call = key.endsWith(':approval') ? key.slice(0, -':approval'.length) : key;
  const at = call.lastIndexOf(':');
  return at < 0 ? call : call.slice(0, at);
}

/** The run an entry belongs to. */
export const runOfEntry = (entry: JournalEntry): string => entry.runId ?? runOfKey(entry.key);

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
  // long-lived: one per gateway or journal (made once, so its getters cost no run anything; test/unit/object-literals.test.ts)
  return {
    get size() {
      return byKey.size;
    },
    get: (key) => byKey.get(key),
    has: (key) => byKey.has(key),
    set(entry) {
      if (!byKey.has(entry.key)) {
        const runId = runOfEntry(entry);
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
