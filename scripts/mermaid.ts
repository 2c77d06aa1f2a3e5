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
import { guardText } from '../src/machineTools/transitions.js';

export function toMermaid(machine: AnyStateMachine): string {
  const out: string[] = ['stateDiagram-v2'];
  const edges: string[] = [];
  renderChildren(machine.root, out, edges, '  ');
  return [...out, ...edges].join('\n') + '\n';
}

function mermaidId(node: AnyStateNode): string {
  return node.path.join('__');
}

function renderChildren(parent: AnyStateNode, out: string[], edges: string[], indent: string): void {
  const children = Object.values(parent.states) as AnyStateNode[];
  const initial = parent.config.initial;
  if (typeof initial === 'string' && parent.states[initial]) out.push(`${indent}[*] --> ${mermaidId(parent.states[initial] as AnyStateNode)}`);
  for (const child of children) {
    const id = mermaidId(child);
    if (Object.keys(child.states).length > 0) {
      out.push(`${indent}state "${child.key}" as ${id} {`);
      renderChildren(child, out, edges, `${indent}  `);
      out.push(`${indent}}`);
    } else if (id !== child.key) {
      out.push(`${indent}state "${child.key}" as ${id}`);
    }
    if (child.type === 'final') out.push(`${indent}${id} --> [*]`);
    collectEdges(child, edges);
  }
}

function collectEdges(node: AnyStateNode, edges: string[]): void {
  const delays = new Map(node.after.map((a) => [a.eventType, a.delay]));
  const source = mermaidId(node);
  for (const [eventType, transitions] of node.transitions) {
    if (eventType === '*') continue;
    const label = delays.has(eventType) ? `after ${String(delays.get(eventType))}` : eventType;
    for (const t of transitions) addEdge(edges, source, t, label);
  }
  for (const t of node.always ?? []) addEdge(edges, source, t, 'always');
}

function addEdge(edges: string[], source: string, transition: { target?: readonly AnyStateNode[] | undefined; guard?: unknown }, label: string): void {
  for (const target of transition.target ?? []) {
    const guard = guardText(transition.guard);
    edges.push(`  ${source} --> ${mermaidId(target)} : ${label}${guard ? ` [${guard}]` : ''}`);
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
