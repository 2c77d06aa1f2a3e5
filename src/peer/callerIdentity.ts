/**
 * Who is on the other end of an accepted Unix-socket connection: pid, uid and program of the peer process.
 *
 * Node has no SO_PEERCRED, so this asks the kernel's sock_diag through iproute2's `ss`: our descriptor names our
 * socket's inode (/proc/self/fd), `ss` lists the socket whose peer is that inode and the processes holding it
 * (`users:((…))`, read from /proc/<pid>/fd). Each listed holder is then checked against /proc ourselves, so nothing
 * `ss` printed is believed unchecked. Linux only; anywhere it cannot tell, the answer is undefined with a reason for
 * a debug log. /proc/net/unix and /proc/<pid>/fdinfo name no peer, so there is no way around sock_diag (or a helper
 * process calling getsockopt(SO_PEERCRED) on the descriptor) from plain Node.
 *
 * Cost: one lookup spawns `ss`, which walks every visible process's /proc/<pid>/fd. Measured on the 2-core dev/CI
 * machine (~70 processes, ~350 descriptors), client a node child: median of 20 lookups 19-22 ms over three runs
 * (min 17, max 34); ~10 ms of that is Node spawning any process, ~4 ms the walk, which grows with the host's open
 * descriptors. Hence only for consent prompts and audit records: asynchronous, never on the relay path.
 *
 * The identity is of whoever holds the other end now: a relay (socat, an sshd forwarding the socket) is reported as
 * itself, not as the program behind it; a descriptor inherited across fork() has several holders (`sharedBy`).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';

export interface CallerIdentity {
  pid: number;
  /** Real uid, from /proc/<pid>/status. */
  uid: number;
  /** /proc/<pid>/exe if we may read it (same uid, dumpable), else the command name. */
  program: string;
  /** /proc/<pid>/comm: chosen by the process itself (prctl), so never proof of anything. */
  command: string;
  /** How many processes hold the peer's socket (after fork); `pid` is the one `ss` listed first. */
  sharedBy: number;
}

export type CallerLookup = { caller: CallerIdentity; reason?: undefined } | { caller: undefined; reason: string };

export interface CallerLookupOptions {
  /** The `ss` to run: a path, or a name looked up in SS_PATH (tests pass a missing one). */
  ssPath?: string;
  timeoutMs?: number;
  /** Bytes of `ss` output beyond which it is killed and the lookup gives up. */
  maxOutputBytes?: number;
  /** For tests: the platform to behave as. */
  platform?: NodeJS.Platform;
}

const DEFAULT_TIMEOUT_MS = 2_000;
// ~100 bytes a socket: room for tens of thousands of connected Unix sockets.
const DEFAULT_MAX_OUTPUT_BYTES = 8 * 1024 * 1024;
// A fixed environment: our own may carry PROC_ROOT / PROC_NET_UNIX, which make `ss` read /proc/net/unix (no peers)
// instead of asking sock_diag, and a PATH we did not choose.
const SS_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
// Only connected stream sockets: the kernel filters by state, so listeners and datagram sockets are not even listed.
const SS_ARGS = ['-n', '-p', '-A', 'unix_stream', 'state', 'established'];

/** Finds the process on the other end of `socket`, an accepted connection on a Unix-domain server. Never throws. */
export async function lookupCaller(socket: net.Socket, options: CallerLookupOptions = {}): Promise<CallerLookup> {
  try {
    return await lookup(socket, options);
  } catch (err) {
    return miss(`lookup failed: ${safeText(String((err as Error)?.message ?? err), 120)}`);
  }
}

async function lookup(socket: net.Socket, options: CallerLookupOptions): Promise<CallerLookup> {
  const platform = options.platform ?? process.platform;
  if (platform !== 'linux') return miss(`not on Linux (${platform}): no /proc or sock_diag to ask`);
  const fd = descriptorOf(socket);
  if (fd === undefined) return miss('socket has no descriptor (closed already?)');
  const link = await fs.promises.readlink(`/proc/self/fd/${fd}`).catch(() => undefined);
  const ours = link === undefined ? undefined : /^socket:\[(\d+)\]$/.exec(link)?.[1];
  // Closed while we waited, the number may already name some other file: check it is still this socket's.
  if (socket.destroyed || descriptorOf(socket) !== fd) return miss('socket closed during the lookup');
  if (ours === undefined) return miss(`descriptor ${fd} is not a socket (${link === undefined ? 'unreadable' : 'other file'})`);

  const listing = await runSs(options);
  if ('reason' in listing) return miss(listing.reason);
  const row = findPeerRow(listing.output, ours);
  if ('reason' in row) return miss(row.reason);
  if (row.holders.length === 0) return miss('no process visible holding the peer socket (another user\'s, or in flight)');

  // Believe only holders that /proc confirms hold the peer socket: this also drops a pid that exited since.
  const confirmed: Array<{ pid: number; fd: number }> = [];
  await Promise.all(
    row.holders.map(async (holder, index) => {
      if (await holds(holder.pid, holder.fd, row.peerInode)) confirmed[index] = holder;
    }),
  );
  const holders = confirmed.filter((holder) => holder !== undefined);
  const first = holders[0];
  if (first === undefined) return miss('the processes listed for the peer socket no longer hold it');
  const caller = await readProcess(first.pid);
  // Checked again after reading: the pid may have exited and been reused while we read its files.
  if (caller === undefined || !(await holds(first.pid, first.fd, row.peerInode))) return miss(`process ${first.pid} went away during the lookup`);
  return { caller: { ...caller, sharedBy: new Set(holders.map((holder) => holder.pid)).size } };
}

function miss(reason: string): CallerLookup {
  return { caller: undefined, reason };
}

function descriptorOf(socket: net.Socket): number | undefined {
  // libuv's stream handle: not public API, but the only way to our descriptor.
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}

async function holds(pid: number, fd: number, inode: string): Promise<boolean> {
  const link = await fs.promises.readlink(`/proc/${pid}/fd/${fd}`).catch(() => undefined);
  return link === `socket:[${inode}]`;
}

async function readProcess(pid: number): Promise<Omit<CallerIdentity, 'sharedBy'> | undefined> {
  const [status, exe, comm] = await Promise.all([
    fs.promises.readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined),
    // EACCES for another user's or a non-dumpable process: then the command name stands in.
    fs.promises.readlink(`/proc/${pid}/exe`).catch(() => undefined),
    fs.promises.readFile(`/proc/${pid}/comm`, 'utf8').catch(() => undefined),
  ]);
  const uid = status === undefined ? undefined : /^Uid:\s+(\d+)/m.exec(status)?.[1];
  if (uid === undefined || comm === undefined) return undefined;
  const command = comm.endsWith('\n') ? comm.slice(0, -1) : comm;
  return { pid, uid: Number(uid), program: exe ?? command, command };
}

type SsListing = { output: string } | { reason: string };

function runSs(options: CallerLookupOptions): Promise<SsListing> {
  const ssPath = options.ssPath ?? 'ss';
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxBuffer = options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  return new Promise((resolve) => {
    // execFile: no shell; it kills the child on timeout and on output beyond maxBuffer.
    // latin1 keeps every byte of a socket name as one character, so no name can upset the decoding.
    execFile(ssPath, SS_ARGS, { env: SS_ENV, timeout, killSignal: 'SIGKILL', maxBuffer, encoding: 'latin1', windowsHide: true }, (err, stdout, stderr) => {
      if (!err) return resolve({ output: stdout });
      const failure = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
      if (failure.code === 'ENOENT') return resolve({ reason: 'ss not found' });
      if (failure.code === 'EACCES') return resolve({ reason: 'ss not executable' });
      if (failure.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') return resolve({ reason: `ss output over ${maxBuffer} bytes` });
      if (failure.killed || failure.signal) return resolve({ reason: `ss took over ${timeout} ms` });
      const said = stderr.split('\n').find((line) => line.trim() !== '') ?? `exit ${String(failure.code)}`;
      resolve({ reason: `ss failed: ${safeText(said, 120)}` });
    });
  });
}

export type PeerRow = { peerInode: string; holders: Array<{ pid: number; fd: number }> } | { reason: string };

// A row, read from its right end because the left holds the socket's name (any bytes, blanks too):
// `[Netid] [State] Recv-Q Send-Q <name> <inode> * <peer inode> [users:((…))]`. Over netlink `ss` always prints the
// peer's name as `*`.
const ROW = /^(.*)\s(\d+)\s+\*\s+(\d+)(?:\s+users:\((.*)\))?\s*$/s;
// One holder: `("comm",pid=N,fd=M)`. `ss` cuts the name at the first `)`, so `)` only ever ends a holder, while the
// name may hold `"` or `,pid=`: hence `[^)]*` and the pid and fd taken from the end.
const HOLDER = /\("[^)]*",pid=(\d+),fd=(\d+)\)/g;
const HOLDERS = /^\("[^)]*",pid=\d+,fd=\d+\)(?:,\("[^)]*",pid=\d+,fd=\d+\))*$/s;

/**
 * In `ss` output, the row of the socket whose peer is `ours` and the processes listed as holding it.
 *
 * A socket's name and a process's name may hold a line break, and so split a row or forge one. Therefore: exactly
 * one row may name `ours` as its peer, exactly one as its own inode (ours, whose peer must be that row's socket),
 * and no line that is not a well-formed row may mention `ours` at all; else the listing is not trusted.
 */
export function findPeerRow(output: string, ours: string): PeerRow {
  const peers: Array<{ inode: string; users: string | undefined }> = [];
  const own: string[] = [];
  const mentions = new RegExp(`(?:^|\\D)${ours}(?:\\D|$)`);
  for (const line of output.split('\n')) {
    const match = ROW.exec(line);
    const users = match?.[4];
    if (!match || (users !== undefined && !HOLDERS.test(users))) {
      // A header, or part of a row cut by a line break in a name: harmless unless it could be (part of) ours.
      if (mentions.test(line)) return { reason: 'ss listing not trusted: a garbled line mentions our socket' };
      continue;
    }
    if (match[3] === ours) peers.push({ inode: match[2]!, users });
    if (match[2] === ours) own.push(match[3]!);
  }
  if (peers.length > 1 || own.length > 1) return { reason: 'ss listing not trusted: our socket is listed more than once' };
  const peer = peers[0];
  if (peer === undefined) return { reason: 'peer socket not found (client gone, or in another network namespace)' };
  if (own[0] !== peer.inode) return { reason: `ss listing not trusted: our socket ${own.length === 0 ? 'is not listed' : 'and its peer disagree'}` };
  const holders: Array<{ pid: number; fd: number }> = [];
  for (const holder of (peer.users ?? '').matchAll(HOLDER)) holders.push({ pid: Number(holder[1]), fd: Number(holder[2]) });
  return { peerInode: peer.inode, holders };
}

const PROGRAM_MAX = 80;
const COMMAND_MAX = 32;

/**
 * `gpg (pid 1234, uid 1000, /usr/bin/gpg)`, safe to show in a pinentry prompt or write in an audit record: the
 * names are the caller's choice, so everything but printable ASCII (and `%`, Assuan's escape, and `\`) is escaped,
 * and each name is bounded (the path keeps its end, where the program's name is).
 */
export function describeCaller(c: CallerIdentity): string {
  return `${safeText(c.command, COMMAND_MAX)} (pid ${safeNumber(c.pid)}, uid ${safeNumber(c.uid)}, ${safeText(c.program, PROGRAM_MAX, 'end')})`;
}

function safeNumber(n: number): string {
  return Number.isSafeInteger(n) ? String(n) : '?';
}

const NAMED_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\', '%': '\\x25' };

/**
 * Text with every character outside printable ASCII written as an escape (`\n`, `\xHH`, `\u{H}`), at most `max`
 * characters: cut between escapes, never inside one, marked with `...` at the end cut away.
 */
export function safeText(text: string, max: number, keep: 'start' | 'end' = 'start'): string {
  const units: string[] = [];
  for (const char of String(text)) {
    const code = char.codePointAt(0)!;
    const named = NAMED_ESCAPES[char];
    if (named !== undefined) units.push(named);
    else if (code >= 0x20 && code < 0x7f) units.push(char);
    else if (code < 0x100) units.push(`\\x${code.toString(16).padStart(2, '0')}`);
    else units.push(`\\u{${code.toString(16)}}`);
  }
  let length = units.reduce((sum, unit) => sum + unit.length, 0);
  if (length <= max) return units.join('');
  const budget = Math.max(0, max - 3);
  if (keep === 'end') units.reverse();
  const kept: string[] = [];
  length = 0;
  for (const unit of units) {
    if (length + unit.length > budget) break;
    kept.push(unit);
    length += unit.length;
  }
  return keep === 'end' ? `...${kept.reverse().join('')}` : `${kept.join('')}...`;
}
