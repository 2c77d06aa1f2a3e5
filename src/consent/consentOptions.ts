/** `--confirm OPS` and `--confirm-window OP=SECONDS,…`, checked once at start. */
import { CONSENT_OPERATIONS, type ConsentOperation } from './consentRequest.js';

export class ConsentOptionError extends Error {}

/** A decision window may stay open at most a day: past that, "ask me" has stopped meaning anything. */
const MAX_WINDOW_SECONDS = 86_400;

const isOperation = (word: string): word is ConsentOperation => (CONSENT_OPERATIONS as readonly string[]).includes(word);

/** The operations `--confirm` names (sign, decrypt, auth; `all` for the three), comma-separated. */
export function parseConsentOperations(entries: readonly string[]): ReadonlySet<ConsentOperation> {
  const words = entries.flatMap((entry) => entry.split(',')).map((word) => word.trim().toLowerCase()).filter((word) => word !== '');
  if (words.length === 0) throw new ConsentOptionError(`takes operations: ${CONSENT_OPERATIONS.join(', ')} or all`);
  const operations = new Set<ConsentOperation>();
  for (const word of words) {
    if (word === 'all') CONSENT_OPERATIONS.forEach((operation) => operations.add(operation));
    else if (isOperation(word)) operations.add(word);
    else throw new ConsentOptionError(`'${word}' is not an operation (${CONSENT_OPERATIONS.join(', ')} or all)`);
  }
  return operations;
}

/** Seconds an approval covers per operation: `sign=0,decrypt=300`. An operation not named gets 0 (ask every time). */
export function parseConsentWindows(entries: readonly string[], operations: ReadonlySet<ConsentOperation>): Partial<Record<ConsentOperation, number>> {
  const windows: Partial<Record<ConsentOperation, number>> = {};
  for (const entry of entries.flatMap((e) => e.split(',')).map((e) => e.trim()).filter((e) => e !== '')) {
    const match = /^([a-z]+)=(\d{1,6})$/.exec(entry.toLowerCase());
    if (!match || !isOperation(match[1]!)) throw new ConsentOptionError(`'${entry}' is not OPERATION=SECONDS (e.g. decrypt=300)`);
    const operation = match[1];
    const seconds = Number(match[2]);
    if (seconds > MAX_WINDOW_SECONDS) throw new ConsentOptionError(`'${entry}': a window is at most ${MAX_WINDOW_SECONDS} seconds`);
    if (!operations.has(operation)) throw new ConsentOptionError(`'${entry}': ${operation} is not asked for (add it to --confirm)`);
    windows[operation] = seconds;
  }
  return windows;
}
