/**
 * The key and hash algorithm the agent holds for one connection, followed from the commands it accepted: the key
 * selected by SIGKEY/SETKEY once the agent answered OK (an ERR leaves the previous selection, as the agent does;
 * RESET clears it), and the algorithm a SETHASH the agent accepted set. A PKSIGN or PKDECRYPT uses these, so the
 * audit records them and a consent prompt names them: what the agent will really use, not what a line claims.
 * Only names are kept (a keygrip, an algorithm name), never a hash value.
 */
import { firstKeygrip } from '../keyAllowList.js';
import { contentLength, type CommandVerb } from '../protocol/classify.js';

/** libgcrypt's algorithm numbers, as `SETHASH <number> <hex>` gives them. */
const HASH_NUMBERS: Readonly<Record<string, string>> = { '1': 'md5', '2': 'sha1', '3': 'rmd160', '8': 'sha256', '9': 'sha384', '10': 'sha512', '11': 'sha224' };
/** Names `SETHASH --hash=<name>` takes (agent/command.c cmd_sethash, matched case-sensitively by has_option). */
const HASH_NAMES: ReadonlySet<string> = new Set(['sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'rmd160', 'md5', 'tls-md5sha1', 'sm3']);

export class KeySelection {
  /** The key the agent accepted from the last SIGKEY/SETKEY (upper-case keygrip). */
  key: string | undefined;
  /** The hash algorithm of the last SETHASH the agent accepted. */
  hash: string | undefined;
  /** A SIGKEY/SETKEY in flight: the key it asks for. */
  private selecting: string | undefined;
  /** A SETHASH in flight: the algorithm it names. */
  private settingHash: string | undefined;
  /** A RESET in flight: it clears the selection once the agent has it (one the proxy refused clears nothing). */
  private resetting = false;

  commandBegins(verb: CommandVerb, line: Buffer): void {
    this.selecting = undefined;
    this.settingHash = undefined;
    this.resetting = verb === 'RESET';
    if (verb === 'SIGKEY' || verb === 'SETKEY') this.selecting = firstKeygrip(line);
    else if (verb === 'SETHASH') this.settingHash = hashOf(line);
  }

  /** The command in flight ended; `agent`: how the agent answered (absent: the proxy answered, the agent saw nothing). */
  commandEnds(agent: 'ok' | 'err' | undefined): void {
    if (agent !== undefined) {
      // The agent's reset_notify clears the key and hash whatever it answers.
      if (this.resetting) {
        this.key = undefined;
        this.hash = undefined;
      }
      if (this.selecting !== undefined && agent === 'ok') this.key = this.selecting;
      // The agent sets the algorithm before it reads the value: after an ERR, which one holds is not known here.
      if (this.settingHash !== undefined) this.hash = agent === 'ok' ? this.settingHash : undefined;
    }
    this.selecting = undefined;
    this.settingHash = undefined;
    this.resetting = false;
  }
}

/**
 * The algorithm a SETHASH names, read as cmd_sethash reads it: `--hash=<name>` among the options (names matched
 * exactly, as has_option does), else the first operand as a decimal number (strtoul: `08` is 8). Only the name,
 * never the value.
 */
export function hashOf(line: Buffer): string {
  const words = line.toString('latin1', 0, contentLength(line)).split('\0')[0]!.split(/[ \t]+/).slice(1).filter((w) => w !== '');
  const options: string[] = [];
  let i = 0;
  while (i < words.length && words[i]!.startsWith('--')) options.push(words[i++]!);
  const named = options.find((option) => option.startsWith('--hash'));
  if (named !== undefined) {
    const name = named.startsWith('--hash=') ? named.slice('--hash='.length) : '';
    return HASH_NAMES.has(name) ? name : 'OTHER';
  }
  const digits = /^\d+/.exec(words[i] ?? '')?.[0];
  return (digits !== undefined && HASH_NUMBERS[String(Number.parseInt(digits, 10))]) || 'OTHER';
}
