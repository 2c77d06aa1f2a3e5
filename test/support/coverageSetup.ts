/** Global setup: each run starts with no transition records. */
import fs from 'node:fs';
import { RECORDS_DIR } from './transitionRecords.js';

export default function setup(): void {
  fs.rmSync(RECORDS_DIR, { recursive: true, force: true });
}
