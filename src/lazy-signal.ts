/**
 * An abort signal made on first read. Most layer calls and tool handlers never look at their
 * signal, and an `AbortController` costs more than the rest of a small call; aborted before it is
 * read, the signal comes out already aborted, with the reason.
 */
export class LazySignal {
  #controller: AbortController | undefined;
  #stopped: { reason: unknown } | undefined;

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#stopped) this.#controller.abort(this.#stopped.reason);
    }
    return this.#controller.signal;
  }

  /** Aborts the signal if it was read, or the one a later read makes; only the first reason counts. */
  abort(reason: unknown): void {
    if (this.#stopped) return;
    this.#stopped = { reason };
    this.#controller?.abort(reason);
  }
}

/**
 * Options whose `signal` is a `LazySignal`'s: an own, enumerable accessor, so code that spreads
 * the options passes the signal on. It is defined from one shared descriptor, not written as a
 * getter in an object literal, which would keep the call and its run in memory after they end
 * (this is on every call's path; bench/README.md, "What outlives a scavenge"). Subclasses add the
 * other fields.
 * @example
 * const lazy = new LazySignal(); await layer.evaluate(request, new SignalOptions(lazy)); lazy.abort(reason);
 */
export class SignalOptions {
  declare readonly signal: AbortSignal;
  readonly #lazy: LazySignal;

  constructor(lazy: LazySignal) {
    this.#lazy = lazy;
    Object.defineProperty(this, 'signal', SignalOptions.#signal);
  }

  static readonly #signal: PropertyDescriptor = {
    enumerable: true,
    get(this: SignalOptions) {
      return this.#lazy.signal;
    },
  };
}
