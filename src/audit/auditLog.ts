/**
 * `--audit FILE`: one JSON line per command outcome that touches a key, and per policy decision. Records hold
 * what may be published (verbs, keygrips, hash algorithm names, rules, result codes, durations), never a payload,
 * a passphrase, a nonce or a hash value: they are built from fixed vocabularies and the keygrips a line names.
 *
 * The file is written safely: created 0600, each record appended with O_APPEND in one write (whole lines, in
 * order), and opened anew for every record, so that a rotation (the file renamed, a new one expected) is followed
 * without a signal. A write that fails is logged once and retried with the next record: the audit never stops a
 * session.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ProxyStartError } from '../listenSocket.js';

export interface AuditRecord {
  /** ISO 8601, UTC. */
  time: string;
  session: string;
  /** The bridge link the session came over, if any. */
  link?: string;
  verb: string;
  /** For SCD: the card command, from a fixed vocabulary (OTHER otherwise). */
  card?: string;
  /** The key the command used (selected by SIGKEY/SETKEY and accepted by the agent) or named. */
  keygrip?: string;
  /** The hash algorithm set by SETHASH before a PKSIGN. */
  hash?: string;
  decision: 'relayed' | 'refused';
  /** The policy rule that refused it. */
  rule?: string;
  /** Where the agent's reader was when a line was refused. */
  during?: 'command' | 'inquire';
  /** How the agent answered a relayed command: ok, or err with gpg-error's code. */
  result?: 'ok' | 'err';
  code?: number;
  ms?: number;
}

export class AuditLog {
  private queue: Promise<void> = Promise.resolve();
  private failing = false;

  private constructor(
    readonly file: string,
    private readonly log: Logger,
  ) {}

  /** Opens (creates 0600) the audit file, refusing one that others may write to or that is not ours. */
  static open(file: string, log: Logger): AuditLog {
    const resolved = path.resolve(file);
    try {
      fs.mkdirSync(path.dirname(resolved), { recursive: true, mode: 0o700 });
      const fd = fs.openSync(resolved, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
      const stat = fs.fstatSync(fd);
      fs.closeSync(fd);
      if (!stat.isFile()) throw new ProxyStartError(`audit file ${resolved} is not a regular file`);
      if (stat.uid !== (process.getuid?.() ?? stat.uid)) throw new ProxyStartError(`audit file ${resolved} belongs to uid ${stat.uid}, not to us`);
      if ((stat.mode & 0o022) !== 0) throw new ProxyStartError(`audit file ${resolved} has mode ${(stat.mode & 0o777).toString(8)}: others could rewrite the record (chmod 600 it)`);
    } catch (err) {
      if (err instanceof ProxyStartError) throw err;
      throw new ProxyStartError(`cannot open the audit file ${resolved}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    return new AuditLog(resolved, log);
  }

  /** Appends one record (in order with the others); resolves once written. */
  write(record: AuditRecord): Promise<void> {
    const line = `${JSON.stringify(record)}\n`;
    this.queue = this.queue.then(() =>
      fs.promises.appendFile(this.file, line, { mode: 0o600, flag: fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW }).then(
        () => {
          this.failing = false;
        },
        (err: NodeJS.ErrnoException) => {
          if (!this.failing) this.log.error({ file: this.file, code: err.code }, 'cannot write the audit record; retrying with the next one');
          this.failing = true;
        },
      ),
    );
    return this.queue;
  }

  /** Resolves once every record written so far is on disk. */
  flushed(): Promise<void> {
    return this.queue;
  }
}
