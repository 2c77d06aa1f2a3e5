/**
 * `--keys`: the keys a session may use. gpg-agent names keys by keygrip: a client selects one with SIGKEY or
 * SETKEY (the same command) before PKSIGN or PKDECRYPT, and names one in KEYINFO, HAVEKEY, READKEY, EXPORT_KEY,
 * DELETE_KEY, PASSWD, KEYATTR, KEYTOCARD and the passphrase cache commands. With an allow-list, each of those must
 * name only keys on it; commands that list every key, make or import keys, or reach the card daemon (whose keys
 * are not named by keygrip) are refused, and so is any command the proxy does not know (default deny).
 *
 * Arguments are read as gpg-agent reads them (agent/command.c, libassuan's dispatcher): the command word ends at a
 * blank or NUL, blanks after it are skipped, the line ends at the first NUL, CR or LF; options are words starting
 * with `--` (a lone `--` ends them); a keygrip is 40 hex digits of either case ended by a blank or the line's end.
 *
 * Entries are keygrips (`&GRIP`, as gpg writes them, or 40 hex digits that are no fingerprint in the keyring) or
 * OpenPGP fingerprints, turned into keygrips with gpg when the proxy starts: a primary key's fingerprint allows it
 * and its subkeys, a subkey's fingerprint that subkey alone.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { CommandVerb } from './protocol/classify.js';
import { contentLength } from './protocol/classify.js';

const run = promisify(execFile);

/** How a command names keys: its first key argument, all of its arguments, none, or it is refused outright. */
type KeyArguments = 'first' | 'all' | 'none' | 'refused';

const KEY_ARGUMENTS: Readonly<Partial<Record<CommandVerb, KeyArguments>>> = {
  SIGKEY: 'first',
  SETKEY: 'first',
  KEYINFO: 'first',
  READKEY: 'first',
  EXPORT_KEY: 'first',
  DELETE_KEY: 'first',
  PASSWD: 'first',
  KEYATTR: 'first',
  KEYTOCARD: 'first',
  // The cache id of a key's passphrase is its keygrip.
  PRESET_PASSPHRASE: 'first',
  CLEAR_PASSPHRASE: 'first',
  HAVEKEY: 'all',
  // Its cache id is a free string, and a key's passphrase is cached under its keygrip (a preset one answers
  // here); without --no-ask it shows a pinentry with the client's own text. Neither is for a forwarded client.
  GET_PASSPHRASE: 'refused',
  // A prompt in the user's pinentry with the client's own text.
  GET_CONFIRMATION: 'refused',
  // New keys, and the card daemon's keys (named by card key references, not keygrips).
  GENKEY: 'refused',
  IMPORT_KEY: 'refused',
  LEARN: 'refused',
  SCD: 'refused',
  UNKNOWN: 'refused',
};
/** Options that make a command list every key rather than name one. */
const LISTING_OPTIONS: ReadonlySet<string> = new Set(['--list', '--ssh-list', '--card']);

const GRIP = /^[0-9A-Fa-f]{40}$/;
const FINGERPRINT = /^[0-9A-Fa-f]{40}$|^[0-9A-Fa-f]{64}$/;

export class KeyAllowListError extends Error {}

/** Checks the form of `--keys` entries (before anything starts); throws naming a bad one. */
export function checkKeyEntries(entries: readonly string[]): string[] {
  const words = entries.flatMap((entry) => entry.split(',')).map((word) => word.trim().replace(/\s+/g, '')).filter((word) => word !== '');
  if (words.length === 0) throw new KeyAllowListError('takes keygrips (&GRIP) or fingerprints, comma-separated');
  for (const word of words) {
    const grip = word.startsWith('&') ? word.slice(1) : undefined;
    if (grip !== undefined ? !GRIP.test(grip) : !FINGERPRINT.test(word)) {
      throw new KeyAllowListError(`'${word}' is neither a keygrip (&, then 40 hex digits) nor a fingerprint (40 or 64 hex digits)`);
    }
  }
  return words;
}

export class KeyAllowList {
  private readonly grips = new Set<string>();

  /** Entries checked by checkKeyEntries; no key is allowed before `resolve`. */
  constructor(readonly entries: readonly string[]) {}

  /** Turns fingerprints into keygrips with gpg (in the environment the proxy finds the agent with). */
  async resolve(env: NodeJS.ProcessEnv, log: Logger): Promise<void> {
    for (const entry of this.entries) {
      if (entry.startsWith('&')) {
        this.grips.add(entry.slice(1).toUpperCase());
        continue;
      }
      const grips = await gripsOfFingerprint(entry, env);
      if (grips.length > 0) {
        for (const grip of grips) this.grips.add(grip);
        log.info({ fingerprint: entry.toUpperCase(), keygrips: grips }, '--keys: a fingerprint, allowing its keygrips');
      } else if (GRIP.test(entry)) {
        this.grips.add(entry.toUpperCase());
        log.info({ keygrip: entry.toUpperCase() }, '--keys: no key has this fingerprint here; taken as a keygrip');
      } else {
        throw new KeyAllowListError(`--keys: no key with fingerprint ${entry} in the keyring here ('gpg --list-keys ${entry}' finds none)`);
      }
    }
  }

  /** The keygrips allowed, upper-case (for logs and tests). */
  get keygrips(): ReadonlySet<string> {
    return this.grips;
  }

  /** Whether `line`, read as the command `verb`, names only allowed keys. */
  allows(line: Buffer, verb: CommandVerb): boolean {
    const use = KEY_ARGUMENTS[verb] ?? 'none';
    if (use === 'none') return true;
    if (use === 'refused') return false;
    const words = argumentWords(line);
    let operands = 0;
    let optionsEnded = false;
    for (const word of words) {
      if (!optionsEnded && word === '--') {
        optionsEnded = true;
        continue;
      }
      if (!optionsEnded && word.startsWith('--')) {
        if (LISTING_OPTIONS.has(word.split('=')[0]!)) return false;
        continue;
      }
      operands++;
      if (!GRIP.test(word) || !this.grips.has(word.toUpperCase())) return false;
      if (use === 'first') return true;
    }
    return use === 'all' && operands > 0;
  }
}

/** The first keygrip a line names (its first operand after options, if that is a keygrip), upper-case. */
export function firstKeygrip(line: Buffer): string | undefined {
  return operands(line)[0]?.match(GRIP)?.[0]?.toUpperCase();
}

/** Every keygrip among a line's operands (after options), upper-case. */
export function keygripsNamed(line: Buffer): string[] {
  return operands(line)
    .filter((word) => GRIP.test(word))
    .map((word) => word.toUpperCase());
}

/** The words after the command word and its options (a lone `--` ends them). */
function operands(line: Buffer): string[] {
  const words = argumentWords(line);
  let i = 0;
  while (i < words.length && words[i]!.startsWith('--')) {
    if (words[i++] === '--') break;
  }
  return words.slice(i);
}

/** The words after the command word, as gpg-agent sees them: the line ends at NUL, CR or LF; blanks separate. */
function argumentWords(line: Buffer): string[] {
  let end = contentLength(line);
  const nul = line.indexOf(0);
  if (nul !== -1 && nul < end) end = nul;
  const cr = line.indexOf(0x0d);
  if (cr !== -1 && cr < end) end = cr;
  const text = line.toString('latin1', 0, end);
  const words = text.split(/[ \t]+/).filter((word) => word !== '');
  return words.slice(1);
}

/** The keygrips a fingerprint stands for: a primary key's and its subkeys', or a subkey's alone. */
async function gripsOfFingerprint(fingerprint: string, env: NodeJS.ProcessEnv): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await run('gpg', ['--batch', '--no-autostart', '--with-colons', '--with-keygrip', '--list-keys', '--', fingerprint], { env, timeout: 30_000 }));
  } catch {
    return [];
  }
  const wanted = fingerprint.toUpperCase();
  const keys: Array<{ primary: boolean; fingerprint: string; grip: string }> = [];
  let current: { primary: boolean; fingerprint: string; grip: string } | undefined;
  for (const record of stdout.split('\n').map((line) => line.split(':'))) {
    if (record[0] === 'pub' || record[0] === 'sub') keys.push((current = { primary: record[0] === 'pub', fingerprint: '', grip: '' }));
    else if (record[0] === 'fpr' && current && current.fingerprint === '') current.fingerprint = record[9] ?? '';
    else if (record[0] === 'grp' && current && current.grip === '') current.grip = record[9] ?? '';
  }
  const match = keys.find((key) => key.fingerprint === wanted);
  if (!match) return [];
  if (!match.primary) return [match.grip];
  // The primary and every subkey listed after it, up to the next primary.
  const start = keys.indexOf(match);
  const next = keys.findIndex((key, i) => i > start && key.primary);
  return keys.slice(start, next === -1 ? undefined : next).map((key) => key.grip).filter((grip) => grip !== '');
}
