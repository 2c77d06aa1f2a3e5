/** Each generated diagram is valid Mermaid (mermaid's own parser, with jsdom standing in for the browser). */
import fs from 'node:fs';
import path from 'node:path';
import { JSDOM } from 'jsdom';
import { describe, expect, it } from 'vitest';

// mermaid needs a DOM (DOMPurify) even to parse; it must be there before mermaid is imported.
const { window } = new JSDOM('');
Object.assign(globalThis, { window, document: window.document });
const { default: mermaid } = await import('mermaid');

const files = fs.readdirSync(path.resolve('diagrams')).filter((f) => f.endsWith('.mmd'));

describe('generated diagrams parse as Mermaid', () => {
  it('there are diagrams to check', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it.each(files)('%s', async (file) => {
    const result = await mermaid.parse(fs.readFileSync(path.resolve('diagrams', file), 'utf8'));
    expect(result).toMatchObject({ diagramType: 'stateDiagram' });
  });

  it('rejects a broken diagram (the check can fail)', async () => {
    await expect(mermaid.parse('stateDiagram-v2\n  a --> : : -->\n')).rejects.toThrow();
  });
});
