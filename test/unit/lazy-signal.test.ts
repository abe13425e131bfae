import { describe, expect, it } from 'vitest';
import { LazySignal, SignalOptions } from '../../src/lazy-signal.js';

describe('LazySignal', () => {
  it('makes one controller, on the first read', () => {
    const lazy = new LazySignal();
    const first = lazy.signal;
    expect(lazy.signal).toBe(first);
    expect(first.aborted).toBe(false);
  });

  it('aborts a signal already read, with the first reason only', () => {
    const lazy = new LazySignal();
    const signal = lazy.signal;
    lazy.abort('first');
    lazy.abort('second');
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe('first');
  });

  it('hands out an aborted signal, with the reason, when read after an abort', () => {
    const lazy = new LazySignal();
    lazy.abort('gone');
    expect(lazy.signal.aborted).toBe(true);
    expect(lazy.signal.reason).toBe('gone');
  });
});

describe('SignalOptions', () => {
  it('has `signal` as an own enumerable property, so a spread or destructuring passes it on', () => {
    const lazy = new LazySignal();
    const options = new SignalOptions(lazy);
    expect(Object.keys(options)).toEqual(['signal']);
    expect({ ...options }.signal).toBe(lazy.signal);
    const { signal } = options;
    expect(signal).toBe(lazy.signal);
  });

  it('keeps subclass fields beside the signal, and nothing of its own besides', () => {
    class Context extends SignalOptions {
      readonly runId = 'r1';
    }
    const context = new Context(new LazySignal());
    expect(Object.keys(context)).toEqual(['signal', 'runId']);
    expect(JSON.parse(JSON.stringify({ ...context, signal: undefined }))).toEqual({ runId: 'r1' });
  });
});
