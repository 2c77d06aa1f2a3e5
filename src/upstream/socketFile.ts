/**
 * What a GnuPG "socket" path may hold when it is a regular file rather than a Unix socket, parsed as libassuan
 * reads it (src/assuan-socket.c, libassuan master 92587b7, cited as `:line`):
 *
 * - `%Assuan%\nsocket=NAME\n`: a Unix redirect to the socket NAME (eval_redirection, :419-525);
 * - `<port>\n` + 16 nonce bytes: libassuan's Windows socket emulation (read_port_and_nonce, :392-411; written by
 *   _assuan_sock_bind, :1348-1354), met from WSL when the agent is Gpg4win's;
 * - `!<socket >PORT s XXXXXXXX-XXXXXXXX-XXXXXXXX-XXXXXXXX` + NUL: the Cygwin form (:367-391; written at
 *   :1340-1346; gpg-agent asks for it on its ssh socket only: create_server_socket (socket_name_ssh, 0, 1, ...)).
 *
 * Strict: we accept only the exact layout libassuan writes (and its reader accepts), and name what is wrong with
 * anything else. Where libassuan's reader is looser than its writer (atoi and sscanf skip blanks, take signs and
 * short hex words; the redirect loop stops at the first LF and keeps blanks), we reject, since no writer produces
 * such a file and guessing would hide a broken one. Pure: no I/O.
 */
import { TextDecoder } from 'node:util';

export type SocketFileContent = { form: 'redirect'; path: string } | { form: 'windows'; port: number; nonce: Buffer } | { form: 'cygwin'; port: number; nonce: Buffer };

export type SocketFileDefect =
  | 'empty'
  | 'unknownForm'
  // Windows form
  | 'noLineFeed'
  | 'portNotDecimal'
  | 'portTrailingJunk'
  | 'portLineCrLf'
  | 'nonceTooShort'
  | 'nonceTooLong'
  // Port checks shared by the Windows and Cygwin forms
  | 'portLeadingZero'
  | 'portZero'
  | 'portTooLarge'
  // Cygwin form
  | 'cygwinNoNul'
  | 'cygwinPortNotDecimal'
  | 'cygwinLayout'
  | 'cygwinNotStream'
  | 'cygwinNonceNotHex'
  | 'cygwinNonceWordWidth'
  | 'cygwinTextAfterNonce'
  // Unix redirect
  | 'redirectTooLarge'
  | 'redirectHeader'
  | 'redirectNoFinalLineFeed'
  | 'redirectEmptyName'
  | 'redirectExtraLines'
  | 'redirectWhitespace'
  | 'redirectControlByte'
  | 'redirectUnclosedVariable'
  | 'redirectPathTooLong'
  | 'redirectExpandsToEmpty'
  | 'redirectPathNotUtf8';

/** libassuan reads a redirect file into `char buffer[512]`, at most 511 bytes (:442, :453). */
export const REDIRECT_FILE_MAX_BYTES = 511;

/**
 * How many bytes of a socket file a reader needs: the largest redirect file plus one, to tell that a file is
 * larger. Every other form is shorter (Windows: at most 22 bytes; Cygwin: at most 54 up to its NUL).
 */
export const SOCKET_FILE_READ_LIMIT = REDIRECT_FILE_MAX_BYTES + 1;

/** The nonce both emulations carry: 16 bytes (:1117, :1139, :1506). */
export const NONCE_BYTES = 16;

/** sun_path holds 108 bytes on Linux; libassuan stops one short, keeping room for the NUL (:500, :514). */
const SOCKET_PATH_MAX_BYTES = 107;

const DEFECT_DESCRIPTIONS: Record<SocketFileDefect, string> = {
  empty: 'the file is empty; libassuan treats an empty socket file as a missing one (ENOENT)',
  unknownForm:
    'the file is in no form libassuan knows: it starts neither with "%Assuan%" (a Unix redirect), nor with "!<socket >" (Cygwin), nor with a decimal port (Windows socket emulation)',
  noLineFeed: 'the file starts like a Windows socket-emulation file but has no line feed after the port',
  portNotDecimal: 'the port of the Windows socket-emulation file is not a plain decimal number',
  portTrailingJunk: 'in the Windows socket-emulation file, other bytes follow the port before the line feed',
  portLineCrLf: 'the port line of the Windows socket-emulation file ends in CR LF; it must end in a bare LF (was the file edited on Windows?)',
  nonceTooShort: 'fewer than 16 nonce bytes follow the line feed; libassuan takes exactly 16 (the file may be cut short)',
  nonceTooLong: 'more than 16 bytes follow the line feed; libassuan takes exactly 16 nonce bytes and nothing after them',
  portLeadingZero: 'the port has a leading zero; libassuan writes the port without one',
  portZero: 'the port is 0; libassuan takes 1 to 65535',
  portTooLarge: 'the port is above 65535; libassuan takes 1 to 65535',
  cygwinNoNul: 'the Cygwin socket file does not end in a NUL byte, as libassuan and Cygwin write it (the file may be cut short)',
  cygwinPortNotDecimal: 'the Cygwin socket file does not have a decimal port right after "!<socket >"',
  cygwinLayout: 'the Cygwin socket file is not laid out as "!<socket >PORT s XXXXXXXX-XXXXXXXX-XXXXXXXX-XXXXXXXX" with single spaces and four dash-separated words',
  cygwinNotStream: 'the Cygwin socket file is not for a stream socket (its type is not "s"); libassuan connects to stream sockets only',
  cygwinNonceNotHex: 'a nonce word of the Cygwin socket file is not hexadecimal',
  cygwinNonceWordWidth: 'a nonce word of the Cygwin socket file is not exactly 8 hexadecimal digits',
  cygwinTextAfterNonce: 'the Cygwin socket file has more text after its fourth nonce word, before the NUL',
  redirectTooLarge: 'the redirect file is larger than 511 bytes, the most libassuan reads',
  redirectHeader: 'the redirect file does not start with "%Assuan%", a line feed and "socket="',
  redirectNoFinalLineFeed: 'the redirect file does not end in a line feed',
  redirectEmptyName: 'the redirect file names no socket after "socket="',
  redirectExtraLines: 'the redirect file has more than its two lines',
  redirectWhitespace: 'the socket name in the redirect file contains white space, which the format does not allow',
  redirectControlByte: 'the socket name in the redirect file contains a control byte',
  redirectUnclosedVariable: 'the socket name in the redirect file has a "${" with no closing "}"',
  redirectPathTooLong: 'the socket path of the redirect file, variables expanded, is longer than the 107 bytes a Unix socket path may have',
  redirectExpandsToEmpty: 'the socket name in the redirect file expands to nothing (its variables are unset or empty)',
  redirectPathNotUtf8: 'the socket path of the redirect file, variables expanded, is not valid UTF-8, so it cannot be passed on',
};

/** Plain words for a person; never any bytes of the file. */
export function describeDefect(defect: SocketFileDefect): string {
  return DEFECT_DESCRIPTIONS[defect];
}

/** A socket file that is not in a form libassuan would use. The message names the file, never its contents. */
export class SocketFileError extends Error {
  override readonly name = 'SocketFileError';

  constructor(
    readonly file: string,
    readonly defect: SocketFileDefect,
  ) {
    super(`socket file ${file}: ${describeDefect(defect)}`);
  }
}

/** Reads the content of the regular file `file` as libassuan would; throws SocketFileError. */
export function parseSocketFile(file: string, content: Buffer, env: NodeJS.ProcessEnv): SocketFileContent {
  const parsed = parseContent(content, env);
  if (typeof parsed === 'string') throw new SocketFileError(file, parsed);
  return parsed;
}

const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;
const SPACE = 0x20;
const DASH = 0x2d;
const REDIRECT_MARK = Buffer.from('%Assuan%', 'latin1');
const REDIRECT_HEADER = Buffer.from('%Assuan%\nsocket=', 'latin1');
const CYGWIN_MARK = Buffer.from('!<socket >', 'latin1');

function parseContent(content: Buffer, env: NodeJS.ProcessEnv): SocketFileContent | SocketFileDefect {
  // An empty file is ENOENT to libassuan (:361-365, :455-459).
  if (content.length === 0) return 'empty';
  if (startsWith(content, REDIRECT_MARK)) return parseRedirect(content, env);
  // The Cygwin form is told apart by its first 10 bytes; anything else is tried as the Windows form (:367, :392).
  if (startsWith(content, CYGWIN_MARK)) return parseCygwin(content);
  if (isDigit(content[0])) return parseWindows(content);
  return 'unknownForm';
}

/**
 * `<port>\n` + 16 bytes. libassuan: port = atoi(file) in 1..65535 (:395-400), then exactly 16 bytes after the
 * first LF (:402-408; `nread != 17` counts the LF). It reads at most 49 bytes (:351, :359), more than the 22 of
 * the largest valid file, so the limit never decides anything here.
 */
function parseWindows(content: Buffer): SocketFileContent | SocketFileDefect {
  const lineEnd = content.indexOf(LF);
  if (lineEnd < 0) return 'noLineFeed';
  const port = parsePortLine(content.subarray(0, lineEnd));
  if (typeof port === 'string') return port;
  // The nonce is whatever follows the first LF; it may hold LFs of its own.
  const nonceLength = content.length - lineEnd - 1;
  if (nonceLength < NONCE_BYTES) return 'nonceTooShort';
  if (nonceLength > NONCE_BYTES) return 'nonceTooLong';
  return { form: 'windows', port, nonce: Buffer.from(content.subarray(lineEnd + 1)) };
}

/** The bytes before the first LF: decimal digits only, as the writer's `%d\n` (:1350) gives them. */
function parsePortLine(line: Buffer): number | SocketFileDefect {
  const digits = digitRun(line, 0);
  if (digits === line.length) return decimalPort(line);
  if (digits === line.length - 1 && line[digits] === CR) return 'portLineCrLf';
  // A letter or digit right after the digits keeps the port one word ("0x1F90", "1f90"): not decimal.
  return isAlphanumeric(line[digits]) ? 'portNotDecimal' : 'portTrailingJunk';
}

/**
 * `!<socket >PORT s W-W-W-W` + NUL. libassuan: sscanf "%u s %08x-%08x-%08x-%08x" must fill all five fields, port
 * in 1..65535 (:381-387), and the nonce is the memory image of the four ints (:389), each word little-endian on
 * every Windows machine (x86, x64, ARM64).
 *
 * Two deliberate departures: libassuan reads at most 49 bytes (:351, :359), but its own writer (:1342-1346)
 * writes up to 53 characters and a NUL, so with a port of two or more digits libassuan cuts the fourth word short
 * and sends a wrong nonce; we read the whole word. And sscanf never needs the NUL, but the writer puts it there
 * (`strlen + 1`, :1346), so a file without it was cut short. Bytes after the NUL are ignored, as they are by
 * libassuan (sscanf stops at its end of string).
 */
function parseCygwin(content: Buffer): SocketFileContent | SocketFileDefect {
  const nulAt = content.indexOf(NUL);
  if (nulAt < 0) return 'cygwinNoNul';
  const text = content.subarray(0, nulAt);
  let at = CYGWIN_MARK.length;

  const portEnd = digitRun(text, at);
  if (portEnd === at || isAlphanumeric(text[portEnd])) return 'cygwinPortNotDecimal';
  const port = decimalPort(text.subarray(at, portEnd));
  if (typeof port === 'string') return port;
  at = portEnd;

  if (text[at] !== SPACE) return 'cygwinLayout';
  at += 1;
  const typeEnd = wordEnd(text, at);
  if (typeEnd - at !== 1) return 'cygwinLayout';
  if (text[at] !== 0x73 /* s */) return 'cygwinNotStream';
  at = typeEnd;
  if (text[at] !== SPACE) return 'cygwinLayout';
  at += 1;

  const nonce = Buffer.alloc(NONCE_BYTES);
  for (let index = 0; index < 4; index += 1) {
    const end = wordEnd(text, at);
    const word = text.subarray(at, end);
    if (!word.every(isHexDigit)) return 'cygwinNonceNotHex';
    if (word.length !== 8) return word.length === 0 ? 'cygwinLayout' : 'cygwinNonceWordWidth';
    nonce.writeUInt32LE(parseInt(word.toString('latin1'), 16), index * 4);
    at = end;
    if (index < 3) {
      if (text[at] !== DASH) return 'cygwinLayout';
      at += 1;
    }
  }
  if (at !== text.length) return 'cygwinTextAfterNonce';
  return { form: 'cygwin', port, nonce };
}

/**
 * `%Assuan%\nsocket=NAME\n`, as documented at :425-437: no white space, both lines ending in one LF, no extra lines
 * (the code is looser: it stops at the first LF, :512-513, and keeps blanks). `${VAR}` is replaced by the variable's
 * value; an unset variable, like `${}`, becomes nothing (`if (*p && (s = getenv (p)))`, :496); a `${` without `}`
 * is EINVAL (:488-494). The expanded path may have 107 bytes (ENAMETOOLONG beyond, :500-507, :514-520).
 */
function parseRedirect(content: Buffer, env: NodeJS.ProcessEnv): SocketFileContent | SocketFileDefect {
  if (content.length > REDIRECT_FILE_MAX_BYTES) return 'redirectTooLarge';
  // :465-467: the header, a final LF, and a first name byte that is not LF.
  if (!startsWith(content, REDIRECT_HEADER)) return 'redirectHeader';
  if (content[content.length - 1] !== LF) return 'redirectNoFinalLineFeed';
  const name = content.subarray(REDIRECT_HEADER.length, content.length - 1);
  if (name.length === 0) return 'redirectEmptyName';
  if (name.includes(LF)) return 'redirectExtraLines';
  if (name.some(isWhitespace)) return 'redirectWhitespace';
  if (name.some(isControl)) return 'redirectControlByte';

  const expanded = expandVariables(name, env);
  if (typeof expanded === 'string') return expanded;
  if (expanded.length > SOCKET_PATH_MAX_BYTES) return 'redirectPathTooLong';
  if (expanded.length === 0) return 'redirectExpandsToEmpty';
  let path: string;
  try {
    path = strictUtf8.decode(expanded);
  } catch {
    return 'redirectPathNotUtf8';
  }
  return { form: 'redirect', path };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** `${VAR}` from `env`, on bytes; no escapes exist (:430-433): a lone `$` or `{` stays as it is. */
function expandVariables(name: Buffer, env: NodeJS.ProcessEnv): Buffer | SocketFileDefect {
  const parts: Buffer[] = [];
  let literalStart = 0;
  let at = 0;
  while (at < name.length) {
    if (name[at] !== 0x24 /* $ */ || name[at + 1] !== 0x7b /* { */) {
      at += 1;
      continue;
    }
    const close = name.indexOf(0x7d /* } */, at + 2);
    if (close < 0) return 'redirectUnclosedVariable';
    parts.push(name.subarray(literalStart, at));
    const value = variableValue(name.subarray(at + 2, close), env);
    if (value) parts.push(Buffer.from(value, 'utf8'));
    at = close + 1;
    literalStart = at;
  }
  parts.push(name.subarray(literalStart));
  return Buffer.concat(parts);
}

/** The value of a variable named by these bytes; a name that is not UTF-8 cannot be in `env`. */
function variableValue(variable: Buffer, env: NodeJS.ProcessEnv): string | undefined {
  if (variable.length === 0) return undefined;
  try {
    return env[strictUtf8.decode(variable)];
  } catch {
    return undefined;
  }
}

/** A port written as libassuan writes it (`%d`): 1..65535, no leading zero. */
function decimalPort(digits: Buffer): number | SocketFileDefect {
  if (digits.length > 1 && digits[0] === 0x30) return 'portLeadingZero';
  if (digits.length > 5) return 'portTooLarge';
  const port = Number(digits.toString('latin1'));
  if (port === 0) return 'portZero';
  if (port > 65535) return 'portTooLarge';
  return port;
}

function startsWith(content: Buffer, prefix: Buffer): boolean {
  return content.length >= prefix.length && content.subarray(0, prefix.length).equals(prefix);
}

/** Where the run of ASCII digits starting at `from` ends. */
function digitRun(bytes: Buffer, from: number): number {
  let at = from;
  while (at < bytes.length && isDigit(bytes[at])) at += 1;
  return at;
}

/** Where the run of ASCII letters and digits starting at `from` ends. */
function wordEnd(bytes: Buffer, from: number): number {
  let at = from;
  while (at < bytes.length && isAlphanumeric(bytes[at])) at += 1;
  return at;
}

function isDigit(byte: number | undefined): boolean {
  return byte !== undefined && byte >= 0x30 && byte <= 0x39;
}

function isHexDigit(byte: number): boolean {
  return isDigit(byte) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
}

function isAlphanumeric(byte: number | undefined): boolean {
  return byte !== undefined && (isDigit(byte) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a));
}

/** C's isspace other than LF (which ends a line): space, tab, vertical tab, form feed, CR. */
function isWhitespace(byte: number): boolean {
  return byte === SPACE || byte === 0x09 || byte === 0x0b || byte === 0x0c || byte === CR;
}

function isControl(byte: number): boolean {
  return byte < 0x20 || byte === 0x7f;
}
