/**
 * Transition coverage from real sockets: every defined transition of every machine must have been taken by a
 * live actor in a real-socket test of this run, or be in the reviewed allowlist with its reason. Runs after the
 * rest of the suite (vitest project group 1) and only when TRANSITION_COVERAGE is set, as `npm test` and
 * `npm run coverage:transitions` do; it prints the coverage table.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { discoverMachines } from '../scripts/mermaid.js';
import { definedTransitions } from '../src/machineTools/transitions.js';
import { readRecords } from './support/transitionRecords.js';
import { TRANSITION_ALLOWLIST } from './transition-allowlist.js';

const enabled = Boolean(process.env.TRANSITION_COVERAGE);
const machines = await discoverMachines(path.resolve('machines'));

describe.skipIf(!enabled)('transition coverage from real sockets', () => {
  const records = readRecords();
  const lines: string[] = [];

  for (const { name, machine } of machines) {
    const defined = definedTransitions(machine);
    const taken = records.get(name) ?? new Map<string, number>();
    const allowlist = TRANSITION_ALLOWLIST[name] ?? {};
    const coveredCount = defined.filter((t) => (taken.get(t.key) ?? 0) > 0).length;
    lines.push('', `${name}: ${coveredCount}/${defined.length} transitions taken by real-socket tests (${((100 * coveredCount) / defined.length).toFixed(1)}%)`);
    lines.push(`| count | transition | guard | to |`, `| ---: | --- | --- | --- |`);
    for (const t of defined) {
      const count = taken.get(t.key) ?? 0;
      const mark = count === 0 ? (allowlist[t.key] ? ' (allowlisted)' : ' (NEVER TAKEN)') : '';
      lines.push(`| ${count} | ${t.key.replace(/^[^.|]+\./, '')}${mark} | ${t.guard} | ${t.targets.map((x) => x.replace(/^[^.]+\./, '')).join(', ')} |`);
    }

    it(`${name}: every transition is taken, or allowlisted with a reason`, () => {
      expect(defined.filter((t) => !taken.get(t.key) && !allowlist[t.key]).map((t) => t.key)).toEqual([]);
    });
    it(`${name}: the allowlist names only real transitions that no test takes`, () => {
      const keys = new Set(defined.map((t) => t.key));
      expect(Object.keys(allowlist).filter((k) => !keys.has(k) || (taken.get(k) ?? 0) > 0)).toEqual([]);
      expect(Object.values(allowlist).filter((reason) => reason.trim().length < 20)).toEqual([]);
    });
  }

  afterAll(() => {
    process.stdout.write(`${lines.join('\n')}\n`);
  });
});
