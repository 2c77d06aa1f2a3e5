/**
 * One session's audit: what its commands did with keys, as records for the audit file (auditLog.ts). It follows
 * the agent's own state for the connection: the key selected by SIGKEY/SETKEY once the agent accepted it (an ERR
 * leaves the previous selection, as the agent does; RESET clears it), and the hash algorithm SETHASH set; a PKSIGN
 * or PKDECRYPT is recorded with them. Commands that name a key are recorded with the key they name; every policy
 * refusal is recorded with its rule. Nothing else is written: a session that only asks GETINFO leaves no trace.
 */
import type { CommandOutcome, PolicyRule } from '../../machines/session.js';
import { firstKeygrip } from '../keyAllowList.js';
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
/** libgcrypt's algorithm numbers, as `SETHASH <number> <hex>` gives them. */
const HASH_NUMBERS: Readonly<Record<string, string>> = { '1': 'md5', '2': 'sha1', '3': 'rmd160', '8': 'sha256', '9': 'sha384', '10': 'sha512', '11': 'sha224' };
/** Names `SETHASH --hash=<name>` takes (agent/command.c); any other is OTHER. */
const HASH_NAMES: ReadonlySet<string> = new Set(['sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'rmd160', 'md5', 'tls-md5sha1', 'sm3']);

export class SessionAudit {
  /** The key the agent accepted from the last SIGKEY/SETKEY. */
  private selectedKey: string | undefined;
  private hash: string | undefined;
  /** The command in flight: its verb, what it named, when it began. */
  private pending: { verb: string; card?: string; keygrip?: string; hash?: string; startedAt: number } | undefined;
  /** A SIGKEY/SETKEY in flight: the key it asks for. */
  private selecting: string | undefined;

  constructor(
    private readonly log: AuditLog,
    private readonly session: string,
    private readonly link: string | undefined,
  ) {}

  commandBegins(verb: CommandVerb, line: Buffer): void {
    this.pending = undefined;
    this.selecting = undefined;
    if (verb === 'SIGKEY' || verb === 'SETKEY') this.selecting = firstKeygrip(line);
    else if (verb === 'SETHASH') this.hash = hashOf(line);
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

  /** The agent answered the command in flight (`code`: gpg-error's code of an ERR). Refused ones are recorded by `refused`. */
  commandEnds(outcome: CommandOutcome, code: number | undefined): void {
    if (outcome === 'refused') return;
    if (this.selecting !== undefined && outcome === 'ok') this.selectedKey = this.selecting;
    this.selecting = undefined;
    const pending = this.pending;
    this.pending = undefined;
    if (!pending) return;
    const { startedAt, ...named } = pending;
    this.write({
      ...named,
      decision: 'relayed',
      result: outcome === 'ok' ? 'ok' : 'err',
      ...(outcome === 'err' && code !== undefined ? { code } : {}),
      ms: Math.round(performance.now() - startedAt),
    });
  }

  /** The policy refused a line: recorded with what it named (the line never reached the agent). */
  refused(verb: CommandVerb, rule: PolicyRule | undefined, during: 'command' | 'inquire', line: Buffer | undefined): void {
    // Inside an INQUIRE the command in flight goes on (the agent gets CAN): its record is still to come. A line
    // there may be what a person typed: only a line read as a command is looked into.
    let keygrip: string | undefined;
    if (during === 'command') {
      this.pending = undefined;
      this.selecting = undefined;
      keygrip = line ? firstKeygrip(line) : undefined;
    }
    this.write({ verb, ...(keygrip ? { keygrip } : {}), decision: 'refused', ...(rule ? { rule } : {}), during });
  }

  private write(fields: Omit<AuditRecord, 'time' | 'session'>): void {
    void this.log.write({ time: new Date().toISOString(), session: this.session, ...(this.link ? { link: this.link } : {}), ...fields });
  }
}

/** `SETHASH --hash=<name> …` or `SETHASH <algo number> …`: the algorithm's name only, never the value. */
function hashOf(line: Buffer): string {
  const words = line.toString('latin1', 0, contentLength(line)).split('\0')[0]!.split(/[ \t]+/);
  const first = words[1] ?? '';
  if (first.startsWith('--hash=')) {
    const name = first.slice('--hash='.length).toLowerCase();
    return HASH_NAMES.has(name) ? name : 'OTHER';
  }
  return HASH_NUMBERS[first] ?? 'OTHER';
}

function cardCommandOf(line: Buffer): string {
  const word = (line.toString('latin1', 0, contentLength(line)).split('\0')[0]!.split(/[ \t]+/)[1] ?? '').toUpperCase();
  return CARD_COMMANDS.has(word) ? word : 'OTHER';
}
