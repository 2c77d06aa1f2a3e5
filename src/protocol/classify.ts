/**
 * Classification of complete Assuan lines (terminator included), read byte by byte with no string decoding of
 * payloads. The results carry only what may be shown anywhere: a kind, a verb from a fixed vocabulary and a
 * byte count. A word we do not know is reported as UNKNOWN, never echoed: a user may type a passphrase where
 * a command was expected.
 */

/** Syntactic kind of a client line; what it means (command or inquire answer) depends on the session state. */
export type ClientLineKind =
  | 'command'
  | 'comment'
  | 'empty'
  | 'data'
  /** A D line with a `%` not followed by two hex digits: wedges gpg-agent 2.2.40 inside an INQUIRE. */
  | 'malformedData'
  | 'end'
  | 'cancel';

export type AgentLineKind =
  | 'ok'
  /** `OK closing connection`: the agent closes the connection next (BYE, KILLAGENT). */
  | 'okClosing'
  | 'err'
  | 'inquire'
  | 'status'
  | 'comment'
  | 'data'
  | 'end'
  /** Not an Assuan response line: a libassuan client would abort on it. */
  | 'invalid';

export interface ClientLineInfo {
  readonly kind: ClientLineKind;
  readonly verb: CommandVerb;
  /** Whole line including its terminator. */
  readonly bytes: number;
}

export interface AgentLineInfo {
  readonly kind: AgentLineKind;
  /** INQUIRE keyword or status keyword from a fixed vocabulary; '' for other kinds. */
  readonly keyword: string;
  readonly bytes: number;
}

/** gpg-agent 2.2–2.4 and libassuan command words; anything else is reported as UNKNOWN. */
export const COMMAND_VERBS = [
  'AUTH', 'BYE', 'CAN', 'CANCEL', 'CLEAR_PASSPHRASE', 'D', 'DELETE_KEY', 'END', 'EXPORT_KEY', 'GENKEY',
  'GETEVENTCOUNTER', 'GETINFO', 'GETVAL', 'GET_CONFIRMATION', 'GET_PASSPHRASE', 'HAVEKEY', 'HELP', 'IMPORT_KEY',
  'INPUT', 'ISTRUSTED', 'KEYATTR', 'KEYINFO', 'KEYTOCARD', 'KEYWRAP_KEY', 'KILLAGENT', 'LEARN', 'LISTTRUSTED',
  'MARKTRUSTED', 'NOP', 'OPTION', 'OUTPUT', 'PASSWD', 'PKDECRYPT', 'PKSIGN', 'PRESET_PASSPHRASE', 'PUTVAL',
  'PUT_SECRET', 'QUIT', 'READKEY', 'RELOADAGENT', 'RESET', 'SCD', 'SETHASH', 'SETKEY', 'SETKEYDESC', 'SIGKEY',
  'UPDATESTARTUPTTY',
] as const;
export type CommandVerb = (typeof COMMAND_VERBS)[number] | 'UNKNOWN' | '';

const INQUIRE_KEYWORDS = [
  'CERTDATA', 'CIPHERTEXT', 'CONFIRM', 'DISMISSPINPADPROMPT', 'KEYDATA', 'KEYPARAM', 'KNOWNCARDP', 'NEEDPIN',
  'NEWPASSWD', 'NEW_PASSPHRASE', 'PASSPHRASE', 'PINENTRY_LAUNCHED', 'POPUPPINPADPROMPT', 'SECRET', 'TBSDATA',
] as const;
const STATUS_KEYWORDS = [
  'CACHE_NONCE', 'INQUIRE_MAXLEN', 'KEYINFO', 'PADDING', 'PASSWD_NONCE', 'PINENTRY_LAUNCHED', 'PROGRESS',
] as const;

const commandVerbs: ReadonlyMap<string, CommandVerb> = new Map(COMMAND_VERBS.map((v) => [v, v]));
const inquireKeywords: ReadonlySet<string> = new Set(INQUIRE_KEYWORDS);
const statusKeywords: ReadonlySet<string> = new Set(STATUS_KEYWORDS);
const LONGEST_WORD = 24;

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const HASH = 0x23;
const PERCENT = 0x25;

/** Length of the line's content: without its LF and a single CR directly before it (libassuan's rule). */
export function contentLength(line: Buffer): number {
  let n = line.length;
  if (n > 0 && line[n - 1] === LF) n--;
  if (n > 0 && line[n - 1] === CR) n--;
  return n;
}

export function classifyClientLine(line: Buffer): ClientLineInfo {
  const n = contentLength(line);
  const bytes = line.length;
  if (n === 0) return { kind: 'empty', verb: '', bytes };
  const first = line[0]!;
  if (first === HASH) return { kind: 'comment', verb: '', bytes };
  if ((first === 0x44 || first === 0x64) && n >= 2 && line[1] === SPACE) {
    return { kind: dataEscapesValid(line, 2, n) ? 'data' : 'malformedData', verb: 'D', bytes };
  }
  if (n >= 3 && upper(line[0]!) === 0x43 && upper(line[1]!) === 0x41 && upper(line[2]!) === 0x4e) {
    // libassuan's inquire reader takes any line starting with CAN (case-insensitive) as a cancel.
    return { kind: 'cancel', verb: commandVerb(line, n), bytes };
  }
  if (n >= 3 && upper(line[0]!) === 0x45 && upper(line[1]!) === 0x4e && upper(line[2]!) === 0x44 && wordEnds(line, 3, n)) {
    return { kind: 'end', verb: 'END', bytes };
  }
  return { kind: 'command', verb: commandVerb(line, n), bytes };
}

export function classifyAgentLine(line: Buffer): AgentLineInfo {
  const n = contentLength(line);
  const bytes = line.length;
  if (n === 0) return { kind: 'invalid', keyword: '', bytes };
  const c0 = line[0]!;
  if (c0 === 0x4f && n >= 2 && line[1] === 0x4b && wordEnds(line, 2, n)) {
    return { kind: isClosingOk(line, n) ? 'okClosing' : 'ok', keyword: '', bytes };
  }
  if (c0 === 0x44 && n >= 2 && line[1] === SPACE) return { kind: 'data', keyword: '', bytes };
  if (c0 === 0x53 && n >= 2 && line[1] === SPACE) {
    return { kind: 'status', keyword: keywordAt(line, 2, n, statusKeywords), bytes };
  }
  if (c0 === HASH) return { kind: 'comment', keyword: '', bytes };
  if (startsWithWord(line, n, 'ERR')) return { kind: 'err', keyword: '', bytes };
  if (startsWithWord(line, n, 'INQUIRE')) {
    return { kind: 'inquire', keyword: keywordAt(line, 8, n, inquireKeywords), bytes };
  }
  if (startsWithWord(line, n, 'END')) return { kind: 'end', keyword: '', bytes };
  return { kind: 'invalid', keyword: '', bytes };
}

/**
 * True when every `%` in line[from, to) is followed by two hex digits. gpg-agent's inquire decoder loops
 * forever on a `%` with fewer than two bytes after it, and turns a `%` followed by non-hex into junk bytes.
 */
export function dataEscapesValid(line: Buffer, from: number, to: number): boolean {
  let i = line.indexOf(PERCENT, from);
  while (i !== -1 && i < to) {
    if (i + 2 >= to || !isHex(line[i + 1]!) || !isHex(line[i + 2]!)) return false;
    i = line.indexOf(PERCENT, i + 3);
  }
  return true;
}

/** The command word as libassuan's dispatcher finds it: up to a space, a tab, or a NUL (C string end). */
function commandVerb(line: Buffer, n: number): CommandVerb {
  let end = 0;
  while (end < n && end <= LONGEST_WORD && line[end] !== SPACE && line[end] !== TAB && line[end] !== 0) end++;
  if (end === 0 || end > LONGEST_WORD) return 'UNKNOWN';
  return commandVerbs.get(line.toString('latin1', 0, end).toUpperCase()) ?? 'UNKNOWN';
}

function keywordAt(line: Buffer, from: number, n: number, vocabulary: ReadonlySet<string>): string {
  let end = from;
  while (end < n && end - from <= LONGEST_WORD && line[end] !== SPACE) end++;
  const word = line.toString('latin1', from, end);
  return vocabulary.has(word) ? word : 'OTHER';
}

const CLOSING_OK = Buffer.from('OK closing connection', 'latin1');
function isClosingOk(line: Buffer, n: number): boolean {
  return n === CLOSING_OK.length && line.compare(CLOSING_OK, 0, n, 0, n) === 0;
}

function startsWithWord(line: Buffer, n: number, word: string): boolean {
  if (n < word.length) return false;
  for (let i = 0; i < word.length; i++) if (line[i] !== word.charCodeAt(i)) return false;
  return wordEnds(line, word.length, n);
}

/** libassuan accepts a keyword only when the line ends there or a space (or NUL) follows. */
function wordEnds(line: Buffer, at: number, n: number): boolean {
  return at === n || line[at] === SPACE || line[at] === 0;
}

function upper(byte: number): number {
  return byte >= 0x61 && byte <= 0x7a ? byte - 0x20 : byte;
}

function isHex(byte: number): boolean {
  return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}
