/**
 * Renders an XState machine as a Mermaid stateDiagram-v2, straight from its state nodes: initial and final
 * markers, nested states, and every transition that changes state, labelled with its event, `after <delay>` or
 * `always`, plus its guard. Transitions without a target (relays, the reject-everything-else wildcard) do not
 * change state and are left out. Output order is definition order, so the text is deterministic.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { definedTransitions, type TransitionInfo } from '../src/machineTools/transitions.js';

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

export interface DiscoveredMachine {
  name: string;
  machine: AnyStateMachine;
}

/** Every state machine exported by a module in `machines/`, sorted by name. */
export async function discoverMachines(machinesDir: string): Promise<DiscoveredMachine[]> {
  const found: DiscoveredMachine[] = [];
  for (const file of fs.readdirSync(machinesDir).filter((f) => f.endsWith('.ts')).sort()) {
    const module = (await import(pathToFileURL(path.join(machinesDir, file)).href)) as Record<string, unknown>;
    for (const value of Object.values(module)) {
      if (isMachine(value)) found.push({ name: value.id, machine: value });
    }
  }
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

function isMachine(value: unknown): value is AnyStateMachine {
  return typeof value === 'object' && value !== null && 'root' in value && 'config' in value && 'provide' in value;
}

/** diagrams/README.md: every machine's diagram in a Mermaid code block. */
export function diagramsReadme(machines: Array<{ name: string; mermaid: string }>): string {
  const parts = [
    '# State diagrams',
    '',
    'Generated from the machine definitions in `machines/` by `npm run diagrams`; do not edit by hand.',
    'A test fails when these files differ from what the definitions produce.',
    '',
  ];
  for (const { name, mermaid } of machines) {
    parts.push(`## ${name}`, '', `Source: \`diagrams/${name}.mmd\``, '', '```mermaid', mermaid.trimEnd(), '```', '');
  }
  return parts.join('\n');
}

const README_START = '<!-- session-diagram:start -->';
const README_END = '<!-- session-diagram:end -->';

/** The project README with the session diagram between its markers replaced by `mermaid`. */
export function withReadmeDiagram(readme: string, mermaid: string): string {
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start === -1 || end < start) throw new Error(`README.md lacks the ${README_START} … ${README_END} markers`);
  return `${readme.slice(0, start + README_START.length)}\n\`\`\`mermaid\n${mermaid.trimEnd()}\n\`\`\`\n${readme.slice(end)}`;
}
