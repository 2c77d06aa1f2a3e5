/**
 * The lifecycle views the live view shows, drawn ahead of time by `npm run diagrams` (Mermaid in a browser) into
 * diagrams/<machine>-lifecycle.svg, so that the installed proxy ships no Mermaid. Each drawing is stamped with a
 * hash of the Mermaid text it was drawn from; a test checks the stamp against the machines as they are.
 */
import { createHash } from 'node:crypto';

/** Mermaid prefixes every element id of a drawing with this (the live view finds state boxes by it). */
export const lifecycleRenderId = (machineId: string): string => `diagram-${machineId}`;

export function drawingStamp(mermaidText: string): string {
  return `<!-- drawn by npm run diagrams from Mermaid text sha256:${mermaidHash(mermaidText)} -->\n`;
}

/** The hash a drawing says it was drawn from, if it carries a stamp. */
export function stampedHash(svg: string): string | undefined {
  return /^<!-- drawn by npm run diagrams from Mermaid text sha256:([0-9a-f]{64}) -->\n/.exec(svg)?.[1];
}

export function mermaidHash(mermaidText: string): string {
  return createHash('sha256').update(mermaidText).digest('hex');
}
