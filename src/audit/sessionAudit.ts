/**
 * One session's audit: what its commands did with keys, as records for the audit file (auditLog.ts). A PKSIGN or
 * PKDECRYPT is recorded with the key and hash the agent holds for the connection (src/session/keySelection.ts), with the agent's own outcome even where the client
 * was given the proxy's ERR instead. Commands that use, export, change or delete a key are recorded with the key
 * they name; policy refusals with their rule (the first REFUSALS_RECORDED of a session one by one, the rest
 * counted in one record when it ends: a client cannot flood the file). Queries (HAVEKEY, KEYINFO, GETINFO) leave
 * no trace.
 */
import type { CommandOutcome, PolicyRule } from '../../machines/session.js';
import { firstKeygrip, keygripsNamed } from '../keyAllowList.js';
import { contentLength, type CommandVerb } from '../protocol/classify.js';
import { oneLineBounded } from '../foreignText.js';
import { KeySelection } from '../session/keySelection.js';
import type { AuditLog, AuditRecord, ConsentGrant } from './auditLog.js';

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

export class SessionAudit {
  /** The command in flight: its verb, what it named, when it began. */
  private pending: { verb: string; card?: string; keygrip?: string; hash?: string; startedAt: number } | undefined;
  private refusals = 0;
  /** Whether this audit follows the agent's selection itself (none was given: it is the only reader). */
  private readonly drivesSelection: boolean;
  private readonly selection: KeySelection;

  /**
   * `selection`: the session's view of the key and hash the agent holds, which the session keeps up to date;
   * without one the audit follows the agent itself.
   */
  constructor(
    private readonly log: AuditLog,
    private readonly session: string,
    private readonly link: string | undefined,
    selection?: KeySelection,
    /** Who is on the other end of the session (src/peer/callerIdentity.ts), or a promise of it while it is looked up. */
    private readonly caller: () => string | undefined | Promise<string | undefined> = () => undefined,
    /** A key's user ID (src/consent/keyNames.ts); records naming a key carry it. */
    private readonly userIdOf?: (keygrip: string) => Promise<string | undefined>,
  ) {
    this.drivesSelection = selection === undefined;
    this.selection = selection ?? new KeySelection();
  }

  commandBegins(verb: CommandVerb, line: Buffer): void {
    if (this.drivesSelection) this.selection.commandBegins(verb, line);
    this.pending = undefined;
    const { key, hash } = this.selection;
    if (USES_SELECTED_KEY.has(verb)) {
      this.pending = { verb, startedAt: performance.now(), ...(key ? { keygrip: key } : {}), ...(verb === 'PKSIGN' && hash ? { hash } : {}) };
    } else if (TOUCHES_KEYS.has(verb)) {
      const keygrip = firstKeygrip(line);
      this.pending = { verb, startedAt: performance.now(), ...(keygrip ? { keygrip } : {}), ...(verb === 'SCD' ? { card: cardCommandOf(line) } : {}) };
    }
  }

  /**
   * The command in flight ended. `agent`: how the agent answered (absent when the proxy answered a refused command
   * itself); `code`: gpg-error's code of the agent's ERR. With `outcome` refused but an agent answer, the proxy
   * gave the client its own ERR for a line refused inside the command's INQUIRE, yet the agent ran the command
   * (it ignores CAN to an INQUIRE that takes no data): that use is recorded, marked replaced. `consent`: how a
   * use the person was asked about got through (a prompt, or a decision window still open).
   */
  commandEnds(outcome: CommandOutcome, agent: 'ok' | 'err' | undefined, code: number | undefined, consent?: ConsentGrant): void {
    if (this.drivesSelection) this.selection.commandEnds(agent);
    const pending = this.pending;
    this.pending = undefined;
    if (agent === undefined || !pending) return;
    const { startedAt, ...named } = pending;
    this.write({
      ...named,
      decision: 'relayed',
      ...(consent ? { consent } : {}),
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

  /**
   * The policy refused a line: recorded with what it named (the line never reached the agent). A use of the
   * selected key (PKSIGN, PKDECRYPT) the person refused is recorded with that key and hash.
   */
  refused(verb: CommandVerb, rule: PolicyRule | undefined, during: 'command' | 'inquire', line: Buffer | undefined): void {
    // Inside an INQUIRE the command in flight goes on (the agent gets CAN): its record is still to come. A line
    // there may be what a person typed: only a line read as a command is looked into.
    let keygrip: string | undefined;
    let hash: string | undefined;
    if (during === 'command') {
      this.pending = undefined;
      if (this.drivesSelection) this.selection.commandEnds(undefined);
      if (USES_SELECTED_KEY.has(verb)) {
        keygrip = this.selection.key;
        if (verb === 'PKSIGN') hash = this.selection.hash;
      } else {
        // Only a line that names one key names it in the record (HAVEKEY A B must not be filed under A).
        const named = line ? keygripsNamed(line) : [];
        keygrip = named.length === 1 ? named[0] : undefined;
      }
    }
    if (++this.refusals > REFUSALS_RECORDED) return;
    this.write({ verb, ...(keygrip ? { keygrip } : {}), ...(hash ? { hash } : {}), decision: 'refused', ...(rule ? { rule } : {}), during });
  }

  private write(fields: Omit<AuditRecord, 'time' | 'session'>): void {
    const time = new Date().toISOString();
    const complete = (caller: string | undefined, userId: string | undefined): AuditRecord => {
      const record: AuditRecord = { time, session: this.session, ...(this.link ? { link: this.link } : {}), ...(caller ? { caller } : {}), ...fields };
      return userId ? withUserId(record, userId) : record;
    };
    const caller = this.caller();
    const { keygrip } = fields;
    if (!(caller instanceof Promise) && (!keygrip || !this.userIdOf)) return void this.log.write(complete(caller, undefined));
    // The record keeps its place in the file while the caller and the user ID are looked up (bounded lookups).
    const named = Promise.all([caller, keygrip && this.userIdOf ? this.userIdOf(keygrip).catch(() => undefined) : undefined]).then(
      ([who, userId]) => complete(who, userId),
      () => complete(undefined, undefined),
    );
    void this.log.write(named);
  }
}

/** A user ID in a record is another's text: on one line, and bounded. */
export const MAX_USER_ID = 200;

/** The record with `userId` right after its keygrip, as a reader scans it. */
function withUserId(record: AuditRecord, userId: string): AuditRecord {
  const shown = oneLineBounded(userId, MAX_USER_ID);
  return Object.fromEntries(Object.entries(record).flatMap((entry) => (entry[0] === 'keygrip' ? [entry, ['userId', shown]] : [entry]))) as unknown as AuditRecord;
}

function cardCommandOf(line: Buffer): string {
  const word = (line.toString('latin1', 0, contentLength(line)).split('\0')[0]!.split(/[ \t]+/)[1] ?? '').toUpperCase();
  return CARD_COMMANDS.has(word) ? word : 'OTHER';
}
