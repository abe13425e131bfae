// What XState itself costs, apart from runchart: `node --expose-gc --import tsx bench/floor.ts`.
// The figures bound what any chart with this many steps and actors can reach on this machine.
import { assign, createActor, fromCallback, fromPromise, sendTo, setup, toPromise, type AnyActorLogic } from 'xstate';
import { forceGc, progress } from './measure.js';

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
progress('measured the two charts');
const rows = [
  `| ${steps} steps, one long-lived child answering events | ${eventsP50.toFixed(1)} µs p50 |`,
  `| ${steps} steps, a fresh fromPromise actor per step | ${invokesP50.toFixed(1)} µs p50 |`,
  ...[16, 19, 20, 26].map((keys) => `| XState assign on a ${keys}-key context (Object.assign) | ${assignCost(keys).toFixed(2)} µs |`),
];
await heapPerActor(2); // warm-up: the first round also pays for code and shapes
for (const children of [0, 1, 2]) rows.push(`| heap: a root actor waiting on a promise, with ${children} long-lived children | ${(await heapPerActor(children)).toFixed(2)} KB |`);
process.stdout.write(['| XState alone, on this machine | |', '| --- | ---: |', ...rows].join('\n') + '\n');
