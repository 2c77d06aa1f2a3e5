/** Machine discovery and the generated files around the diagrams (`npm run diagrams`, diagram tests). */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyStateMachine } from 'xstate';
import { diagramViews } from '../src/machineTools/diagramViews.js';
import { toMermaid } from '../src/machineTools/mermaid.js';
import { VIEW_SPECS } from '../src/machineTools/viewSpecs.js';

export { toMermaid };

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

/** One generated diagram: `diagrams/<file>.mmd`, and for a view (not the full diagram) `docs/diagrams/<file>.png`. */
export interface GeneratedDiagram {
  machine: string;
  /** `session-lifecycle`, `session-inquire`, …; the full diagram is just `session`. */
  file: string;
  title: string;
  mermaid: string;
  /** A view drawn for people (lifecycle or detail), rendered to a PNG; false for the full diagram. */
  view: boolean;
}

/** Per machine: its lifecycle view, its detail views, then the full diagram with every transition. */
export function generatedDiagrams(machines: DiscoveredMachine[]): GeneratedDiagram[] {
  return machines.flatMap(({ name, machine }) => [
    ...diagramViews(machine, VIEW_SPECS[name]).map((v) => ({ machine: name, file: `${name}-${v.name}`, title: v.title, mermaid: v.mermaid, view: true })),
    { machine: name, file: name, title: `${name}: every transition`, mermaid: toMermaid(machine), view: false },
  ]);
}

/** diagrams/README.md: every diagram in a Mermaid code block, the views first. */
export function diagramsReadme(diagrams: GeneratedDiagram[]): string {
  const parts = [
    '# State diagrams',
    '',
    'Generated from the machine definitions in `machines/` by `npm run diagrams`; do not edit by hand.',
    'A test fails when these files differ from what the definitions produce.',
    '',
    'Each machine has a **lifecycle** view (composite states collapsed into one box, one arrow per pair of boxes',
    'with its events; transitions every state shares drawn once, from *any state*), **detail** views of its',
    'composite states (the states outside drawn as dashed stubs; *anywhere in X* stands for every state in X), and',
    'the full diagram with every transition. Guards are in brackets, shortened (`[busy]` for `agentBusy` on',
    '`AGENT_CONNECT_FAILED`); `[else]` is the transition taken when no guarded one is. The views are also rendered to PNG in',
    '`docs/diagrams/`.',
    '',
  ];
  for (const machine of [...new Set(diagrams.map((d) => d.machine))]) {
    parts.push(`## ${machine}`, '');
    for (const d of diagrams.filter((x) => x.machine === machine)) {
      const block = ['```mermaid', d.mermaid.trimEnd(), '```'];
      if (d.view) {
        parts.push(`### ${d.title}`, '', `Source: \`diagrams/${d.file}.mmd\`, rendered: [\`docs/diagrams/${d.file}.png\`](../docs/diagrams/${d.file}.png)`, '', ...block, '');
      } else {
        parts.push(`### ${d.title}`, '', `Source: \`diagrams/${d.file}.mmd\` (too large to read rendered; the views above draw the same transitions)`, '', '<details><summary>the full diagram</summary>', '', ...block, '', '</details>', '');
      }
    }
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

/** The diagram the project README shows: the session machine's lifecycle. */
export function readmeDiagram(diagrams: GeneratedDiagram[]): GeneratedDiagram | undefined {
  return diagrams.find((d) => d.file === 'session-lifecycle');
}
