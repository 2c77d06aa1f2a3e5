/**
 * What a consent prompt asks about, and the words the person reads. `--confirm sign,decrypt,auth` holds the key
 * uses it names (PKSIGN, PKDECRYPT, and the card's PKSIGN, PKDECRYPT and PKAUTH through SCD) until a person has
 * approved them; the prompt says who asks (the caller), what (the operation, the key's user ID and keygrip, the
 * hash algorithm) and when. Nothing secret is in it: no hash value, no payload, no passphrase.
 */
import { oneLine } from '../foreignText.js';
import { contentLength } from '../protocol/classify.js';

export const CONSENT_OPERATIONS = ['sign', 'decrypt', 'auth'] as const;
export type ConsentOperation = (typeof CONSENT_OPERATIONS)[number];

/** Who asks: `key` groups requests for decision windows, `text` is what the prompt shows. */
export interface CallerDescription {
  /** The same program of the same user (or the same bridge link): a window it opened covers it. */
  readonly key: string;
  readonly text: string;
}

export interface ConsentRequest {
  readonly operation: ConsentOperation;
  readonly sessionId: string;
  /** The key the agent holds for the connection (SIGKEY/SETKEY it accepted), if any; none for a card's key use. */
  readonly keygrip: string | undefined;
  /** For a use of a card's key (`SCD PKAUTH OPENPGP.3`): the card's name for the key, as the line gives it. */
  readonly cardKey?: string | undefined;
  /** Its user ID in the keyring the proxy sees, if found. */
  readonly userId: string | undefined;
  /** The hash algorithm of a signature (SETHASH the agent accepted), if any. */
  readonly hash: string | undefined;
  readonly caller: CallerDescription;
  readonly at: Date;
}

/** The command words that use a key, and the operation each is asked for as. */
const AGENT_USES: Readonly<Record<string, ConsentOperation>> = { PKSIGN: 'sign', PKDECRYPT: 'decrypt' };
const CARD_USES: Readonly<Record<string, ConsentOperation>> = { PKSIGN: 'sign', PKDECRYPT: 'decrypt', PKAUTH: 'auth' };

/**
 * The operation a command line asks consent for, when `confirm` names it. Read wider than the agent reads it, so
 * that no form of a key use slips past: case-insensitive, blanks before the verb skipped, and a verb that merely
 * begins with a key use's name counted as one (the agent would not run `PKSIGNX`, and asking costs nothing then).
 * `SCD` lines are read as scdaemon reads the command they carry (after the blanks gpg-agent skips).
 */
export function consentOperation(line: Buffer, confirm: ReadonlySet<ConsentOperation>): ConsentOperation | undefined {
  if (confirm.size === 0) return undefined;
  const [verb = '', next = ''] = words(line, 2);
  let operation = usePrefix(verb, AGENT_USES);
  if (operation === undefined && verb.startsWith('SCD')) {
    // `SCD PKSIGN …`; also `SCDPKSIGN`-like run-ons are not commands, but blanks of any kind separate.
    operation = usePrefix(verb === 'SCD' ? next : '', CARD_USES);
  }
  return operation !== undefined && confirm.has(operation) ? operation : undefined;
}

/**
 * For an `SCD` key use, the card key it names (the first operand after the card command and its options, as
 * scdaemon's cmd_pksign/cmd_pkauth/cmd_pkdecrypt read it), shown only if it is a plain key reference; undefined
 * for a line that is not an SCD key use.
 */
export function cardKeyOf(line: Buffer): string | undefined {
  const text = line.toString('latin1', 0, contentLength(line));
  const words = text.split(/[ \t]+/).filter((word) => word !== '');
  if ((words[0] ?? '').toUpperCase() !== 'SCD') return undefined;
  const operand = words.slice(2).find((word) => !word.startsWith('--')) ?? '';
  return /^[A-Za-z0-9._-]{1,64}$/.test(operand) ? operand : operand === '' ? 'none named' : 'not a plain key reference';
}

function usePrefix(word: string, uses: Readonly<Record<string, ConsentOperation>>): ConsentOperation | undefined {
  for (const [name, operation] of Object.entries(uses)) if (word.startsWith(name)) return operation;
  return undefined;
}

/** The first `count` words of a line, upper-case, split on space, tab, CR and NUL. */
/**
 * `SCD APDU …`: a raw command to the card, which can sign or decrypt once its PIN is verified, and which no prompt
 * could describe. With `--confirm` it is refused (read as widely as consentOperation reads key uses).
 */
export function isRawCardAccess(line: Buffer): boolean {
  const [verb = '', next = ''] = words(line, 2);
  return verb === 'SCD' && next.startsWith('APDU');
}

function words(line: Buffer, count: number): string[] {
  // The whole line is read, not just its first bytes: gpg-agent skips every blank and tab after `SCD`
  // (libassuan dispatch_command), so `SCD` + 61 blanks + `PKSIGN` runs the card's PKSIGN, and a cap here let it
  // through unasked. A line is at most 1000 bytes.
  const end = contentLength(line);
  return line
    .toString('latin1', 0, end)
    .toUpperCase()
    .split(/[ \t\r\0]+/)
    .filter((word) => word !== '')
    .slice(0, count);
}

const VERB_OF: Record<ConsentOperation, string> = { sign: 'sign with', decrypt: 'decrypt with', auth: 'authenticate with' };
/**
 * Bounds on what the prompt quotes (caller, user ID), tightened until the escaped command fits Assuan's 1000-byte
 * line: a user ID in a script of three-byte characters grows ninefold when escaped.
 */
const QUOTE_BOUNDS: readonly (readonly [number, number])[] = [[160, 100], [60, 60], [24, 24]];
const MAX_COMMAND_BYTES = 990;

/** The `GET_CONFIRMATION` command line (without LF) that shows this request. */
export function confirmationCommand(request: ConsentRequest): string {
  let command = '';
  for (const [caller, userId] of QUOTE_BOUNDS) {
    command = `GET_CONFIRMATION ${confirmationArgument(promptText(request, caller, userId))}`;
    if (command.length <= MAX_COMMAND_BYTES) return command;
  }
  return command.slice(0, MAX_COMMAND_BYTES).replace(/%[0-9A-F]?$/, '');
}

/** The text of the prompt, one fact per line. */
export function promptText(request: ConsentRequest, maxCaller = 160, maxUserId = 100): string {
  const lines = [
    `A session through assuan-proxy asks to ${VERB_OF[request.operation]} your key.`,
    '',
    `Who: ${shown(request.caller.text, maxCaller)}`,
    `What: ${request.operation}${request.hash ? ` (hash ${request.hash})` : ''}`,
    `Key: ${request.userId ? shown(request.userId, maxUserId) : 'not in the keyring here'}`,
    ...(request.cardKey !== undefined ? [`Card key: ${request.cardKey}`] : [`Keygrip: ${request.keygrip ?? 'none selected'}`]),
    `When: ${request.at.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}, session ${shown(request.sessionId, 40)}`,
    '',
    'Allow it?',
  ];
  return lines.join('\n');
}

/** Text another party chose (a program name, a user ID), on one line: control characters shown as `?`, bounded. */
function shown(text: string, max: number): string {
  const clean = oneLine(text);
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/**
 * The argument of `GET_CONFIRMATION`: gpg-agent turns `+` into a blank and passes the rest to the pinentry,
 * which decodes `%XX` (agent/command.c cmd_get_confirmation, plus_to_blank). Everything but letters, digits and
 * a few marks is escaped, the bytes of UTF-8 too, so the line holds no blank, CR, LF or `%` of its own.
 */
export function confirmationArgument(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    if (byte === 0x20) out += '+';
    else if ((byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || '.,:;()<>@_-/"\'?!='.includes(String.fromCharCode(byte))) {
      out += String.fromCharCode(byte);
    } else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
