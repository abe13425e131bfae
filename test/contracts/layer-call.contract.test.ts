// fromLayerCall is held equal to XState's fromPromise: the same snapshots, persisted form and
// events to the parent, the same restart on restore; it only makes its AbortController lazily.
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, setup, type AnyActorLogic, type AnyActorRef, type InspectionEvent } from 'xstate';
import { fromLayerCall } from '../../actors/layer-call.js';
import { isRunchartError } from '../../src/errors.js';
import { deferred } from '../support/scenario.js';

type Call = (args: { input: { n: number }; signal: AbortSignal }) => Promise<number>;
type Make = (call: Call) => AnyActorLogic;

const kinds: [string, Make][] = [
  ['fromPromise', (call) => fromPromise<number, { n: number }>(call)],
  ['fromLayerCall', (call) => fromLayerCall<number, { n: number }>(call)],
];

/** A parent that invokes the logic under id `work` and records what it hears; the events, snapshots and persisted forms of the child. */
function harness(logic: AnyActorLogic) {
  const heard: { type: string; output?: unknown; error?: unknown }[] = [];
  const parent = setup({ actors: { work: logic } }).createMachine({
    initial: 'working',
    states: {
      working: {
        invoke: {
          id: 'work',
          src: 'work',
          input: { n: 2 },
          onDone: { target: 'done', actions: ({ event }) => void heard.push({ type: event.type, output: event.output }) },
          onError: { target: 'failed', actions: ({ event }) => void heard.push({ type: event.type, error: event.error }) },
        },
      },
      done: { type: 'final' },
      failed: { type: 'final' },
      cancelled: { type: 'final' },
    },
    on: { cancel: '.cancelled' },
  });
  const snapshots: unknown[] = [];
  const inspect = (event: InspectionEvent) => {
    if (event.type === '@xstate.snapshot' && (event.actorRef as AnyActorRef).id === 'work') snapshots.push(structuredClone(event.snapshot));
  };
  return { parent, heard, snapshots, inspect };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

describe('fromLayerCall, held equal to fromPromise', () => {
  async function observe(make: Make, behaviour: 'resolve' | 'reject' | 'cancel') {
    const gate = deferred();
    const signals: AbortSignal[] = [];
    const { parent, heard, snapshots, inspect } = harness(
      make(async ({ input, signal }) => {
        signals.push(signal);
        await gate.promise;
        if (behaviour === 'reject') throw new Error(`no ${input.n}`);
        return input.n * 21;
      }),
    );
    const actor = createActor(parent, { inspect }).start();
    const child = actor.getSnapshot().children.work as AnyActorRef;
    const pending = structuredClone(child.getSnapshot());
    const persisted = JSON.parse(JSON.stringify(actor.getPersistedSnapshot()));
    if (behaviour === 'cancel') actor.send({ type: 'cancel' });
    gate.resolve();
    await settle();
    return { pending, persisted, heard, snapshots, final: actor.getSnapshot().value, aborted: signals.map((signal) => signal.aborted), child: child.getSnapshot() };
  }

  it.each(['resolve', 'reject', 'cancel'] as const)('behaves the same when the call %ss', async (behaviour) => {
    const [promise, layer] = await Promise.all(kinds.map(([, make]) => observe(make, behaviour)));
    expect(layer!.pending).toEqual({ status: 'active', output: undefined, error: undefined, input: { n: 2 } });
    expect(layer!.pending).toEqual(promise!.pending);
    expect(layer!.persisted).toEqual(promise!.persisted);
    expect(layer!.heard).toEqual(promise!.heard);
    expect(layer!.snapshots).toEqual(promise!.snapshots);
    expect(layer!.final).toEqual(promise!.final);
    expect(layer!.child).toEqual(promise!.child);
    expect(layer!.aborted).toEqual(promise!.aborted);
    expect(layer!.final).toBe({ resolve: 'done', reject: 'failed', cancel: 'cancelled' }[behaviour]);
    if (behaviour === 'resolve') expect(layer!.heard).toEqual([{ type: 'xstate.done.actor.work', output: 42 }]);
    if (behaviour === 'cancel') expect(layer!.aborted).toEqual([true]);
  });

  it.each(kinds)('%s: a call pending when the snapshot was taken runs again, with its input, when restored', async (_name, make) => {
    const inputs: number[] = [];
    const never = make(async ({ input }) => {
      inputs.push(input.n);
      return new Promise<number>(() => {});
    });
    const first = createActor(harness(never).parent).start();
    const persisted = first.getPersistedSnapshot();
    first.stop();
    const answering = make(async ({ input }) => {
      inputs.push(input.n);
      return input.n + 1;
    });
    const { parent, heard } = harness(answering);
    const restored = createActor(parent, { snapshot: persisted }).start();
    await settle();
    expect(inputs).toEqual([2, 2]);
    expect(restored.getSnapshot().value).toBe('done');
    expect(heard).toEqual([{ type: 'xstate.done.actor.work', output: 3 }]);
  });

  it.each(kinds)('%s: a call stopped before it reads its signal reads an aborted one', async (_name, make) => {
    const gate = deferred();
    let aborted: boolean | undefined;
    const { parent } = harness(
      make(async (args) => {
        await gate.promise; // the run leaves the state meanwhile
        aborted = args.signal.aborted;
        return args.input.n;
      }),
    );
    const actor = createActor(parent).start();
    actor.send({ type: 'cancel' });
    gate.resolve();
    await settle();
    expect(actor.getSnapshot().value).toBe('cancelled');
    expect(aborted).toBe(true);
  });

  it('makes no AbortController for a call that never reads its signal, and one for a call that does', async () => {
    const Original = globalThis.AbortController;
    let made = 0;
    globalThis.AbortController = class extends Original {
      constructor() {
        super();
        made++;
      }
    };
    try {
      const quiet = harness(fromLayerCall<number, { n: number }>(async ({ input }) => input.n));
      createActor(quiet.parent).start();
      await settle();
      expect(quiet.heard).toEqual([{ type: 'xstate.done.actor.work', output: 2 }]);
      expect(made).toBe(0);
      const listening = harness(fromLayerCall<number, { n: number }>(async ({ input, signal }) => (signal.aborted ? 0 : input.n)));
      createActor(listening.parent).start();
      await settle();
      expect(made).toBe(1);
    } finally {
      globalThis.AbortController = Original;
    }
  });

  it('tells a call stopped by its state leaving why, with a cancelled RunchartError', async () => {
    let reason: unknown;
    const { parent } = harness(
      fromLayerCall<number, { n: number }>(({ signal }) => new Promise<number>((_resolve, reject) => signal.addEventListener('abort', () => reject((reason = signal.reason)), { once: true }))),
    );
    const actor = createActor(parent).start();
    actor.send({ type: 'cancel' });
    await settle();
    expect(isRunchartError(reason)).toBe(true);
    expect(reason).toMatchObject({ kind: 'cancelled', layer: 'runtime' });
  });
});
