// What XState itself costs, apart from runchart: `npm run bench:floor`.
// The figures bound what any chart with this many steps and actors can reach on this machine.
import { assign, createActor, fromCallback, fromPromise, sendTo, setup, toPromise, type AnyActorLogic } from 'xstate';
import { fromLayerCall } from '../actors/layer-call.js';
import { telemetryActor } from '../actors/telemetry.actor.js';
import { noopTelemetry } from '../src/telemetry/contract.js';
import type { AcceptedRequest, ApprovalWaitInput, BackgroundInput, ExecuteResult, ModelResponse, ModelStepInput, PolicyDecision, PolicyRequest, RecallQuery, RecallResult, RunInput, ToolExecutionInput } from '../machines/run/types.js';
import { runMachine } from '../machines/run/machine.js';
import { parseConfig, settingsFrom } from '../src/config.js';
import { aiSdkWorkload } from './ai-sdk.js';
import { runchartWorkload } from './workloads.js';
import { forceGc, median, progress } from './measure.js';

const steps = 11; // the requests of a one-hop run: ingress, precheck, recall, model, tool decision, tool, model, output, memory.write, queue (+1 spare)

/** A chart of `steps` states, each asking a long-lived child and moving on when it answers. */
function eventChart() {
  const states: Record<string, object> = {};
  for (let index = 0; index < steps; index++) {
    states[`s${index}`] = {
      entry: sendTo('service', { type: 'ask' }),
      on: { answer: { target: index + 1 < steps ? `s${index + 1}` : 'done', actions: assign({ count: ({ context }) => context.count + 1 }) } },
    };
  }
  states.done = { type: 'final' };
  const service = fromCallback(({ sendBack, receive }) => receive(() => void Promise.resolve().then(() => sendBack({ type: 'answer' }))));
  return setup({ actors: { service } }).createMachine({
    context: { count: 0 },
    invoke: { id: 'service', src: 'service' },
    initial: 's0',
    states: states as never,
  } as never);
}

/** The same steps with a fresh `fromPromise` actor each. */
function invokeChart() {
  const states: Record<string, object> = {};
  for (let index = 0; index < steps; index++) {
    states[`s${index}`] = {
      invoke: { src: 'step', onDone: { target: index + 1 < steps ? `s${index + 1}` : 'done', actions: assign({ count: ({ context }) => context.count + 1 }) } },
    };
  }
  states.done = { type: 'final' };
  return setup({ actors: { step: fromPromise(async () => 1) } }).createMachine({ context: { count: 0 }, initial: 's0', states: states as never } as never);
}

/**
 * The run chart itself on the one-hop run, with every layer call answering at once and telemetry
 * recording nothing: what XState spends on runchart's states, invokes and actions before any layer works.
 */
function bareRunChart() {
  const allow = { verdict: 'allow' as const, ruleId: 'allow', reason: 'allowed' };
  const capabilities = [{ name: 'math.add', version: '1.0.0', toolName: 'math_add', description: 'Add two numbers', effects: 'read' as const, parameters: {} }];
  const usage = { inputTokens: 1, outputTokens: 1 };
  const machine = runMachine.provide({
    actors: {
      acceptRequest: fromLayerCall<AcceptedRequest, RunInput>(async () => ({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', tenantId: 'acme', principalId: 'user-7', input: 'what is 2+3?', capabilities })),
      evaluatePolicy: fromLayerCall<PolicyDecision, PolicyRequest>(async () => allow),
      recallMemory: fromLayerCall<RecallResult, RecallQuery>(async () => ({ items: [], history: [] })),
      callModel: fromLayerCall<ModelResponse, ModelStepInput>(async ({ input }) =>
        input.messages.at(-1)?.role === 'user'
          ? { text: null, toolCalls: [{ id: 'call_1', name: 'math_add', arguments: '{"a":2,"b":3}' }], usage, finishReason: 'tool_calls' }
          : { text: '2 + 3 = 5', toolCalls: [], usage, finishReason: 'stop' },
      ),
      executeTool: fromLayerCall<ExecuteResult, ToolExecutionInput>(async () => ({ status: 'ok', output: 5 })),
      enqueueBackground: fromLayerCall<void, BackgroundInput>(async () => {}),
      awaitApproval: fromLayerCall<void, ApprovalWaitInput>(async () => {}),
      recordTelemetry: telemetryActor(noopTelemetry, { now: Date.now }),
    },
  });
  const settings = settingsFrom(parseConfig({}));
  let index = 0;
  return async () => {
    const actor = createActor(machine, { input: { runId: `run-${index++}`, request: {}, settings } }).start();
    await toPromise(actor);
    if (actor.getSnapshot().value !== 'completed') throw new Error(`bench: the bare run chart ended in ${JSON.stringify(actor.getSnapshot().value)}`);
  };
}

async function p50(run: () => Promise<unknown>, warmup = 2_000, measured = 10_000): Promise<number> {
  for (let index = 0; index < warmup; index++) await run();
  const times: number[] = [];
  for (let index = 0; index < measured; index++) {
    const started = performance.now();
    await run();
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]! * 1000;
}

function assignCost(keys: number): number {
  let context: Record<string, number> = {};
  for (let index = 0; index < keys; index++) context[`key${index}`] = index;
  const rounds = 200_000;
  const started = performance.now();
  // What XState's assign does to the context on every update.
  for (let index = 0; index < rounds; index++) context = Object.assign({}, context, { key1: index });
  return ((performance.now() - started) * 1000) / rounds;
}

/** Microseconds to create, start and stop an idle root actor with `children` long-lived children. */
async function startCost(children: number): Promise<number> {
  const child = fromCallback(() => () => {});
  const machine = setup({ actors: { child } }).createMachine({
    context: {},
    invoke: Array.from({ length: children }, (_, index) => ({ id: `child${index}`, src: 'child' })),
    initial: 'waiting',
    states: { waiting: {} },
  } as never);
  return p50(async () => createActor(machine as AnyActorLogic).start().stop());
}

async function heapPerActor(children: number): Promise<number> {
  const child = fromCallback(() => () => {});
  const pending = fromPromise(() => new Promise<never>(() => {}));
  const machine = setup({ actors: { child, pending } }).createMachine({
    context: {},
    invoke: Array.from({ length: children }, (_, index) => ({ id: `child${index}`, src: 'child' })),
    initial: 'waiting',
    states: { waiting: { invoke: { src: 'pending' } } },
  } as never);
  const count = 10_000;
  const kept: unknown[] = [];
  await forceGc();
  const before = process.memoryUsage().heapUsed;
  for (let index = 0; index < count; index++) kept.push(createActor(machine as AnyActorLogic).start());
  await forceGc();
  const kb = (process.memoryUsage().heapUsed - before) / count / 1024;
  kept.length = 0;
  return kb;
}

const events = eventChart();
const invokes = invokeChart();
const eventsP50 = await p50(() => toPromise(createActor(events).start()));
const invokesP50 = await p50(() => toPromise(createActor(invokes).start()));
// The bare chart, runchart's whole in-memory run and the AI SDK's whole one-hop run, run for run in
// turn (the order rotating every round, as in bench/side-by-side.ts), so the machine's noise falls
// on all three alike: what XState alone spends on runchart's chart, and what the layers add to it,
// as shares of the fastest peer's whole run.
const bare = bareRunChart();
const full = runchartWorkload('memory');
const aiSdk = aiSdkWorkload();
let round = 0;
const turns: (() => Promise<unknown>)[] = [bare, () => full.run(round), () => aiSdk.run(round)];
const times: number[][] = turns.map(() => []);
const pairs = { warmup: 500, measured: 5_000 };
for (; round < pairs.warmup + pairs.measured; round++) {
  for (let step = 0; step < turns.length; step++) {
    const which = (round + step) % turns.length;
    const started = performance.now();
    await turns[which]!();
    if (round >= pairs.warmup) times[which]!.push((performance.now() - started) * 1000);
  }
}
await full.close();
await aiSdk.close();
const [bareTimes, fullTimes, aiSdkTimes] = times as [number[], number[], number[]];
const fullP50 = median(fullTimes);
const bareChartP50 = median(bareTimes);
const aiSdkP50 = median(aiSdkTimes);
progress('measured the charts');
const rows = [
  `| ${steps} steps, one long-lived child answering events | ${eventsP50.toFixed(1)} µs p50 |`,
  `| ${steps} steps, a fresh fromPromise actor per step | ${invokesP50.toFixed(1)} µs p50 |`,
  `| the run chart, one-hop run, every service answering at once, telemetry silent | ${bareChartP50.toFixed(1)} µs p50 |`,
  `| runchart's whole one-hop run, in memory, every layer working | ${fullP50.toFixed(1)} µs p50 |`,
  `| the AI SDK's whole one-hop run, every layer working | ${aiSdkP50.toFixed(1)} µs p50 |`,
  `| (the three rows above ran run for run in turn) | |`,
  `| the bare run chart against the AI SDK's whole run | ${(bareChartP50 / aiSdkP50).toFixed(2)}× |`,
  `| runchart's layers (whole run less the bare chart) against the AI SDK's whole run | ${((fullP50 - bareChartP50) / aiSdkP50).toFixed(2)}× |`,
  ...[16, 19, 20, 26].map((keys) => `| XState assign on a ${keys}-key context (Object.assign) | ${assignCost(keys).toFixed(2)} µs |`),
];
for (const children of [0, 1, 2]) rows.push(`| create, start and stop a root actor with ${children === 1 ? '1 long-lived child' : `${children} long-lived children`} | ${(await startCost(children)).toFixed(1)} µs p50 |`);
await heapPerActor(2); // warm-up: the first round also pays for code and shapes
for (const children of [0, 1, 2]) rows.push(`| heap: a root actor waiting on a promise, with ${children === 1 ? '1 long-lived child' : `${children} long-lived children`} | ${(await heapPerActor(children)).toFixed(2)} KB |`);
process.stdout.write(['| XState alone, on this machine | |', '| --- | ---: |', ...rows].join('\n') + '\n');
