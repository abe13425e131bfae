// Copies of the run chart's definition for the mutation tests: change one thing in a copy, build it with the chart's own implementations, prove it.
import type { AnyStateMachine } from 'xstate';
import { runMachine } from '../../machines/run/machine.js';
import { runSetup, traced } from '../../machines/run/setup.js';

/** A state's (or the chart's) definition as the tests edit it: the shape XState reads, loosely typed. */
export type StateDefinition = {
  [key: string]: unknown;
  entry?: unknown;
  exit?: unknown;
  invoke?: InvokeDefinition;
  on?: Record<string, TransitionDefinition | TransitionDefinition[]>;
  always?: TransitionDefinition[];
  states?: Record<string, StateDefinition>;
};
export type TransitionDefinition = { target?: string; guard?: unknown; actions?: unknown };
export type InvokeDefinition = { id: string; src: string; input?: unknown; onDone?: TransitionDefinition | TransitionDefinition[]; onError?: TransitionDefinition };

/** Copies plain objects and arrays; functions (inputs, params, inline actions) stay shared, which is safe since no test edits one. */
function copied<T>(value: T): T {
  if (Array.isArray(value)) return value.map(copied) as T;
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, entry]) => [key, copied(entry)])) as T;
  }
  return value;
}

/** A deep copy of the run chart's definition (`runMachine.config`). */
export function chartDefinition(): StateDefinition {
  return copied(runMachine.config as unknown as StateDefinition);
}

/** The definition of the state at a dotted path (`toolExecution.authorizing`). */
export function stateAt(chart: StateDefinition, path: string): StateDefinition {
  let state = chart;
  for (const name of path.split('.')) {
    const next = state.states?.[name];
    if (!next) throw new Error(`mutate: the chart has no state ${path}`);
    state = next;
  }
  return state;
}

/** The `onDone` candidates of a state's invoke, as an array. */
export function onDone(state: StateDefinition): TransitionDefinition[] {
  const done = state.invoke?.onDone;
  if (!done) throw new Error('mutate: the state invokes nothing with an onDone');
  return Array.isArray(done) ? done : [done];
}

/** A state's entry and exit marks under a name of its own (what `traced` gives the chart's states). */
export function marksOf(name: string): { entry: unknown; exit: unknown } {
  return traced(name);
}

/** Builds a chart from a definition with the run chart's own guards, actions and actors. */
export function chartFrom(definition: StateDefinition): AnyStateMachine {
  return runSetup.createMachine(definition as never) as unknown as AnyStateMachine;
}

/** Applies `change` to a copy of the run chart's definition and builds the result. */
export function mutated(change: (chart: StateDefinition) => void): AnyStateMachine {
  const chart = chartDefinition();
  change(chart);
  return chartFrom(chart);
}
