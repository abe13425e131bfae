import type { ActorLogic, ActorRefFrom, ActorSystem, EventObject, PromiseSnapshot } from 'xstate';

type AnyActorSystem = ActorSystem<any>;
import { RunchartError } from '../src/errors.js';
import { LazySignal, SignalOptions } from '../src/lazy-signal.js';

/** What a layer call is given: its input and, when it reads it, a signal that aborts when its state is left. */
export interface LayerCallArguments<Input> {
  input: Input;
  /** Created on first read: a call that never listens costs no controller. */
  readonly signal: AbortSignal;
  /** `{ signal }` for the layer's contract method, still made only when the layer reads it. */
  readonly options: { readonly signal: AbortSignal };
  system: AnyActorSystem;
}

/** Options every layer call takes. */
export interface LayerCallOptions {
  /** Told of every call as it starts, so a closing runtime can let calls it stopped finish their writes. */
  track?: (pending: Promise<unknown>) => void;
}

type Settled = { type: 'runchart.call.resolve'; data: unknown } | { type: 'runchart.call.reject'; data: unknown };

/** The logic of one layer call: XState's promise logic, snapshot for snapshot. */
export type LayerCallLogic<Output, Input> = ActorLogic<PromiseSnapshot<Output, Input>, EventObject, Input, AnyActorSystem, EventObject>;
export type LayerCallActor<Output, Input> = ActorRefFrom<LayerCallLogic<Output, Input>>;

/** What a call is given (`LayerCallArguments`): a class with `signal` on its prototype, for the reason `SignalOptions` gives. */
class CallArguments<Input> implements LayerCallArguments<Input> {
  constructor(
    readonly input: Input,
    readonly options: SignalOptions,
    readonly system: AnyActorSystem,
  ) {}
  get signal(): AbortSignal {
    return this.options.signal;
  }
}

/** Each running call's signal, aborted when its state is left. */
const controllers = new WeakMap<object, LazySignal>();

/**
 * Actor logic for one request and one answer, invoked by the state that makes the call. It is
 * `fromPromise` in every snapshot, persisted form and event it sends (a contract test holds the
 * two equal), with one difference: the `AbortController` is made only when the call reads its
 * `signal` (one read after its state was left is already aborted, as `fromPromise`'s is), and a
 * call aborted because its state was left gets a `cancelled` RunchartError as the reason. Restored from a persisted snapshot while pending, it runs again, as `fromPromise` does.
 * @example
 * const evaluatePolicy = fromLayerCall<PolicyDecision, PolicyRequest>(({ input, signal }) => policy.evaluate(input, { signal }));
 */
export function fromLayerCall<Output, Input>(
  call: (args: LayerCallArguments<Input>) => PromiseLike<Output> | Output,
  options: LayerCallOptions = {},
): LayerCallLogic<Output, Input> {
  const track = options.track;
  return {
    config: call,
    transition(snapshot, event, scope) {
      if (snapshot.status !== 'active') return snapshot;
      switch ((event as Settled).type) {
        case 'runchart.call.resolve':
          return { status: 'done', output: (event as Settled).data as Output, error: undefined, input: undefined };
        case 'runchart.call.reject':
          return { status: 'error', output: undefined, error: (event as Settled).data, input: undefined };
        default:
          if (event.type !== 'xstate.stop') return snapshot;
          controllers.get(scope.self)?.abort(new RunchartError('cancelled', 'runtime', 'runtime: the run left the state that made this call'));
          controllers.delete(scope.self);
          return { status: 'stopped', output: snapshot.output, error: snapshot.error, input: undefined };
      }
    },
    start(snapshot, { self, system }) {
      if (snapshot.status !== 'active') return;
      const lazy = new LazySignal();
      controllers.set(self, lazy);
      const pending = call(new CallArguments(snapshot.input as Input, new SignalOptions(lazy), system));
      const settled = Promise.resolve(pending);
      track?.(settled);
      settled.then(
        (output) => {
          if (self.getSnapshot().status !== 'active') return;
          controllers.delete(self);
          self.send({ type: 'runchart.call.resolve', data: output } satisfies Settled as EventObject);
        },
        (error: unknown) => {
          if (self.getSnapshot().status !== 'active') return;
          controllers.delete(self);
          self.send({ type: 'runchart.call.reject', data: error } satisfies Settled as EventObject);
        },
      );
    },
    getInitialSnapshot: (_scope, input) => ({ status: 'active', output: undefined, error: undefined, input }),
    getPersistedSnapshot: (snapshot) => snapshot,
    restoreSnapshot: (snapshot) => snapshot as PromiseSnapshot<Output, Input>,
  };
}
