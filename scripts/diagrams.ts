/**
 * `npm run diagrams`: writes diagrams/<name>.mmd and diagrams/README.md from the definitions in machines/, puts the
 * session lifecycle into README.md, renders each view to docs/diagrams/<name>.png in headless Chromium, and each
 * lifecycle view to diagrams/<machine>-lifecycle.svg for the live view (`--no-png` skips the rendering). Files it
 * no longer produces are removed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { diagramsReadme, discoverMachines, generatedDiagrams, readmeDiagram, withReadmeDiagram } from './mermaid.js';
import { openMermaidRenderer } from './renderMermaid.js';
import { drawingStamp, lifecycleRenderId } from '../src/machineTools/lifecycleDrawing.js';

const root = path.resolve(import.meta.dirname, '..');
const outDir = path.join(root, 'diagrams');
const pngDir = path.join(root, 'docs', 'diagrams');
const diagrams = generatedDiagrams(await discoverMachines(path.join(root, 'machines')));

fs.mkdirSync(outDir, { recursive: true });
removeStale(outDir, '.mmd', diagrams.map((d) => d.file));
for (const d of diagrams) fs.writeFileSync(path.join(outDir, `${d.file}.mmd`), d.mermaid);
fs.writeFileSync(path.join(outDir, 'README.md'), diagramsReadme(diagrams));
const lifecycle = readmeDiagram(diagrams);
if (lifecycle) {
  const readme = path.join(root, 'README.md');
  fs.writeFileSync(readme, withReadmeDiagram(fs.readFileSync(readme, 'utf8'), lifecycle.mermaid));
}
process.stdout.write(`wrote ${diagrams.map((d) => `diagrams/${d.file}.mmd`).join(', ')} and diagrams/README.md\n`);

if (!process.argv.includes('--no-png')) {
  const views = diagrams.filter((d) => d.view);
  fs.mkdirSync(pngDir, { recursive: true });
  removeStale(pngDir, '.png', views.map((d) => d.file));
  const lifecycles = views.filter((d) => d.file === `${d.machine}-lifecycle`);
  removeStale(outDir, '.svg', lifecycles.map((d) => d.file));
  const renderer = await openMermaidRenderer({ scale: 1.5 });
  try {
    for (const d of views) {
      const isLifecycle = lifecycles.includes(d);
      const drawn = await renderer.render(d.mermaid, isLifecycle ? { id: lifecycleRenderId(d.machine) } : {});
      fs.writeFileSync(path.join(pngDir, `${d.file}.png`), drawn.png);
      process.stdout.write(`rendered docs/diagrams/${d.file}.png (${Math.round(drawn.width)}×${Math.round(drawn.height)}, ${drawn.edges} arrows)\n`);
      if (isLifecycle) {
        fs.writeFileSync(path.join(outDir, `${d.file}.svg`), drawingStamp(d.mermaid) + drawn.svg + '\n');
        process.stdout.write(`drew diagrams/${d.file}.svg for the live view\n`);
      }
    }
  } finally {
    await renderer.close();
  }
}

function removeStale(dir: string, extension: string, keep: string[]): void {
  for (const file of fs.readdirSync(dir)) {
    if (file.endsWith(extension) && !keep.includes(file.slice(0, -extension.length))) fs.rmSync(path.join(dir, file));
  }
}
