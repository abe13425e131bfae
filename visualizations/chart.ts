import type { AnyStateNode } from 'xstate';
import { runMachine } from '../machines/run/machine.js';

/** One state of the chart as the drawings show it. */
export interface ChartState {
  /** Dotted path, as `stateKey` prints a state value: `toolExecution.authorizing`. */
  key: string;
  /** The node's own name: `authorizing`. */
  name: string;
  kind: 'atomic' | 'compound' | 'final';
  /** Key of the enclosing compound state; null at the top level. */
  parent: string | null;
  /** Left at once by eventless transitions, so a snapshot never rests in it. */
  transient: boolean;
  /** Key of the initial child of a compound state. */
  initial: string | null;
}

/** One transition with a target, from the state that declares it. */
export interface ChartTransition {
  source: string;
  target: string;
  /** The label the drawings print: `evaluatePolicy done [isAllowed]`, `always [hasNoMoreCalls]`. */
  label: string;
}

/** The run chart flattened for drawing: states in document order, transitions with targets, the root's own transitions. */
export interface Chart {
  initial: string;
  states: ChartState[];
  transitions: ChartTransition[];
  /** Transitions the root declares (they apply in every state): `run.cancel → cancelled`. */
  everywhere: ChartTransition[];
}

/** The dotted key of a state node: `toolExecution.authorizing`. */
export const keyOf = (node: AnyStateNode) => node.path.join('.');

/** The short label of a transition: the event (done/error events by actor id) and the guard, if any. */
export function transitionLabel(eventType: string, guard: unknown): string {
  const done = /^xstate\.(done|error)\.actor\.(.+)$/.exec(eventType);
  const event = done ? `${done[2]} ${done[1] === 'done' ? 'done' : 'error'}` : eventType === '' ? 'always' : eventType;
  const guardType = typeof guard === 'object' && guard !== null ? (guard as { type?: string }).type : typeof guard === 'string' ? guard : undefined;
  return guardType ? `${event} [${guardType}]` : event;
}

/** Every transition a node declares, event transitions first, then eventless ones. */
export function transitionsOf(node: AnyStateNode) {
  return [...node.transitions.values()].flat().concat(node.always ?? []);
}

/** Reads the states and transitions of a machine (the run machine unless told otherwise). */
export function chartOf(machine: { root: AnyStateNode } = runMachine): Chart {
  const states: ChartState[] = [];
  const transitions: ChartTransition[] = [];
  const visit = (node: AnyStateNode, parent: string | null) => {
    const children = Object.values(node.states) as AnyStateNode[];
    const own = transitionsOf(node);
    states.push({
      key: keyOf(node),
      name: node.key,
      kind: children.length ? 'compound' : node.type === 'final' ? 'final' : 'atomic',
      parent,
      transient: (node.always?.length ?? 0) > 0 && node.transitions.size === 0,
      initial: children.length ? keyOf(node.initial.target[0]!) : null,
    });
    for (const child of children) visit(child, keyOf(node));
    for (const transition of own) {
      for (const target of transition.target ?? []) {
        transitions.push({ source: keyOf(node), target: keyOf(target), label: transitionLabel(transition.eventType, transition.guard) });
      }
    }
  };
  for (const child of Object.values(machine.root.states) as AnyStateNode[]) visit(child, null);
  const everywhere = transitionsOf(machine.root).flatMap((transition) =>
    (transition.target ?? []).map((target) => ({ source: '', target: keyOf(target), label: transitionLabel(transition.eventType, transition.guard) })),
  );
  return { initial: keyOf(machine.root.initial.target[0]!), states, transitions, everywhere };
}
