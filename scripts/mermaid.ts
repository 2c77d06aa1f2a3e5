/** Machine discovery and the generated Markdown around the diagrams (`npm run diagrams`, diagram tests). */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine } from 'xstate';

export { toMermaid } from '../src/machineTools/mermaid.js';

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
