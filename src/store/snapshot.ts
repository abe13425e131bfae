import type { AnyActorRef, AnyMachineSnapshot } from 'xstate';

/**
 * What `actor.getPersistedSnapshot()` returns for a run, without its walk of the whole context.
 * XState looks through every object in a context for actor references on each call (a run's
 * context holds the pinned capabilities' schemas, the messages, the decisions); a run's context
 * is plain JSON by design and never holds one, so it is kept as it is (on the hot path; see
 * bench/README.md).
 * The format is XState's, key for key: a test compares the two at every step of every kind of
 * run, so a key a new XState adds, or a change of order, fails there.
 */
export function persistedSnapshotOf(snapshot: AnyMachineSnapshot): Record<string, unknown> {
  const children: Record<string, unknown> = {};
  for (const id in snapshot.children) {
    const child = snapshot.children[id] as AnyActorRef & { systemId?: string; _syncSnapshot?: boolean };
    children[id] = { snapshot: child.getPersistedSnapshot(), src: child.src, systemId: child.systemId, syncSnapshot: child._syncSnapshot };
  }
  return {
    status: snapshot.status,
    output: snapshot.output,
    error: snapshot.error,
    value: snapshot.value,
    historyValue: historyOf(snapshot.historyValue),
    context: snapshot.context,
    children,
  };
}

/** XState's form of the history value: the ids of the remembered state nodes. */
function historyOf(historyValue: unknown): Record<string, { id: string }[]> {
  const result: Record<string, { id: string }[]> = {};
  if (typeof historyValue !== 'object' || historyValue === null) return result;
  for (const [key, nodes] of Object.entries(historyValue)) if (Array.isArray(nodes)) result[key] = nodes.map((node: { id: string }) => ({ id: node.id }));
  return result;
}
