import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * What a running `runchart serve` leaves in its store directory, as `server.json` (mode 0600):
 * where it listens and a local operator token, so that `runchart approve` / `reject` reach the
 * process that holds the store instead of failing on its lock.
 */
export interface ServerRecord {
  pid: number;
  host: string;
  url: string;
  token: string;
  since: string;
}

const fileIn = (storeDir: string) => join(resolve(storeDir), 'server.json');

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A new operator token: what the server accepts from the store's owner (see `createHttpIngress`'s `operatorToken`). */
export const newOperatorToken = () => `rco_${randomBytes(24).toString('base64url')}`;

/** Writes `server.json` for this process; `remove()` deletes it again if it is still this process's. */
export function recordServer(storeDir: string, url: string, token: string): { remove(): void } {
  const record: ServerRecord = { pid: process.pid, host: hostname(), url, token, since: new Date().toISOString() };
  const path = fileIn(storeDir);
  writeFileSync(path, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  // An older file keeps its mode on overwrite: the token is for the store's owner only.
  chmodSync(path, 0o600);
  return {
    remove() {
      if (runningServer(storeDir, { includeSelf: true })?.token === record.token) rmSync(path, { force: true });
    },
  };
}

/** The server recorded in the store directory, when it is alive on this host. */
export function runningServer(storeDir: string, options: { includeSelf?: boolean } = {}): ServerRecord | undefined {
  let record: ServerRecord;
  try {
    record = JSON.parse(readFileSync(fileIn(storeDir), 'utf8')) as ServerRecord;
  } catch {
    return undefined;
  }
  if (typeof record?.url !== 'string' || typeof record.token !== 'string' || typeof record.pid !== 'number') return undefined;
  if (record.host !== hostname() || !isAlive(record.pid)) return undefined;
  if (record.pid === process.pid && !options.includeSelf) return undefined;
  return record;
}

/** What the server answered to an approval or rejection. */
export type ReviewAnswer = { ok: true; result: unknown } | { ok: false; status: number; kind: string; message: string };

/** Sends an approval or rejection to the running server, as the operator acting for `principalId` of `tenantId`. */
export async function reviewThroughServer(
  server: ServerRecord,
  review: { decision: 'approve' | 'reject'; runId: string; callId: string; principalId: string; tenantId: string; reason?: string },
): Promise<ReviewAnswer> {
  const url = `${server.url}/v1/runs/${encodeURIComponent(review.runId)}/approvals/${encodeURIComponent(review.callId)}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${server.token}`,
        'content-type': 'application/json',
        'x-runchart-tenant': review.tenantId,
        'x-runchart-principal': review.principalId,
      },
      body: JSON.stringify({ decision: review.decision, ...(review.reason ? { reason: review.reason } : {}) }),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
    return { ok: false, status: 0, kind: 'unavailable', message: `cannot reach the runchart server at ${server.url} (process ${server.pid}) that holds the store (${cause})` };
  }
  const body = (await response.json().catch(() => ({}))) as { error?: { kind?: string; message?: string } };
  if (response.ok) return { ok: true, result: body };
  return { ok: false, status: response.status, kind: body.error?.kind ?? 'internal', message: body.error?.message ?? `the server answered ${response.status}` };
}
