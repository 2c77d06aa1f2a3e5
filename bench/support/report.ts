/** A benchmark section: a titled markdown table and the verdicts drawn from it. */

export interface Section {
  title: string;
  /** What was measured and how, one paragraph. */
  method: string;
  header: string[];
  rows: string[][];
  /** Ratios and targets, one line each. */
  findings: string[];
}

/** What a target is about; the targets table lists them in this order. */
export const TOPICS = ['whole gpg process', 'connect plus greeting', 'added round-trip latency', 'concurrency', 'memory'] as const;
export type Topic = (typeof TOPICS)[number];

export interface Verdict {
  topic: Topic;
  /** What was measured, and where (path, upstream, scenario). */
  measure: string;
  /** The value, usually a ratio, with what it was computed from. */
  measured: string;
  /** The bound it is held to, e.g. `≤ 1.00× socat`. */
  target: string;
  met: boolean;
  /** A goal beyond the target: missing it is reported, not flagged. */
  stretch?: boolean;
}

export function renderSection(section: Section): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [
    `## ${section.title}`,
    '',
    section.method,
    '',
    line(section.header),
    line(section.header.map(() => '---')),
    ...section.rows.map(line),
    '',
    ...section.findings.map((f) => `- ${f}`),
    '',
  ].join('\n');
}

function metCell(v: Verdict): string {
  if (v.met) return 'yes';
  return v.stretch ? 'no (stretch)' : '**no**';
}

export function renderVerdicts(verdicts: Verdict[]): string {
  const ordered = [...verdicts].sort((a, b) => TOPICS.indexOf(a.topic) - TOPICS.indexOf(b.topic));
  return [
    '## Targets',
    '',
    '| measure | measured | target | met |',
    '| --- | --- | --- | --- |',
    ...ordered.map((v) => `| ${v.measure} | ${v.measured} | ${v.target}${v.stretch ? ' (stretch)' : ''} | ${metCell(v)} |`),
    '',
  ].join('\n');
}
