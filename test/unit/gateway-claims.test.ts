import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCapability } from '../../src/catalog/capability.js';
import type { Capability } from '../../src/catalog/contract.js';
import { createCatalog } from '../../src/catalog/registry.js';
import type { ExecuteRequest, ExecutionJournal, JournalClaim, JournalClaimRequest, JournalLease } from '../../src/execution/contract.js';
import { createGateway, createMemoryJournal } from '../../src/execution/gateway.js';
import { RunchartError } from '../../src/errors.js';

/**
 * A claiming journal in memory, with the claim answers scripted by the test: what a journal
 * shared by several processes tells the gateway, without the database.
 */
function claimingJournal(answers: ((request: JournalClaimRequest) => JournalClaim)[]) {
  const inner = createMemoryJournal();
  const claims: JournalClaimRequest[] = [];
  const renewals: JournalLease[] = [];
  const journal: ExecutionJournal = {
    ...inner,
    claim: async (request) => {
      claims.push(request);
      const answer = answers.shift();
      if (!answer) throw new Error('claimed more often than the test expected');
      return answer(request);
    },
    renew: async (lease) => (renewals.push(lease), true),
  };
  return { journal, claims, renewals, entries: inner.entries };
}

const request = (overrides: Partial<ExecuteRequest> = {}): ExecuteRequest => ({
  capability: 'math.add',
  version: '1.0.0',
  arguments: '{"a":2,"b":3}',
  idempotencyKey: 'run-1:c0.0',
  deadline: Date.now() + 60_000,
  runId: 'run-1',
  callId: 'c0.0',
  tenantId: 'acme',
  principalId: 'u',
  ...overrides,
});

function add(handler: () => Promise<number> | number = () => 5, retries: { retries?: number; retryBackoffMs?: number } = {}): { capability: Capability; runs: () => number } {
  let runs = 0;
  const capability = defineCapability({
    name: 'math.add',
    version: '1.0.0',
    description: 'Add two numbers',
    input: z.object({ a: z.number(), b: z.number() }),
    output: z.number(),
    effects: 'read',
    ...retries,
    handler: () => (runs++, handler()),
  }) as Capability;
  return { capability, runs: () => runs };
}

const signal = new AbortController().signal;

describe('gateway: a journal that claims keys', () => {
  it('claims the key for itself, naming the tenant and the run, then records the attempt and the result as usual', async () => {
    const tool = add();
    const { journal, claims, entries } = claimingJournal([(claim) => ({ status: 'claimed', attempts: 0, deadline: claim.deadline, until: Date.now() + 30_000 })]);
    const gateway = createGateway({ catalog: createCatalog([tool.capability]), journal, owner: 'me', leaseMs: 9_000 });
    const call = request();
    expect(await gateway.execute(call, { signal })).toEqual({ status: 'ok', output: 5 });
    expect(claims).toEqual([{ key: 'run-1:c0.0', tenantId: 'acme', runId: 'run-1', deadline: call.deadline, owner: 'me', leaseMs: 9_000 }]);
    expect(entries.get('run-1:c0.0')).toMatchObject({ state: 'completed', attempts: 1, result: { status: 'ok', output: 5 } });
    expect(tool.runs()).toBe(1);
  });

  it('puts no start of its own for an attempt the claim recorded, and does for each retry after it', async () => {
    let calls = 0;
    const busyOnce = () => {
      if (calls++ === 0) throw new RunchartError('upstream', 'execution', 'execution: busy', { retryable: true });
      return 5;
    };
    const flaky = add(busyOnce, { retries: 1, retryBackoffMs: 1 });
    const { journal, entries } = claimingJournal([(claim) => ({ status: 'claimed', attempts: 0, deadline: claim.deadline, until: Date.now() + 30_000, started: true })]);
    const puts: string[] = [];
    const put = journal.put.bind(journal);
    journal.put = async (entry) => (puts.push(`${entry.state}:${entry.attempts}`), put(entry));
    expect(await createGateway({ catalog: createCatalog([flaky.capability]), journal }).execute(request(), { signal })).toEqual({ status: 'ok', output: 5 });
    expect(flaky.runs()).toBe(2);
    expect(puts).toEqual(['started:2', 'completed:2']);
    expect(entries.get('run-1:c0.0')).toMatchObject({ state: 'completed', attempts: 2 });
  });

  it('answers a call finished elsewhere from the journal, never running it', async () => {
    const tool = add();
    const { journal } = claimingJournal([() => ({ status: 'completed', result: { status: 'ok', output: 42 }, attempts: 1 })]);
    expect(await createGateway({ catalog: createCatalog([tool.capability]), journal }).execute(request(), { signal })).toEqual({ status: 'ok', output: 42 });
    expect(tool.runs()).toBe(0);
  });

  it('waits while another owner holds the call, and uses its result once it is finished', async () => {
    const tool = add();
    const { journal, claims } = claimingJournal([
      () => ({ status: 'held', owner: 'other', until: Date.now() + 30_000, retryInMs: 30_000 }),
      () => ({ status: 'held', owner: 'other', until: Date.now() + 30_000, retryInMs: 30_000 }),
      () => ({ status: 'completed', result: { status: 'ok', output: 7 }, attempts: 1 }),
    ]);
    const gateway = createGateway({ catalog: createCatalog([tool.capability]), journal, claimPollMs: 1 });
    expect(await gateway.execute(request(), { signal })).toEqual({ status: 'ok', output: 7 });
    expect(claims).toHaveLength(3);
    expect(tool.runs()).toBe(0);
  });

  it('takes a call over with the attempts and the deadline the crashed owner recorded', async () => {
    const tool = add();
    const deadline = Date.now() + 5_000;
    const { journal, entries } = claimingJournal([() => ({ status: 'claimed', attempts: 2, deadline, until: Date.now() + 30_000 })]);
    await createGateway({ catalog: createCatalog([tool.capability]), journal }).execute(request({ deadline: Date.now() + 60_000 }), { signal });
    expect(entries.get('run-1:c0.0')).toMatchObject({ state: 'completed', attempts: 3, deadline });
  });

  it('gives up waiting once the call\'s deadline passes, recording nothing for a call it does not own', async () => {
    const tool = add();
    const { journal, entries } = claimingJournal([() => ({ status: 'held', owner: 'other', until: Date.now() + 30_000, retryInMs: 30_000 })]);
    const result = await createGateway({ catalog: createCatalog([tool.capability]), journal }).execute(request({ deadline: Date.now() - 1 }), { signal });
    expect(result).toEqual({ status: 'error', error: { kind: 'timeout', message: 'execution: "math.add" is being run by other, and the call\'s deadline passed before it finished', retryable: false } });
    expect(entries.has('run-1:c0.0')).toBe(false);
  });

  it('renews its lease while a call runs longer than a third of it', async () => {
    let finish!: (value: number) => void;
    const tool = add(() => new Promise<number>((resolve) => (finish = resolve)));
    const { journal, renewals } = claimingJournal([(claim) => ({ status: 'claimed', attempts: 0, deadline: claim.deadline, until: Date.now() + 30 })]);
    const result = createGateway({ catalog: createCatalog([tool.capability]), journal, owner: 'me', leaseMs: 30 }).execute(request(), { signal });
    await expect.poll(() => renewals.length).toBeGreaterThan(1);
    finish(5);
    expect(await result).toEqual({ status: 'ok', output: 5 });
    expect(renewals[0]).toEqual({ key: 'run-1:c0.0', tenantId: 'acme', owner: 'me', leaseMs: 30 });
    const after = renewals.length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(renewals.length).toBe(after);
  });

  it('claims nothing for a call that cannot run (bad arguments, unknown capability), so nobody waits out a lease for it', async () => {
    const tool = add();
    const { journal, claims } = claimingJournal([]);
    const gateway = createGateway({ catalog: createCatalog([tool.capability]), journal });
    expect(await gateway.execute(request({ arguments: '{"a":"two"}' }), { signal })).toMatchObject({ status: 'error', error: { kind: 'invalid-input' } });
    expect(await gateway.execute(request({ capability: 'math.nope' }), { signal })).toMatchObject({ status: 'error', error: { kind: 'invalid-input', message: 'execution: no capability named "math.nope@1.0.0"' } });
    expect(claims).toEqual([]);
  });
});
