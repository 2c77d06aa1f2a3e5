/**
 * `assuan-proxy audit FILE [--json]`: what an `--audit` file says, for a person: per key and per caller (the bridge
 * link, or `local`), how many uses by command, how many refusals, and the last use; `--json` gives the same to a
 * machine. Lines that are not audit records are counted and skipped, never echoed (the file may be tampered with).
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { oneLineBounded } from '../foreignText.js';
import type { AuditRecord } from './auditLog.js';
import { MAX_USER_ID } from './sessionAudit.js';

export interface UseCounts {
  /** Relayed commands by verb (ok and err alike). */
  uses: Record<string, number>;
  /** Relayed commands the agent answered with ERR. */
  failed: number;
  refused: number;
  /** The time of the last record. */
  last: string;
  /** For a key: its user ID, as the latest record naming one gave it. */
  userId?: string;
}

export interface AuditSummary {
  records: number;
  /** Lines that were not audit records. */
  skipped: number;
  byKey: Record<string, UseCounts>;
  byCaller: Record<string, UseCounts>;
  /** Refusals by rule. */
  refusals: Record<string, number>;
}

export const AUDIT_USAGE = `Usage: assuan-proxy audit FILE [--json]

Summarizes an --audit file: per key (with its user ID) and per caller (a
program and user, a bridge link, or local when not identified),
the commands relayed, those the agent refused, those the policy refused, and
the last use. --json prints the same as one JSON object.
`;

export function summarize(text: string): AuditSummary {
  // Keys come from the file: tables without a prototype, so that `__proto__` or `constructor` is just a name.
  const summary: AuditSummary = { records: 0, skipped: 0, byKey: Object.create(null), byCaller: Object.create(null), refusals: Object.create(null) };
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const record = parseRecord(line);
    if (!record) {
      summary.skipped++;
      continue;
    }
    summary.records++;
    count(summary.byCaller, callerOf(record), record);
    if (record.keygrip) count(summary.byKey, record.keygrip, record);
    if (record.decision === 'refused') summary.refusals[record.rule ?? 'unknown'] = (summary.refusals[record.rule ?? 'unknown'] ?? 0) + 1;
  }
  return summary;
}

function count(table: Record<string, UseCounts>, key: string, record: AuditRecord): void {
  // Printed as we write it, whatever the file held.
  const time = new Date(record.time).toISOString();
  const entry = (table[key] ??= { uses: Object.create(null) as Record<string, number>, failed: 0, refused: 0, last: time });
  if (record.decision === 'refused') entry.refused++;
  else {
    entry.uses[record.verb] = (entry.uses[record.verb] ?? 0) + 1;
    if (record.result === 'err') entry.failed++;
  }
  if (time >= entry.last && record.userId !== undefined && table !== undefined && record.keygrip === key) entry.userId = record.userId;
  if (time > entry.last) entry.last = time;
}

/** Who a record's caller is, for grouping: program and user, not the pid (each gpg run is a new process). */
function callerOf(record: AuditRecord): string {
  if (record.link) return record.link;
  return record.caller ? record.caller.replace(/ \(pid \d+, /, ' (') : 'local';
}

const WORD = /^[A-Za-z0-9_-]{1,40}$/;
/** What the proxy writes as a caller (describeCaller: printable ASCII, bounded). */
const CALLER = /^[\x20-\x7e]{1,200}$/;
const GRIP = /^[0-9A-F]{40}$/;

/** A record, only if every field is of the form the proxy writes (so that nothing else reaches the output). */
function parseRecord(line: string): AuditRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  const r = value as Partial<AuditRecord>;
  if (typeof r !== 'object' || r === null) return undefined;
  if (typeof r.time !== 'string' || Number.isNaN(Date.parse(r.time)) || typeof r.verb !== 'string' || !WORD.test(r.verb)) return undefined;
  if (r.decision !== 'relayed' && r.decision !== 'refused') return undefined;
  if (r.keygrip !== undefined && (typeof r.keygrip !== 'string' || !GRIP.test(r.keygrip))) return undefined;
  if (r.link !== undefined && (typeof r.link !== 'string' || !WORD.test(r.link))) return undefined;
  if (r.rule !== undefined && (typeof r.rule !== 'string' || !WORD.test(r.rule))) return undefined;
  if (r.caller !== undefined && (typeof r.caller !== 'string' || !CALLER.test(r.caller))) return undefined;
  // A user ID is another's text: printed with control and format characters as '?', and bounded.
  if (r.userId !== undefined && typeof r.userId !== 'string') return undefined;
  if (r.userId !== undefined) r.userId = oneLineBounded(r.userId, MAX_USER_ID);
  return r as AuditRecord;
}

export function formatSummary(summary: AuditSummary): string {
  const lines: string[] = [`${summary.records} records${summary.skipped ? ` (${summary.skipped} lines that are not audit records skipped)` : ''}`];
  const table = (title: string, rows: Record<string, UseCounts>) => {
    lines.push('', title);
    const entries = Object.entries(rows).sort(([, a], [, b]) => b.last.localeCompare(a.last));
    if (entries.length === 0) lines.push('  (none)');
    for (const [name, counts] of entries) {
      const uses = Object.entries(counts.uses)
        .map(([verb, n]) => `${verb} ${n}`)
        .join(', ');
      lines.push(`  ${name}${counts.userId ? ` (${counts.userId})` : ''}: ${uses || 'no use'}; ${counts.failed} failed at the agent, ${counts.refused} refused by policy; last ${counts.last}`);
    }
  };
  table('By key (keygrip):', summary.byKey);
  table('By caller:', summary.byCaller);
  const refusals = Object.entries(summary.refusals);
  lines.push('', `Refusals by rule: ${refusals.length ? refusals.map(([rule, n]) => `${rule} ${n}`).join(', ') : 'none'}`);
  return `${lines.join('\n')}\n`;
}

export async function auditMain(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true }));
  } catch (err) {
    process.stderr.write(`assuan-proxy audit: ${(err as Error).message}\n\n${AUDIT_USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(AUDIT_USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(`assuan-proxy audit: give one audit file\n\n${AUDIT_USAGE}`);
    return 2;
  }
  let text: string;
  try {
    text = await fs.promises.readFile(positionals[0]!, 'utf8');
  } catch (err) {
    process.stderr.write(`assuan-proxy audit: cannot read ${positionals[0]}: ${(err as NodeJS.ErrnoException).code ?? err}\n`);
    return 1;
  }
  const summary = summarize(text);
  process.stdout.write(values.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary));
  return 0;
}
