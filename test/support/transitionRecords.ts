/**
 * Transitions taken by live actors in real-socket tests. Every proxy a test starts records them; the counts
 * go to test-output/transitions/ when the proxy closes, and test/transitionCoverage.test.ts, which runs after
 * the rest of the suite, adds them up.
 */
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { transitionRecorder } from '../../src/machineTools/trace.js';

export const RECORDS_DIR = path.resolve('test-output', 'transitions');

export function startRecording() {
  const counts: Record<string, number> = {};
  return {
    observer: transitionRecorder(({ machine, key }) => {
      const id = `${machine}\t${key}`;
      counts[id] = (counts[id] ?? 0) + 1;
    }),
    save(label: string) {
      if (Object.keys(counts).length === 0) return;
      fs.mkdirSync(RECORDS_DIR, { recursive: true });
      fs.writeFileSync(path.join(RECORDS_DIR, `${process.pid}-${randomUUID()}.json`), JSON.stringify({ label, counts }));
    },
  };
}

/** machine → transition key → times taken, over every saved record. */
export function readRecords(): Map<string, Map<string, number>> {
  const totals = new Map<string, Map<string, number>>();
  if (!fs.existsSync(RECORDS_DIR)) return totals;
  for (const file of fs.readdirSync(RECORDS_DIR)) {
    const { counts } = JSON.parse(fs.readFileSync(path.join(RECORDS_DIR, file), 'utf8')) as { counts: Record<string, number> };
    for (const [id, n] of Object.entries(counts)) {
      const [machine, key] = id.split('\t') as [string, string];
      const perMachine = totals.get(machine) ?? new Map<string, number>();
      perMachine.set(key, (perMachine.get(key) ?? 0) + n);
      totals.set(machine, perMachine);
    }
  }
  return totals;
}
