/** `npm run diagrams`: writes diagrams/<machine>.mmd and diagrams/README.md from the definitions in machines/. */
import fs from 'node:fs';
import path from 'node:path';
import { diagramsReadme, discoverMachines, toMermaid, withReadmeDiagram } from './mermaid.js';

const root = path.resolve(import.meta.dirname, '..');
const outDir = path.join(root, 'diagrams');
const machines = await discoverMachines(path.join(root, 'machines'));
fs.mkdirSync(outDir, { recursive: true });
const rendered = machines.map(({ name, machine }) => ({ name, mermaid: toMermaid(machine) }));
for (const { name, mermaid } of rendered) fs.writeFileSync(path.join(outDir, `${name}.mmd`), mermaid);
fs.writeFileSync(path.join(outDir, 'README.md'), diagramsReadme(rendered));
const session = rendered.find((m) => m.name === 'session');
if (session) {
  const readme = path.join(root, 'README.md');
  fs.writeFileSync(readme, withReadmeDiagram(fs.readFileSync(readme, 'utf8'), session.mermaid));
}
process.stdout.write(`wrote ${rendered.map((m) => `diagrams/${m.name}.mmd`).join(', ')} and diagrams/README.md\n`);
