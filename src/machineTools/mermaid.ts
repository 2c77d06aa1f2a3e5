/**
 * Renders an XState machine as a Mermaid stateDiagram-v2, straight from its state nodes: initial and final
 * markers, nested states, and every transition that changes state, labelled with its event, `after <delay>` or
 * `always`, plus its guard. Transitions without a target (relays, the reject-everything-else wildcard) do not
 * change state and are left out. Output order is definition order, so the text is deterministic. Used by
 * `npm run diagrams` and by the live view, which draws the running machines.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { definedTransitions, type TransitionInfo } from './transitions.js';

export function toMermaid(machine: AnyStateMachine): string {
  const out: string[] = ['stateDiagram-v2'];
  renderStates(machine.root, out, '  ');
  for (const t of definedTransitions(machine)) {
    if (t.targets.length === 0) continue;
    const label = `${t.event}${t.guard ? ` [${t.guard}]` : ''}`;
    for (const source of drawnSources(machine, t)) {
      for (const target of t.targets) out.push(`  ${source} --> ${mermaidId(machine, target)} : ${label}`);
    }
  }
  return `${out.join('\n')}\n`;
}

/** Mermaid ids cannot hold dots: `session.bufferingInquire.answering` is drawn as `bufferingInquire__answering`. */
function mermaidId(machine: AnyStateMachine, nodeId: string): string {
  return nodeId.slice(machine.id.length + 1).split('.').join('__');
}

/**
 * Where an edge starts. A transition on the machine itself (e.g. STOP_NOW) applies in every top-level state that
 * does not handle the event itself, so it is drawn from each of them; final states and states left at once
 * (an unguarded `always`) take no events.
 */
function drawnSources(machine: AnyStateMachine, t: TransitionInfo): string[] {
  if (t.source !== machine.id) return [mermaidId(machine, t.source)];
  return (Object.values(machine.root.states) as AnyStateNode[])
    .filter((state) => state.type !== 'final' && !(state.always ?? []).some((a) => a.guard === undefined))
    .filter((state) => !handles(state, t.event))
    .map((state) => mermaidId(machine, state.id));
}

function handles(node: AnyStateNode, eventType: string): boolean {
  return node.transitions.has(eventType) || (Object.values(node.states) as AnyStateNode[]).some((child) => handles(child, eventType));
}

function renderStates(parent: AnyStateNode, out: string[], indent: string): void {
  const machine = parent.machine;
  const initial = parent.config.initial;
  if (typeof initial === 'string' && parent.states[initial]) out.push(`${indent}[*] --> ${mermaidId(machine, (parent.states[initial] as AnyStateNode).id)}`);
  for (const child of Object.values(parent.states) as AnyStateNode[]) {
    const id = mermaidId(machine, child.id);
    if (Object.keys(child.states).length > 0) {
      out.push(`${indent}state "${child.key}" as ${id} {`);
      renderStates(child, out, `${indent}  `);
      out.push(`${indent}}`);
    } else if (id !== child.key) {
      out.push(`${indent}state "${child.key}" as ${id}`);
    }
    if (child.type === 'final') out.push(`${indent}${id} --> [*]`);
  }
}
