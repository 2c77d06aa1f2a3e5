/**
 * Renders Mermaid text in headless Chromium (Debian's package, driven by playwright-core, no network), with the
 * installed Mermaid bundle, the way a reader's browser draws it: for the committed PNGs (`npm run diagrams`) and
 * for the test that checks each diagram renders and stays legible in size.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
// These machines have no network: Chromium must not try to reach Google's services.
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'];
const MERMAID_BUNDLE = path.join(path.dirname(createRequire(import.meta.url).resolve('mermaid')), 'mermaid.min.js');

export interface RenderedDiagram {
  /** The drawing's natural size in CSS pixels (Mermaid's view box). */
  width: number;
  height: number;
  /** Arrows drawn. */
  edges: number;
  /** Boxes drawn (states, composite states and pseudo-states). */
  states: number;
  /** A PNG of the drawing at `scale` device pixels per CSS pixel. */
  png: Buffer;
  /** The drawing itself, at its natural size; its element ids start with the render id. */
  svg: string;
}

export interface MermaidRenderer {
  /** `id` names the drawing: Mermaid prefixes every element id with it (default: a counter). */
  render(text: string, options?: { id?: string }): Promise<RenderedDiagram>;
  close(): Promise<void>;
}

export async function openMermaidRenderer(options: { scale?: number } = {}): Promise<MermaidRenderer> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install chromium), or set CHROMIUM_PATH`);
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  try {
    const page: Page = await browser.newPage({ viewport: { width: 800, height: 600 }, deviceScaleFactor: options.scale ?? 1 });
    await page.setContent('<!doctype html><html><body style="margin:0;background:#fff"><div id="out" style="display:inline-block;padding:16px;background:#fff"></div></body></html>');
    await page.addScriptTag({ path: MERMAID_BUNDLE });
    await page.evaluate(() => {
      const m = (window as unknown as { mermaid: { initialize(c: object): void } }).mermaid;
      // Natural size (no scaling to the page's width), so that the measured size is the drawing's own.
      m.initialize({ startOnLoad: false, securityLevel: 'strict', theme: 'neutral', state: { useMaxWidth: false } });
    });
    let counter = 0;
    return {
      async render(text, options = {}) {
        counter += 1;
        const measured = await page.evaluate(
          async ({ text, id }) => {
            const m = (window as unknown as { mermaid: { render(id: string, text: string): Promise<{ svg: string }> } }).mermaid;
            const out = document.getElementById('out')!;
            out.replaceChildren();
            // Throws on a parse or layout error.
            const { svg } = await m.render(id, text);
            out.innerHTML = svg;
            const drawn = out.querySelector('svg')!;
            const box = drawn.viewBox.baseVal;
            return {
              width: box.width,
              height: box.height,
              edges: drawn.querySelectorAll('path.transition').length,
              states: drawn.querySelectorAll('g.node').length,
              error: /Syntax error|Parse error/i.test(drawn.textContent ?? ''),
              svg,
            };
          },
          { text, id: options.id ?? `diagram${counter}` },
        );
        if (measured.error) throw new Error('Mermaid drew an error in place of the diagram');
        await page.setViewportSize({ width: Math.ceil(measured.width) + 64, height: Math.ceil(measured.height) + 64 });
        const png = await page.locator('#out').screenshot({ type: 'png' });
        return { width: measured.width, height: measured.height, edges: measured.edges, states: measured.states, png, svg: measured.svg };
      },
      close: () => browser.close(),
    };
  } catch (error) {
    await browser.close();
    throw error;
  }
}
