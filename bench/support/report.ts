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

export interface Verdict {
  target: string;
  measured: string;
  met: boolean;
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

export function renderVerdicts(verdicts: Verdict[]): string {
  return [
    '## Targets',
    '',
    '| target | measured | met |',
    '| --- | --- | --- |',
    ...verdicts.map((v) => `| ${v.target} | ${v.measured} | ${v.met ? 'yes' : '**no**'} |`),
    '',
  ].join('\n');
}
