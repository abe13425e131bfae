import { z } from 'zod';
import type { StoreDirectory } from '../store/directory.js';

/** Idempotency keys of started runs (`Idempotency-Key` on `POST /v1/runs`): the first run for a key is the one every repeat gets. */
export interface IdempotencyKeys {
  /** Records `runId` under the tenant's key unless one is there; returns the run already recorded, or undefined when this one was. */
  claim(tenantId: string, key: string, runId: string): Promise<string | undefined>;
}

/**
 * Keys in memory, the newest `keep` of them (the in-memory store, where nothing outlives the process anyway).
 * @example
 * const keys = createInMemoryIdempotencyKeys();
 * await keys.claim('acme', 'order-17', runId); // undefined: recorded
 */
export function createInMemoryIdempotencyKeys(keep = 100_000): IdempotencyKeys {
  const runs = new Map<string, string>();
  return {
    async claim(tenantId, key, runId) {
      const id = JSON.stringify([tenantId, key]);
      const existing = runs.get(id);
      if (existing !== undefined) return existing;
      runs.set(id, runId);
      if (runs.size > keep) runs.delete(runs.keys().next().value!);
      return undefined;
    },
  };
}

const KeyLine = z.strictObject({ tenantId: z.string(), key: z.string(), runId: z.string() });

/**
 * Keys in `idempotency-keys.jsonl` of the store directory, one line per key, read once at open;
 * claims are applied in the order they are made, so two requests with one key start one run.
 * @example
 * const keys = await createFileIdempotencyKeys(directory);
 */
export async function createFileIdempotencyKeys(directory: StoreDirectory): Promise<IdempotencyKeys> {
  const runs = new Map<string, string>();
  const idOf = (tenantId: string, key: string) => JSON.stringify([tenantId, key]);
  const log = await directory.openLog('idempotency-keys.jsonl', (line: z.infer<typeof KeyLine>) => void runs.set(idOf(line.tenantId, line.key), line.runId), { schema: KeyLine });
  return {
    async claim(tenantId, key, runId) {
      const id = idOf(tenantId, key);
      const existing = runs.get(id);
      if (existing !== undefined) return existing;
      // Taken before the write: a second claim while this one is being written gets this run.
      runs.set(id, runId);
      try {
        await log.append({ tenantId, key, runId });
      } catch (error) {
        if (runs.get(id) === runId) runs.delete(id);
        throw error;
      }
      return undefined;
    },
  };
}
