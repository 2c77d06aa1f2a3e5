/**
 * One session's audit: what its commands did with keys, as records for the audit file (auditLog.ts). It follows
 * the agent's own state for the connection: the key selected by SIGKEY/SETKEY once the agent accepted it (an ERR
 * leaves the previous selection, as the agent does; RESET clears it), and the hash algorithm a SETHASH the agent
 * accepted set; a PKSIGN or PKDECRYPT is recorded with them, with the agent's own outcome even where the client
 * was given the proxy's ERR instead. Commands that use, export, change or delete a key are recorded with the key
 * they name; policy refusals with their rule (the first REFUSALS_RECORDED of a session one by one, the rest
 * counted in one record when it ends: a client cannot flood the file). Queries (HAVEKEY, KEYINFO, GETINFO) leave
 * no trace.
 */
import type { CommandOutcome, PolicyRule } from '../../machines/session.js';
import { firstKeygrip, keygripsNamed } from '../keyAllowList.js';
import { contentLength, type CommandVerb } from '../protocol/classify.js';
import type { AuditLog, AuditRecord } from './auditLog.js';

/** Commands that use a key: recorded with the selected key and hash. */
const USES_SELECTED_KEY: ReadonlySet<string> = new Set(['PKSIGN', 'PKDECRYPT']);
/** Commands that name a key in their arguments, or make, import or change keys: recorded with what they name. */
const TOUCHES_KEYS: ReadonlySet<string> = new Set([
  'EXPORT_KEY', 'DELETE_KEY', 'PASSWD', 'KEYATTR', 'KEYTOCARD', 'PRESET_PASSPHRASE', 'CLEAR_PASSPHRASE', 'GENKEY', 'IMPORT_KEY', 'READKEY', 'SCD', 'LEARN',
]);
/** The card commands named in a record of `SCD …`; any other is OTHER. */
const CARD_COMMANDS: ReadonlySet<string> = new Set(['PKSIGN', 'PKAUTH', 'PKDECRYPT', 'READKEY', 'LEARN', 'SERIALNO', 'GETATTR', 'SETATTR', 'GENKEY', 'PASSWD', 'CHECKPIN', 'WRITEKEY', 'GETINFO', 'APDU', 'RESTART', 'KILLSCD']);
/** Refusals recorded one by one per session; past that they are counted. */
const REFUSALS_RECORDED = 20;
/** libgcrypt's algorithm numbers, as `SETHASH <number> <hex>` gives them. */
const HASH_NUMBERS: Readonly<Record<string, string>> = { '1': 'md5', '2': 'sha1', '3': 'rmd160', '8': 'sha256', '9': 'sha384', '10': 'sha512', '11': 'sha224' };
/** Names `SETHASH --hash=<name>` takes (agent/command.c cmd_sethash, matched case-sensitively by has_option). */
const HASH_NAMES: ReadonlySet<string> = new Set(['sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'rmd160', 'md5', 'tls-md5sha1', 'sm3']);

export class SessionAudit {
  /** The key the agent accepted from the last SIGKEY/SETKEY. */
  private selectedKey: string | undefined;
  private hash: string | undefined;
  /** The command in flight: its verb, what it named, when it began. */
  private pending: { verb: string; card?: string; keygrip?: string; hash?: string; startedAt: number } | undefined;
  /** A SIGKEY/SETKEY in flight: the key it asks for. */
  private selecting: string | undefined;
  /** A SETHASH in flight: the algorithm it names. */
  private settingHash: string | undefined;
  private refusals = 0;

  constructor(
    private readonly log: AuditLog,
    private readonly session: string,
    private readonly link: string | undefined,
  ) {}

  commandBegins(verb: CommandVerb, line: Buffer): void {
    this.pending = undefined;
    this.selecting = undefined;
    this.settingHash = undefined;
    if (verb === 'SIGKEY' || verb === 'SETKEY') this.selecting = firstKeygrip(line);
    else if (verb === 'SETHASH') this.settingHash = hashOf(line);
    else if (verb === 'RESET') {
      this.selectedKey = undefined;
      this.hash = undefined;
    } else if (USES_SELECTED_KEY.has(verb)) {
      this.pending = { verb, startedAt: performance.now(), ...(this.selectedKey ? { keygrip: this.selectedKey } : {}), ...(verb === 'PKSIGN' && this.hash ? { hash: this.hash } : {}) };
    } else if (TOUCHES_KEYS.has(verb)) {
      const keygrip = firstKeygrip(line);
      this.pending = { verb, startedAt: performance.now(), ...(keygrip ? { keygrip } : {}), ...(verb === 'SCD' ? { card: cardCommandOf(line) } : {}) };
    }
  }

  /**
   * The command in flight ended. `agent`: how the agent answered (absent when the proxy answered a refused command
   * itself); `code`: gpg-error's code of the agent's ERR. With `outcome` refused but an agent answer, the proxy
   * gave the client its own ERR for a line refused inside the command's INQUIRE, yet the agent ran the command
   * (it ignores CAN to an INQUIRE that takes no data): that use is recorded, marked replaced.
   */
  commandEnds(outcome: CommandOutcome, agent: 'ok' | 'err' | undefined, code: number | undefined): void {
    if (agent === undefined) {
      this.pending = undefined;
      this.selecting = undefined;
      this.settingHash = undefined;
      return;
    }
    if (this.selecting !== undefined && agent === 'ok') this.selectedKey = this.selecting;
    // The agent sets the algorithm before it reads the value: after an ERR, which one holds is not known here.
    if (this.settingHash !== undefined) this.hash = agent === 'ok' ? this.settingHash : undefined;
    this.selecting = undefined;
    this.settingHash = undefined;
    const pending = this.pending;
    this.pending = undefined;
    if (!pending) return;
    const { startedAt, ...named } = pending;
    this.write({
      ...named,
      decision: 'relayed',
      result: agent,
      ...(agent === 'err' && code !== undefined ? { code } : {}),
      ...(outcome === 'refused' ? { replaced: true } : {}),
      ms: Math.round(performance.now() - startedAt),
    });
  }

  /** The session ended: refusals past the ones recorded singly are counted in one record. */
  sessionEnds(): void {
    const unrecorded = this.refusals - REFUSALS_RECORDED;
    if (unrecorded > 0) this.write({ verb: 'ANY', decision: 'refused', rule: 'many', count: unrecorded });
  }

  /** The policy refused a line: recorded with what it named (the line never reached the agent). */
  refused(verb: CommandVerb, rule: PolicyRule | undefined, during: 'command' | 'inquire', line: Buffer | undefined): void {
    // Inside an INQUIRE the command in flight goes on (the agent gets CAN): its record is still to come. A line
    // there may be what a person typed: only a line read as a command is looked into.
    let keygrip: string | undefined;
    if (during === 'command') {
      this.pending = undefined;
      this.selecting = undefined;
      this.settingHash = undefined;
      // Only a line that names one key names it in the record (HAVEKEY A B must not be filed under A).
      const named = line ? keygripsNamed(line) : [];
      keygrip = named.length === 1 ? named[0] : undefined;
    }
    if (++this.refusals > REFUSALS_RECORDED) return;
    this.write({ verb, ...(keygrip ? { keygrip } : {}), decision: 'refused', ...(rule ? { rule } : {}), during });
  }

  private write(fields: Omit<AuditRecord, 'time' | 'session'>): void {
    void this.log.write({ time: new Date().toISOString(), session: this.session, ...(this.link ? { link: this.link } : {}), ...fields });
  }
}

/**
 * The algorithm a SETHASH names, read as cmd_sethash reads it: `--hash=<name>` among the options (names matched
 * exactly, as has_option does), else the first operand as a decimal number (strtoul: `08` is 8). Only the name,
 * never the value.
 */
function hashOf(line: Buffer): string {
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

function cardCommandOf(line: Buffer): string {
  const word = (line.toString('latin1', 0, contentLength(line)).split('\0')[0]!.split(/[ \t]+/)[1] ?? '').toUpperCase();
  return CARD_COMMANDS.has(word) ? word : 'OTHER';
}
