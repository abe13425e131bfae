import type { AnyStateNode } from 'xstate';
import { runMachine } from '../machines/run/machine.js';
import { transitionLabel as label, transitionsOf } from './chart.js';

const id = (node: AnyStateNode) => node.path.join('_') || 'run';

/** Renders the run machine as a Mermaid state diagram, straight from its state nodes. */
export function renderMermaid(): string {
  const lines = ['stateDiagram-v2', `  [*] --> ${id(runMachine.root.initial.target[0]!)}`];
  const edges: string[] = [];
  const visit = (node: AnyStateNode, indent: string) => {
    const children = Object.values(node.states) as AnyStateNode[];
    if (node !== runMachine.root) {
      if (children.length) {
        lines.push(`${indent}state "${node.key}" as ${id(node)} {`);
        lines.push(`${indent}  [*] --> ${id(node.initial.target[0]!)}`);
        for (const child of children) visit(child, `${indent}  `);
        lines.push(`${indent}}`);
      } else {
        // A top-level state is named by its id; Mermaid declares it from its transitions.
        if (id(node) !== node.key) lines.push(`${indent}state "${node.key}" as ${id(node)}`);
        if (node.type === 'final') edges.push(`  ${id(node)} --> [*]`);
      }
    } else for (const child of children) visit(child, indent);
    const transitions = transitionsOf(node);
    for (const transition of transitions) {
      for (const target of transition.target ?? []) {
        if (node === runMachine.root) continue;
        edges.push(`  ${id(node)} --> ${id(target)}: ${label(transition.eventType, transition.guard)}`);
      }
    }
  };
  visit(runMachine.root, '  ');
  lines.push(...edges);
  lines.push('  note right of ingress: run.cancel from any state → cancelled');
  return `${lines.join('\n')}\n`;
}
