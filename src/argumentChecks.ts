/**
 * Argument checks: what a forwarded session may send, read past the verb. On whenever a policy is (`--allow`,
 * `--deny`, `--keys`, `--preset`, `--allow-option`; not `--restricted` alone), or alone with `--check-arguments`; a
 * line that fails gets ERR Forbidden
 * with the rule `arguments` and never reaches the agent.
 *
 * Every check reads the line as gpg-agent 2.2.40 does (agent/command.c, common/server-help.c, libassuan 2.5.5's
 * assuan-handler.c), and where it is stricter than the agent it refuses only what no GnuPG client sends:
 * - libassuan strips one CR before the LF (assuan-buffer.c _assuan_read_line); the command word ends at a blank
 *   (space or tab) and blanks after it are skipped (dispatch_command); handlers see a C string, so a NUL ends the
 *   line for them. A checked line holding a NUL or another CR is refused: the agent would read less than the proxy
 *   checked, and a libassuan client cannot send either (assuan_write_line takes a C string; CR must be `%0D`).
 * - Verbs are matched case-insensitively (dispatch_command falls back to my_strcasecmp); OPTION names and SETHASH
 *   `--hash=` names are not (option_handler and has_option use strcmp/strstr), so `OPTION Display=x` is an unknown
 *   option here as at the agent.
 *
 * Only the verbs below are read; every other line (D, END, CAN, a data run) costs one table lookup.
 * Nothing of a line is kept or logged.
 */
import type { CommandVerb } from './protocol/classify.js';
import { contentLength } from './protocol/classify.js';

/** Presets: named sets of checks for a kind of forwarded use. */
export const PRESETS = ['yubikey'] as const;
export type Preset = (typeof PRESETS)[number];

export interface ArgumentCheckOptions {
  /** `NAME` (any value) or `NAME=VALUE` (that value only): OPTIONs allowed beyond the defaults (`--allow-option`). */
  allowOptions?: readonly string[];
  /** `yubikey`: read-only card queries and card key uses through SCD; no card changes (see YUBIKEY_SCD). */
  preset?: Preset;
}

/** Whether a line, read as `verb`, passes the argument checks. */
export type ArgumentCheck = (line: Buffer, verb: CommandVerb) => boolean;

export class ArgumentCheckError extends Error {}

// ---------------------------------------------------------------------------------------------------------------
// OPTION

/**
 * What a forwarded session may set with OPTION, by name as gpg-agent 2.2.40's option_handler knows it. `true`: any
 * value; a set: those values only; a string: refused, and why. A name not here is refused (the agent answers
 * Unknown option to it anyway).
 */
const OPTION_RULES: Readonly<Record<string, true | ReadonlySet<string> | string>> = {
  // Tells the agent which errors the client understands (GPG_ERR_FULLY_CANCELED); gpg sends it on every connection.
  'agent-awareness': true,
  // parse_pinentry_mode (common/agent-opt.c): ask = default (the user's own pinentry), cancel and error make the
  // agent refuse to prompt. loopback hands every passphrase prompt to the client as INQUIRE PASSPHRASE: the
  // forwarded side would answer the user's prompts itself (and learn what it is given), with no pinentry shown.
  'pinentry-mode': new Set(['ask', 'default', 'cancel', 'error']),
  // 0 makes the agent ask for the passphrase on every signing instead of using its cache: it can only ask more.
  'use-cache-for-signing': true,
  // How strongly keys stored by this connection are protected (values below 65536 fall back to the default);
  // this connection's own keys only.
  's2k-count': true,
  // Only narrowing: remote or browser makes this connection restricted; once restricted the agent forbids a change.
  'pretend-request-origin': new Set(['remote', 'browser']),
  // These set the environment the agent starts pinentry with (session_env_setenv): a forwarded session must not
  // send the user's pinentry, and the passphrase typed into it, to a display or terminal of its choosing.
  // Refused, the agent uses its own startup environment, as on its extra socket.
  display: 'would choose the X display of the pinentry',
  xauthority: 'would choose the X authority file of the pinentry',
  ttyname: 'would choose the terminal of the pinentry',
  ttytype: 'would choose the terminal type of the pinentry',
  putenv: 'would set any variable of the pinentry environment',
  'pinentry-user-data': "would pass data to the user's pinentry",
  'lc-ctype': "would choose the pinentry's character set",
  'lc-messages': "would choose the pinentry's language",
  // With it the agent sends INQUIRE PINENTRY_LAUNCHED (the pinentry's pid, flavor, tty, display) while it prompts:
  // gpg turns it into its PINENTRY_LAUNCHED status, which GPGME front ends wait on. It sets nothing at the agent.
  'allow-pinentry-notify': true,
  // Sets the TTL of passphrases cached for this connection's GET_PASSPHRASE: past the user's own cache settings.
  'cache-ttl-opt-preset': "would keep passphrases cached longer than the user's settings",
};

/**
 * The OPTIONs that set the pinentry's environment. gpg sends them on every connection (send_pinentry_environment)
 * and gives up on a Forbidden unless the agent says it is restricted: so, refused, they are acknowledged with OK by
 * the proxy and dropped, and the agent shows its pinentry where its own user is, as a forwarded setup wants.
 */
const PINENTRY_ENVIRONMENT: ReadonlySet<string> = new Set([
  'display', 'xauthority', 'ttyname', 'ttytype', 'putenv', 'pinentry-user-data', 'lc-ctype', 'lc-messages',
]);

/** Whether an OPTION line (refused by the checks) sets the pinentry's environment: acknowledged and dropped. */
export function setsPinentryEnvironment(line: Buffer): boolean {
  const argument = argumentOf(line);
  const option = argument === undefined ? undefined : readOption(argument);
  return option !== undefined && PINENTRY_ENVIRONMENT.has(option.name);
}

/** The OPTION names gpg-agent 2.2.40 knows (those `--allow-option` takes). */
export const OPTION_NAMES: readonly string[] = Object.keys(OPTION_RULES);

/** An allowed OPTION: any value (undefined), or exactly this one. */
interface OptionGrant {
  name: string;
  value: string | undefined;
}

/** Checks `--allow-option` entries (`NAME` or `NAME=VALUE`, comma-separated); throws naming a bad one. */
export function parseAllowedOptions(entries: readonly string[]): OptionGrant[] {
  const grants: OptionGrant[] = [];
  for (const entry of entries.flatMap((e) => e.split(',')).map((e) => e.trim()).filter((e) => e !== '')) {
    const eq = entry.indexOf('=');
    // The agent's names are lower-case and matched exactly; a user's `DISPLAY` means `display`.
    const name = (eq === -1 ? entry : entry.slice(0, eq)).trim().replace(/^--/, '').toLowerCase();
    const value = eq === -1 ? undefined : entry.slice(eq + 1).trim();
    if (!Object.hasOwn(OPTION_RULES, name)) throw new ArgumentCheckError(`unknown option '${name}' (gpg-agent knows: ${OPTION_NAMES.join(' ')})`);
    if (value === '') throw new ArgumentCheckError(`'${entry}': give a value after '=', or the name alone for any value`);
    grants.push({ name, value });
  }
  if (grants.length === 0) throw new ArgumentCheckError('takes option names, NAME or NAME=VALUE, comma-separated');
  return grants;
}

/**
 * Name and value of an OPTION line's argument as libassuan's std_handler_option reads them, or undefined where it
 * answers a syntax error. `OPTION name=value`, `OPTION name value` and `OPTION name = value` are the same; blanks
 * around them are dropped (trailing ones only when the value is longer than one character: the loop stops at
 * `p > value`); a leading `--` is dropped, a single `-` is an error.
 */
export function readOption(argument: string): { name: string; value: string } | undefined {
  let i = 0;
  while (isBlank(argument, i)) i++;
  if (i === argument.length || argument[i] === '=') return undefined;
  const keyStart = i;
  while (i < argument.length && !isBlank(argument, i) && argument[i] !== '=') i++;
  let name = argument.slice(keyStart, i);
  let value = '';
  if (i < argument.length) {
    if (isBlank(argument, i)) i++;
    while (isBlank(argument, i)) i++;
    if (argument[i] === '=') {
      i++;
      while (isBlank(argument, i)) i++;
      if (i === argument.length) return undefined; // "option argument expected"
    }
    value = argument.slice(i);
    let p = value.length - 1;
    while (p > 0 && isBlank(value, p)) p--;
    if (p > 0) value = value.slice(0, p + 1);
  }
  if (name.startsWith('--') && name.length > 2) name = name.slice(2);
  if (name.startsWith('-')) return undefined; // "option should not begin with one dash"
  return { name, value };
}

function optionAllowed(argument: string, grants: readonly OptionGrant[]): boolean {
  const option = readOption(argument);
  if (!option) return false;
  const { name, value } = option;
  if (grants.some((g) => g.name === name && (g.value === undefined || g.value === value))) return true;
  const rule = Object.hasOwn(OPTION_RULES, name) ? OPTION_RULES[name] : undefined;
  if (rule === true) return true;
  if (rule instanceof Set) return rule.has(value);
  return false;
}

// ---------------------------------------------------------------------------------------------------------------
// SETHASH

/**
 * Digests a forwarded session may have signed, with their length in bytes. Numbers are libgcrypt's GCRY_MD_* (read
 * with strtoul by cmd_sethash), names the `--hash=` names cmd_sethash knows. gpg-agent 2.2.40 itself takes any hash
 * of 16, 20, 24, 28, 32, 48 or 64 bytes for any algorithm; here the length must be the algorithm's.
 * MD5 (1, --hash=md5) is refused: collisions are cheap, so a signature over an MD5 digest chosen by the far side
 * also signs a colliding document; gpg refuses MD5 signatures itself. SHA-1 stays: old DSA keys sign with it.
 */
const DIGEST_BYTES_BY_NUMBER: ReadonlyMap<string, number> = new Map([
  ['2', 20], // SHA1
  ['3', 20], // RMD160
  ['8', 32], // SHA256
  ['9', 48], // SHA384
  ['10', 64], // SHA512
  ['11', 28], // SHA224
  ['312', 28], // SHA3-224
  ['313', 32], // SHA3-256
  ['314', 48], // SHA3-384
  ['315', 64], // SHA3-512
  ['326', 32], // SM3
]);
const DIGEST_BYTES_BY_NAME: ReadonlyMap<string, number> = new Map([
  ['sha1', 20],
  ['sha224', 28],
  ['sha256', 32],
  ['sha384', 48],
  ['sha512', 64],
  ['rmd160', 20],
  // MD_USER_TLS_MD5SHA1: MD5 and SHA-1 concatenated (TLS 1.0/1.1 client authentication, gpgsm); 36 bytes only.
  ['tls-md5sha1', 36],
]);

/**
 * `SETHASH <number> <hex>` or `SETHASH --hash=<name> <hex>`, nothing else, as gpg and gpgsm send it. Stricter than
 * cmd_sethash, which also takes: a sign or overflow in the number (strtoul: `-4294967288` and `4294967304` are 8),
 * digits run into the hex (`8abc`), more options (`--hash=sha256 --hash=sha1` is SHA-1: has_option tests sha1
 * first), and words after the hex (parse_hexstring stops at a blank). `--inquire` and `--hash=none` are 2.3's forms;
 * 2.2.40 answers them with an error, so they are refused here too.
 */
const SETHASH_FORM = /^(?:([1-9][0-9]{0,3})|--hash=([a-z0-9-]+))[ \t]+([0-9A-Fa-f]+)[ \t]*$/;

function setHashAllowed(argument: string): boolean {
  const match = SETHASH_FORM.exec(argument);
  if (!match) return false;
  const [, number, name, hex] = match;
  const bytes = number !== undefined ? DIGEST_BYTES_BY_NUMBER.get(number) : DIGEST_BYTES_BY_NAME.get(name!);
  return bytes !== undefined && hex!.length === 2 * bytes;
}

// ---------------------------------------------------------------------------------------------------------------
// Keygrips and cache ids

/** Where a command reads its keygrip (command.c, 2.2.40 unless said). */
const KEYGRIP_AT: Readonly<Partial<Record<CommandVerb, (argument: string) => boolean>>> = {
  // cmd_sigkey (SIGKEY and SETKEY): parse_keygrip on the line itself; no options.
  SIGKEY: (a) => keygripAt(a, 0),
  SETKEY: (a) => keygripAt(a, 0),
  // cmd_havekey 2.2.40: every blank-separated word is a keygrip, from the line's start (no options). 2.3+ adds
  // `--info <grip>` and `--list[=N]` (lists keys; nothing to check here, --keys and --restricted judge listing).
  HAVEKEY: (a) => {
    if (hasOption(a, '--info')) return keygripAt(a, skipOptions(a));
    if (hasOptionName(a, '--list')) return true;
    return everyWordIsKeygrip(a);
  },
  // cmd_keyinfo: --ssh-list and --list list keys; otherwise parse_keygrip after skip_options.
  KEYINFO: (a) => hasOption(a, '--ssh-list') || hasOption(a, '--list') || keygripAt(a, skipOptions(a)),
  // cmd_readkey: with --card the argument is a card key id (OPENPGP.1, $SIGNKEYID), not a keygrip.
  READKEY: (a) => (hasOption(a, '--card') ? skipOptions(a) < a.length : keygripAt(a, skipOptions(a))),
  // cmd_export_key, cmd_delete_key, cmd_passwd, cmd_keytocard: parse_keygrip after skip_options.
  EXPORT_KEY: (a) => keygripAt(a, skipOptions(a)),
  DELETE_KEY: (a) => keygripAt(a, skipOptions(a)),
  PASSWD: (a) => keygripAt(a, skipOptions(a)),
  KEYTOCARD: (a) => keygripAt(a, skipOptions(a)),
  // cmd_keyattr (2.3.7+; unknown to 2.2.40): split_fields after skip_options, the first field a keygrip.
  KEYATTR: (a) => keygripAt(a, skipOptions(a)),
  // The passphrase cache commands name a cache id, not a keygrip (a key's passphrase is cached under its keygrip,
  // but any string is an id). cmd_get_passphrase and cmd_clear_passphrase: after skip_options, the id runs to a
  // space (only a space) and must be 1 to 50 bytes.
  GET_PASSPHRASE: (a) => cacheIdAt(a, skipOptions(a)),
  CLEAR_PASSPHRASE: (a) => cacheIdAt(a, skipOptions(a)),
  // cmd_preset_passphrase: `<id> -1 [<hex>]`: the id runs to a blank, the timeout must be -1, a passphrase is an
  // even number of hex digits.
  PRESET_PASSPHRASE: (a) => /^[^ \t]+[ \t]+-1(?:[ \t]+(?:[0-9A-Fa-f]{2})*)?[ \t]*$/.test(a.slice(skipOptions(a))),
};

const MAX_CACHE_ID = 50;

/** parse_keygrip at `at`: 40 hex digits (parse_hexstring: then a blank or the end; 20 bytes). */
function keygripAt(argument: string, at: number): boolean {
  let end = at;
  while (end < argument.length && isHexDigit(argument.charCodeAt(end))) end++;
  return end - at === 40 && (end === argument.length || isBlank(argument, end));
}

function everyWordIsKeygrip(argument: string): boolean {
  const words = argument.split(/[ \t]+/).filter((w) => w !== '');
  return words.length > 0 && words.every((w) => keygripAt(w, 0));
}

function cacheIdAt(argument: string, at: number): boolean {
  const space = argument.indexOf(' ', at);
  const length = (space === -1 ? argument.length : space) - at;
  return length >= 1 && length <= MAX_CACHE_ID;
}

// ---------------------------------------------------------------------------------------------------------------
// SCD and the yubikey preset

/**
 * `--preset yubikey`: scdaemon commands (scd/command.c, 2.2.40) a forwarded session may send through `SCD`.
 * Reads of the card and uses of its keys; never a change to the card, its PINs or the shared scdaemon:
 * - SERIALNO, GETATTR, GETINFO, READKEY, READCERT: reads. LEARN: a read, `--force` included (scdaemon's cmd_learn:
 *   it only skips the KNOWNCARDP inquiry; the agent-level `LEARN --force`, which rewrites key stubs, is another
 *   command and not governed here).
 * - SETDATA, PKSIGN, PKAUTH, PKDECRYPT: uses of a card key; the PIN is asked for by the user's own pinentry.
 * - RESTART: resets this connection's context only (cmd_restart sends no RESET to the card); gpg-agent sends it
 *   itself when it reuses its scdaemon connection.
 * Refused (anything not listed; for the record): PASSWD, GENKEY, WRITEKEY, WRITECERT, SETATTR (change the card);
 * CHECKPIN (a management step; `<serial>[CHV3]` verifies the admin PIN and leaves the card admin-verified, and
 * PKSIGN/PKDECRYPT ask for the PIN themselves); APDU (raw card access); RESET (resets the card: reset_notify →
 * app_reset with send_reset); LOCK/UNLOCK (lock scdaemon against every other session); DISCONNECT, KILLSCD (the
 * card or scdaemon for everyone); RANDOM, OPTION, BYE, NOP (not needed for using keys).
 */
const YUBIKEY_SCD: ReadonlySet<string> = new Set([
  'SERIALNO', 'GETATTR', 'GETINFO', 'READKEY', 'READCERT', 'LEARN', 'SETDATA', 'PKSIGN', 'PKAUTH', 'PKDECRYPT', 'RESTART',
]);
/** Agent-level commands the preset refuses: they write keys to the card (KEYTOCARD) or make keys (GENKEY). */
const YUBIKEY_REFUSED: ReadonlySet<CommandVerb> = new Set<CommandVerb>(['KEYTOCARD', 'GENKEY']);

/**
 * cmd_scd passes its line (after the agent's dispatcher skipped the blanks after SCD) to scdaemon as it is; there
 * libassuan's dispatcher reads the command word up to a blank and matches it case-insensitively.
 */
function scdCommand(argument: string): string {
  let end = 0;
  while (end < argument.length && !isBlank(argument, end)) end++;
  return argument.slice(0, end).toUpperCase();
}

// ---------------------------------------------------------------------------------------------------------------

/** The argument checks for these options. */
export function createArgumentCheck(options: ArgumentCheckOptions = {}): ArgumentCheck {
  const grants = options.allowOptions ? parseAllowedOptions(options.allowOptions) : [];
  const yubikey = options.preset === 'yubikey';
  const checks: Partial<Record<CommandVerb, (argument: string) => boolean>> = {
    ...KEYGRIP_AT,
    SETHASH: setHashAllowed,
    OPTION: (a) => optionAllowed(a, grants),
    ...(yubikey ? { SCD: (a: string) => YUBIKEY_SCD.has(scdCommand(a)) } : { SCD: () => true }),
  };
  return (line, verb) => {
    if (yubikey && YUBIKEY_REFUSED.has(verb)) return false;
    const check = checks[verb];
    if (!check) return true;
    const argument = argumentOf(line);
    return argument !== undefined && check(argument);
  };
}

const NUL = 0;
const CR = 0x0d;

/**
 * The line after the command word and the blanks after it, as the agent's handler gets it; undefined when the
 * line holds a NUL or a CR other than the one before its LF (libassuan strips only that one).
 */
function argumentOf(line: Buffer): string | undefined {
  const n = contentLength(line);
  const nul = line.indexOf(NUL);
  if (nul !== -1 && nul < n) return undefined;
  const cr = line.indexOf(CR);
  if (cr !== -1 && cr < n) return undefined;
  let i = 0;
  while (i < n && line[i] !== 0x20 && line[i] !== 0x09) i++;
  while (i < n && (line[i] === 0x20 || line[i] === 0x09)) i++;
  return line.toString('latin1', i, n);
}

/** gnupg's spacep: a space or a tab. */
function isBlank(text: string, at: number): boolean {
  const c = text[at];
  return c === ' ' || c === '\t';
}

function isHexDigit(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x46) || (code >= 0x61 && code <= 0x66);
}

/**
 * common/server-help.c skip_options: the index of the first word that does not start with `--`, blanks skipped.
 * Its comment says a lone `--` ends the options; its loop skips it like any other, and the `--words` after it too.
 */
export function skipOptions(line: string): number {
  let i = 0;
  while (isBlank(line, i)) i++;
  while (line[i] === '-' && line[i + 1] === '-') {
    while (i < line.length && !isBlank(line, i)) i++;
    while (isBlank(line, i)) i++;
  }
  return i;
}

/**
 * common/server-help.c has_option: only the FIRST occurrence of `name` counts (strstr), it must lie before the end
 * of the options, and be a whole word.
 */
export function hasOption(line: string, name: string): boolean {
  const s = line.indexOf(name);
  if (s === -1 || s >= skipOptions(line)) return false;
  const after = s + name.length;
  return (s === 0 || isBlank(line, s - 1)) && (after === line.length || isBlank(line, after));
}

/** common/server-help.c has_option_name: the first occurrence of `name`, followed by the end, a blank or `=`. */
export function hasOptionName(line: string, name: string): boolean {
  const s = line.indexOf(name);
  if (s === -1) return false;
  const after = s + name.length;
  return (s === 0 || isBlank(line, s - 1)) && (after === line.length || isBlank(line, after) || line[after] === '=');
}
