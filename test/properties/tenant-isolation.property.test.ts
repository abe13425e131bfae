import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { MemoryLayer } from '../../src/memory/contract.js';
import { createInMemoryMemory } from '../../src/memory/in-memory.js';
import { createLowdbMemory } from '../../src/memory/lowdb.js';
import { openStoreDirectory } from '../../src/store/directory.js';
import { createInMemoryRunStore } from '../../src/store/in-memory.js';
import { createFileRunStore } from '../../src/store/files.js';
import { SCHEMA_VERSION, type RunStore } from '../../src/store/contract.js';
import { tempDir } from '../support/temp.js';

const tenants = ['acme', 'globex', 'initech'];
const principals = ['u1', 'u2'];
const words = ['invoice', 'refund', 'order', 'paris', 'bread', 'colour', 'meeting', 'report'];

/** A write or a read by some tenant and principal, over a shared vocabulary so that queries would match across tenants. */
const operation = fc.record({
  kind: fc.constantFrom('remember', 'recall'),
  tenant: fc.constantFrom(...tenants),
  principal: fc.constantFrom(...principals),
  session: fc.constantFrom('s1', 's2'),
  text: fc.array(fc.constantFrom(...words), { minLength: 1, maxLength: 3 }).map((parts) => parts.join(' ')),
});

const signal = new AbortController().signal;

async function neverCrosses(memory: MemoryLayer, operations: Parameters<typeof operation.filter>[0] extends (value: infer T) => unknown ? T[] : never) {
  let counter = 0;
  for (const step of operations) {
    if (step.kind === 'remember') {
      counter++;
      // Every stored text carries its owner, so a leak is visible in any recalled text.
      await memory.remember(
        {
          tenantId: step.tenant,
          principalId: step.principal,
          sessionId: step.session,
          runId: `r${counter}`,
          input: `${step.text} owner=${step.tenant}/${step.principal}`,
          output: `answer ${step.text} owner=${step.tenant}/${step.principal}`,
          createdAt: new Date(1_700_000_000_000 + counter).toISOString(),
        },
        { idempotencyKey: `r${counter}`, signal },
      );
    } else {
      const result = await memory.recall({ tenantId: step.tenant, principalId: step.principal, sessionId: step.session, query: step.text, limit: 10 }, { signal });
      const owner = `owner=${step.tenant}/${step.principal}`;
      for (const item of result.items) expect(item.text).toContain(owner);
      for (const turn of result.history) expect(turn.content).toContain(owner);
    }
  }
}

describe('tenants are isolated', () => {
  it('in the in-memory memory: no recall returns another tenant’s or principal’s text', async () => {
    await fc.assert(fc.asyncProperty(fc.array(operation, { maxLength: 40 }), (operations) => neverCrosses(createInMemoryMemory(), operations)), { numRuns: 60 });
  });

  it('in the lowdb memory: no recall returns another tenant’s or principal’s text', async () => {
    const dir = await tempDir();
    let round = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { maxLength: 30 }), async (operations) => {
        const directory = await openStoreDirectory(`${dir}/${round++}`);
        try {
          await neverCrosses(await createLowdbMemory(directory), operations);
        } finally {
          directory.close();
        }
      }),
      { numRuns: 25 },
    );
  });

  it('in run listings of both run stores', async () => {
    const dir = await tempDir();
    let round = 0;
    const runs = fc.array(fc.record({ tenant: fc.constantFrom(...tenants), status: fc.constantFrom('running', 'completed', 'awaiting_approval') }), { maxLength: 20 });
    await fc.assert(
      fc.asyncProperty(runs, async (saved) => {
        const directory = await openStoreDirectory(`${dir}/${round++}`);
        try {
          for (const store of [createInMemoryRunStore(), await createFileRunStore(directory)] as RunStore[]) {
            await Promise.all(
              saved.map((run, index) =>
                store.save({ schemaVersion: SCHEMA_VERSION, runId: `run-${index}`, tenantId: run.tenant, principalId: 'p', status: run.status as 'running', updatedAt: index, snapshot: {} }),
              ),
            );
            for (const tenant of tenants) {
              const listed = await store.list({ tenantId: tenant });
              expect(listed.every((run) => run.tenantId === tenant)).toBe(true);
              expect(listed).toHaveLength(saved.filter((run) => run.tenant === tenant).length);
            }
          }
        } finally {
          directory.close();
        }
      }),
      { numRuns: 25 },
    );
  });
});
