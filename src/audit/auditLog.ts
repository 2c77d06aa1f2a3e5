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

/** How a use that needs consent got through: the person approved it at a prompt, or a window they opened held. */
export type ConsentGrant = 'prompt' | 'window';

export interface AuditRecord {
  /** ISO 8601, UTC. */
  time: string;
  session: string;
  /** The bridge link the session came over, if any. */
  link?: string;
  /** Who is on the other end of a local session: program, pid and uid (src/peer/callerIdentity.ts), when known. */
  caller?: string;
  verb: string;
  /** For SCD: the card command, from a fixed vocabulary (OTHER otherwise). */
  card?: string;
  /** The key the command used (selected by SIGKEY/SETKEY and accepted by the agent) or named. */
  keygrip?: string;
  /** That key's user ID in the keyring the proxy sees, if found. */
  userId?: string;
  /** The hash algorithm set by SETHASH before a PKSIGN. */
  hash?: string;
  decision: 'relayed' | 'refused';
  /** A use the person was asked about (`--confirm`): approved at a prompt, or within an open decision window. */
  consent?: ConsentGrant;
  /** The policy rule that refused it. */
  rule?: string;
  /** Where the agent's reader was when a line was refused. */
  during?: 'command' | 'inquire';
  /** How the agent answered a relayed command: ok, or err with gpg-error's code. */
  result?: 'ok' | 'err';
  code?: number;
  ms?: number;
  /** The agent ran the command, but the client was given the proxy's ERR for a line refused inside it. */
  replaced?: true;
  /** In a `many` record: refusals of the session past those recorded one by one. */
  count?: number;
}

// O_NONBLOCK: a FIFO put at the path (after a rotation, in a sticky directory) fails the open with ENXIO instead
// of blocking it, and the shutdown that waits for the records, for ever.
const OPEN_FLAGS = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

/** What makes a file or directory unsafe for the record: another owner, or write access for others. */
function unsafe(stat: fs.Stats): string | undefined {
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) return `belongs to uid ${stat.uid}, not to us (uid ${uid})`;
  if ((stat.mode & 0o022) !== 0) return `has mode ${(stat.mode & 0o777).toString(8)}: others could rewrite the record (chmod go-w it)`;
  return undefined;
}

function unsafeFile(stat: fs.Stats): string | undefined {
  return stat.isFile() ? unsafe(stat) : 'is not a regular file';
}

export class AuditLog {
  private queue: Promise<void> = Promise.resolve();
  private failing = false;

  private constructor(
    readonly file: string,
    private readonly log: Logger,
  ) {}

  /**
   * Opens (creates 0600) the audit file, refusing one that others may write to, that is not ours, or that is a
   * symlink, and a directory that others may write to (they could put a file of theirs in its place).
   */
  static open(file: string, log: Logger): AuditLog {
    const resolved = path.resolve(file);
    const dir = path.dirname(resolved);
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const stat = fs.lstatSync(dir);
      // A sticky directory (/tmp) keeps others from replacing our file; each write checks the file itself anyway.
      const problem = !stat.isDirectory() ? 'is not a directory (a symlink?)' : (stat.mode & 0o1000) !== 0 ? undefined : unsafe(stat);
      if (problem) throw new ProxyStartError(`the audit file's directory ${dir} ${problem}`);
      const fd = fs.openSync(resolved, OPEN_FLAGS, 0o600);
      try {
        const fileProblem = unsafeFile(fs.fstatSync(fd));
        if (fileProblem) throw new ProxyStartError(`audit file ${resolved} ${fileProblem}`);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      if (err instanceof ProxyStartError) throw err;
      throw new ProxyStartError(`cannot open the audit file ${resolved}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    return new AuditLog(resolved, log);
  }

  /**
   * Appends one record (in order with the others, also one still being completed: a user ID looked up); resolves
   * once written.
   */
  write(record: AuditRecord | Promise<AuditRecord>): Promise<void> {
    // A record that could not be completed, or written, is logged and skipped: the ones after it are still written.
    this.queue = this.queue.then(() =>
      Promise.resolve(record)
        .then((complete) => this.append(Buffer.from(`${JSON.stringify(complete)}\n`)))
        .then(
          () => {
            this.failing = false;
          },
          (err: Error) => {
            if (!this.failing) this.log.error({ file: this.file, error: err.message }, 'cannot write the audit record; retrying with the next one');
            this.failing = true;
          },
        ),
    );
    return this.queue;
  }

  /** Opened anew for each record (a rotation is followed), and checked each time: what is there now must be safe. */
  private async append(line: Buffer): Promise<void> {
    const handle = await fs.promises.open(this.file, OPEN_FLAGS, 0o600);
    try {
      const problem = unsafeFile(await handle.stat());
      if (problem) throw new Error(`the file now at the audit path ${problem}; not written`);
      await handle.write(line);
    } finally {
      await handle.close();
    }
  }

  /** Resolves once every record written so far is on disk. */
  flushed(): Promise<void> {
    return this.queue;
  }

  /** As flushed, but at most `ms`: a shutdown waits for the records, not for ever (it says so if they are late). */
  async flushedWithin(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
    const outcome = await Promise.race([this.flushed().then(() => 'written' as const), late]);
    clearTimeout(timer);
    if (outcome === 'late') this.log.error({ file: this.file }, `audit records still unwritten after ${ms} ms; stopping without them`);
  }
}
