import { z } from 'zod';

/** The snapshot format version this build writes; `readableRun` also reads every earlier one. */
export const SCHEMA_VERSION = 3;

export const RunStatus = z.enum(['running', 'awaiting_approval', 'completed', 'denied', 'failed', 'cancelled']);
export type RunStatus = z.infer<typeof RunStatus>;

const finalStatuses: ReadonlySet<string> = new Set(['completed', 'denied', 'failed', 'cancelled']);

/** True for the statuses a run ends in (it is never resumed from them). */
export function isFinalStatus(status: string): boolean {
  return finalStatuses.has(status);
}

/** One run as stored: identity for listings plus XState's persisted snapshot. */
export const PersistedRun = z.object({
  schemaVersion: z.number().int(),
  runId: z.string(),
  tenantId: z.string(),
  principalId: z.string(),
  status: RunStatus,
  updatedAt: z.number(),
  snapshot: z.unknown(),
});
export type PersistedRun = z.infer<typeof PersistedRun>;

/** A stored run without its snapshot: what a listing shows. */
export const RunSummary = PersistedRun.pick({ runId: true, tenantId: true, principalId: true, status: true, updatedAt: true });
export type RunSummary = z.infer<typeof RunSummary>;

/** The listing fields of a stored run. */
export function summaryOf(run: Pick<PersistedRun, keyof RunSummary>): RunSummary {
  return { runId: run.runId, tenantId: run.tenantId, principalId: run.principalId, status: run.status, updatedAt: run.updatedAt };
}

/**
 * Where runs are kept between steps and across restarts.
 * @example
 * await store.save(run); const again = await store.load(run.runId);
 */
export interface RunStore {
  /**
   * False for a store that nothing outlives (the built-in in-memory one): a step between two
   * resting points could never be restored from it, so the runtime saves a run there only when
   * it parks for approval or ends. Any other store gets every step, for recovery.
   */
  readonly keepsSteps?: boolean;
  save(run: PersistedRun): Promise<void>;
  load(runId: string): Promise<PersistedRun | undefined>;
  /** Runs that are not final: what `runtime.recover()` resumes. */
  listActive(): Promise<PersistedRun[]>;
  /**
   * The tenant's runs, unfinished and finished, without their snapshots. A store may apply the
   * rest of the filter (the runtime applies it again, so one that returns all the tenant's runs is right too).
   */
  list(filter: RunListFilter): Promise<RunSummary[]>;
}

/** Which of a tenant's runs a listing shows, newest first. */
export interface RunListFilter {
  tenantId: string;
  /** Only runs in one of these statuses. */
  status?: RunStatus[];
  limit?: number;
  /** Only runs listed after this one (a cursor: the last run of the page before). */
  after?: { updatedAt: number; runId: string };
}
