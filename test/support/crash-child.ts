// A real runtime on lowdb files, run in a child process that the crash tests kill with SIGKILL.
// argv: <storeDir> <mode: start | recover | approve> [pausePoint | runId callId]
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { createRuntime, defineCapability, type ModelAdapter, type RunStore } from '../../src/index.js';
import { openStoreDirectory } from '../../src/store/directory.js';
import { createFileJournal, createFileRunStore } from '../../src/store/files.js';
import type { ExecutionJournal } from '../../src/execution/contract.js';

const [storeDir, mode, ...rest] = process.argv.slice(2) as [string, string, ...string[]];
const pause = mode === 'start' ? rest[0] : undefined;
const effectsLog = join(storeDir, 'effects.log');
const executionsLog = join(storeDir, 'executions.log');
const hooksLog = join(storeDir, 'hooks.log');
const hang = () => new Promise<never>(() => {});
const say = (line: string) => process.stdout.write(`${line}\n`);
let modelEntered = false;
let markCompletedSaved!: () => void;
const completedSaved = new Promise<void>((resolve) => (markCompletedSaved = resolve));

const ledger = defineCapability({
  name: 'ledger.append',
  version: '1.0.0',
  description: 'Append an entry to the ledger (an external effect)',
  input: z.object({ entry: z.string() }),
  output: z.object({ written: z.boolean() }),
  effects: 'write',
  handler: async ({ entry }, { idempotencyKey }) => {
    appendFileSync(executionsLog, `${idempotencyKey}\n`);
    // Idempotent by key: a replay of a call that already wrote does not write again.
    const done = existsSync(effectsLog) && readFileSync(effectsLog, 'utf8').split('\n').includes(`${idempotencyKey} ${entry}`);
    if (!done) appendFileSync(effectsLog, `${idempotencyKey} ${entry}\n`);
    if (pause === 'mid-tool') {
      say('PAUSE mid-tool');
      await hang();
    }
    return { written: !done };
  },
});

/** The model's decisions: ask for the ledger once, then answer. */
const model: ModelAdapter = {
  name: 'crash-test',
  async step({ messages }) {
    modelEntered = true;
    if (pause === 'before-model') await hang();
    const last = messages.at(-1)!;
    if (last.role === 'tool') return { text: `done: ${last.content}`, toolCalls: [], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'stop' };
    return { text: null, toolCalls: [{ id: 'm1', name: 'ledger_append', arguments: '{"entry":"paid"}' }], usage: { inputTokens: 1, outputTokens: 1 }, finishReason: 'tool_calls' };
  },
};

const approval = pause === 'in-approval' || mode === 'approve';
const directory = await openStoreDirectory(storeDir);
const runtime = createRuntime({
  config: {
    store: { kind: 'lowdb', dir: storeDir },
    telemetry: { emit_structured_events: false },
    policy: {
      rules: [
        { id: 'allow-runs', stage: ['precheck', 'output', 'memory.write'], effect: 'allow' },
        { id: 'ledger', stage: 'tool', effect: approval ? 'require_approval' : 'allow', capabilities: ['ledger.*'] },
        { id: 'managers', stage: 'approval', effect: 'allow', principals: ['manager'] },
      ],
    },
  },
  model,
  capabilities: [ledger],
  hooks: {
    audit: async (task) => {
      if (pause === 'in-background') {
        await completedSaved;
        say('PAUSE in-background');
        await hang();
      }
      appendFileSync(hooksLog, `${task.runId}\n`);
    },
  },
  onWarning: (message, error) => process.stderr.write(`warning: ${message} ${error ? String(error) : ''}\n`),
  storeDirectory: directory,
  // Watch saves so that a pause is announced only once the state it names is on disk.
  runStore: await watchedStore(),
  journal: await watchedJournal(),
});

async function watchedJournal(): Promise<ExecutionJournal> {
  const journal = await createFileJournal(directory);
  return {
    get: (key) => journal.get(key),
    async put(entry) {
      await journal.put(entry);
      // After the tool's result is journaled, before the run's snapshot records it.
      if (pause === 'after-tool' && entry.state === 'completed' && !entry.key.endsWith(':approval')) {
        say('PAUSE after-tool');
        await hang();
      }
    },
  };
}

async function watchedStore(): Promise<RunStore> {
  const store = await createFileRunStore(directory);
  return {
    ...store,
    async save(run) {
      await store.save(run);
      const value = JSON.stringify((run.snapshot as { value: unknown }).value);
      if (run.status === 'completed') markCompletedSaved();
      if (pause === 'before-model' && modelEntered && value === '"modelStep"') say('PAUSE before-model');
      if (pause === 'in-approval' && run.status === 'awaiting_approval') {
        const context = (run.snapshot as { context: { calls: { callId: string }[]; cursor: number } }).context;
        say(`PAUSE in-approval ${run.runId} ${context.calls[context.cursor]!.callId}`);
      }
    },
  };
}

if (mode === 'start') {
  const handle = runtime.start({ input: 'pay the invoice', tenantId: 'acme', principalId: 'clerk', sessionId: 's' });
  say(`RUN ${handle.runId}`);
  const result = await handle.result;
  say(`SETTLED ${result.status}`);
  await runtime.drain();
  say('IDLE');
  await hang();
} else if (mode === 'recover') {
  const handles = await runtime.recover();
  const results = await Promise.all(handles.map((handle) => handle.result));
  await runtime.drain();
  say(`RESULT ${JSON.stringify(results.map((result) => ({ runId: result.runId, status: result.status, output: result.output })))}`);
  await runtime.close();
} else if (mode === 'approve') {
  const [runId, callId] = rest as [string, string];
  await runtime.recover();
  const result = await runtime.approve(runId, callId, { principalId: 'manager' });
  await runtime.drain();
  say(`RESULT ${JSON.stringify([{ runId: result.runId, status: result.status, output: result.output }])}`);
  await runtime.close();
}
