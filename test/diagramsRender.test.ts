/**
 * The views are checked the way a person meets them: rendered by Mermaid in headless Chromium (Debian's package,
 * driven by playwright-core, no network). Each must render without an error, draw every arrow its text has, and
 * stay small enough to read (few arrows, a drawing that fits a screen or two). The full session diagram, drawn
 * for comparison, is past these bounds: it is why the views exist.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discoverMachines, generatedDiagrams } from '../scripts/mermaid.js';
import { openMermaidRenderer, type MermaidRenderer } from '../scripts/renderMermaid.js';

// 31 in the session lifecycle since held commands (consent, crypto slots) got their box: looked at, still readable.
const MAX_ARROWS = 32;
// The session lifecycle, two clusters side by side, is ~2600 px at Mermaid's default sizes; the full diagram is ~13,000.
const MAX_WIDTH = 2800;
// The session lifecycle is ~1205 px tall since the held box sits between its clusters (it is ~2080 wide: narrower).
const MAX_HEIGHT = 1250;

const views = generatedDiagrams(await discoverMachines(path.resolve('machines'))).filter((d) => d.view);
const arrowsIn = (mermaid: string) => mermaid.split('\n').filter((line) => line.includes(' --> ')).length;

let renderer: MermaidRenderer;
beforeAll(async () => {
  renderer = await openMermaidRenderer();
});
afterAll(async () => {
  await renderer?.close();
});

describe('the diagram views render legibly in a browser', () => {
  it('there are views of both machines', () => {
    expect(views.map((v) => v.file)).toEqual(expect.arrayContaining(['session-lifecycle', 'server-lifecycle', 'session-inquire']));
  });

  it.each(views.map((v) => [v.file, v] as const))('%s', async (_file, view) => {
    const drawn = await renderer.render(view.mermaid);
    expect(drawn.edges).toBe(arrowsIn(view.mermaid));
    expect(drawn.edges).toBeLessThanOrEqual(MAX_ARROWS);
    expect(drawn.width).toBeLessThanOrEqual(MAX_WIDTH);
    expect(drawn.height).toBeLessThanOrEqual(MAX_HEIGHT);
    expect(drawn.png.subarray(1, 4).toString()).toBe('PNG');
  });

  it('the full session diagram is past these bounds (the check can fail)', async () => {
    const drawn = await renderer.render(fs.readFileSync(path.resolve('diagrams', 'session.mmd'), 'utf8'));
    expect(drawn.edges).toBeGreaterThan(MAX_ARROWS);
    expect(drawn.width).toBeGreaterThan(MAX_WIDTH);
  });

  it('a diagram Mermaid cannot draw is an error', async () => {
    await expect(renderer.render('stateDiagram-v2\n  a --> : : -->\n')).rejects.toThrow();
  });
});
