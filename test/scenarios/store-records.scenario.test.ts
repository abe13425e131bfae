import { appendFile, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createRuntime, defineCapability, type PolicyRule, type RuntimeOptions } from '../../src/index.js';
import { scriptedModel } from '../../src/testing/index.js';
import { tempDir } from '../support/temp.js';

// A line that is JSON but not a record (`echo null >> .runchart/runs.jsonl`) once made `serve` and
// `runs list` exit with a TypeError naming no file, and `null` in journal.jsonl refused every
// parked approval. Each record is parsed with its schema where it is read: a bad one is skipped,
// reported with its file and line, and kept in the `.corrupt-` copy.

const rules: PolicyRule[] = [
  { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
  { id: 'refunds-need-approval', stage: 'tool', effect: 'require_approval', capabilities: ['payments.*'] },
  { id: 'managers', stage: 'approval', effect: 'allow', principals: ['manager'] },
];

const refund = (calls: unknown[]) =>
  defineCapability({
    name: 'payments.refund',
    version: '1.0.0',
    description: 'Refund an order',
    input: z.object({ orderId: z.string(), amount: z.number() }),
    output: z.object({ refunded: z.number() }),
    effects: 'external',
    handler: async (args) => {
      calls.push(args);
      return { refunded: args.amount };
    },
  });

describe('store files: lines that are JSON but not records', () => {
  const setUp = async () => {
    const dir = await tempDir();
    const calls: unknown[] = [];
    const warnings: string[] = [];
    const options = (model: RuntimeOptions['model']): RuntimeOptions => ({
      capabilities: [refund(calls)],
      model,
      onWarning: (message) => warnings.push(message),
      config: { store: { kind: 'lowdb', dir }, policy: { rules }, telemetry: { emit_structured_events: false } },
    });
    const first = createRuntime(options(scriptedModel([{ text: 'done before' }, { toolCalls: [{ name: 'payments_refund', arguments: { orderId: 'A-1', amount: 20 } }] }])));
    const done = await first.run({ input: 'hello', tenantId: 'acme', principalId: 'clerk' });
    const parked = await first.run({ input: 'refund A-1', tenantId: 'acme', principalId: 'clerk' });
    expect(parked.status).toBe('awaiting_approval');
    await first.drain();
    await first.close();
    return { dir, calls, warnings, options, done, parked };
  };

  it.each([
    ['runs.jsonl', 'null'],
    ['runs.jsonl', '7'],
    ['runs.jsonl', '{"runId":"no-fields"}'],
    ['runs-finished.jsonl', 'null'],
    ['runs-finished.jsonl', '{"runId":"x","tenantId":"acme","status":"completed"}'],
    ['queue.jsonl', '7'],
    ['queue.jsonl', '{"task":null}'],
    ['journal.jsonl', 'null'],
    ['journal.jsonl', '{"put":{"key":"k"}}'],
  ])('skips %s line %j: listing, showing, resuming and approving work, and the line is reported and kept aside', async (file, line) => {
    const { dir, calls, warnings, options, done, parked } = await setUp();
    const lines = (await readFile(join(dir, file), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
    await appendFile(join(dir, file), `${line}\n`);

    const second = createRuntime(options(scriptedModel([{ text: 'Refunded 20.' }])));
    expect((await second.list({ tenantId: 'acme' })).map((run) => run.runId).sort()).toEqual([done.runId, parked.runId].sort());
    expect(await second.get(done.runId, { tenantId: 'acme' })).toMatchObject({ status: 'completed' });
    await second.recover();
    const result = await second.approve(parked.runId, parked.toolCalls[0]!.callId, { principalId: 'manager' });
    expect(result.status).toBe('completed');
    expect(result.toolCalls[0]!.outcome).toMatchObject({ status: 'ok', output: { refunded: 20 } });
    expect(calls).toEqual([{ orderId: 'A-1', amount: 20 }]);
    await second.close();

    const report = warnings.find((message) => message.includes(file));
    expect(report).toMatch(new RegExp(`line ${lines + 1} of .*${file.replace('.', '\\.')} is not a valid record .*skipped; the file as it was is kept as .*\\.corrupt-\\d+`));
    const aside = (await readdir(dir)).find((name) => name.startsWith(`${file}.corrupt-`))!;
    expect(await readFile(join(dir, aside), 'utf8')).toContain(`${line}\n`);
  });
});
