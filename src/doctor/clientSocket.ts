/**
 * What gpg would find at its agent socket path: nothing, the proxy's socket (directly, by a symlink or a %Assuan%
 * redirect), a gpg-agent of its own, a relay to one, or a socket nobody answers on. Only reads and asks GETINFO.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describeDefect, parseSocketFile, SOCKET_FILE_READ_LIMIT, SocketFileError } from '../upstream/socketFile.js';
import { AssuanConnection, AssuanError, DialError, GPG_ERR_FORBIDDEN, printable } from '../protocol/assuanClient.js';

/** How gpg gets from its socket path to the socket it connects to, in words ('' when the path is the socket). */
export type Route = { how: 'direct' } | { how: 'symlink'; target: string } | { how: 'redirect'; target: string };

/** What answers on a socket that takes connections. */
export type Answer =
  /** A gpg-agent whose socket this is: `GETINFO socket_name` names the socket we reached. */
  | { who: 'agent'; socketName: string }
  /** Something that relays to a gpg-agent elsewhere; `socketName` unknown on a restricted connection. */
  | { who: 'relay'; socketName: string | undefined; restricted: boolean }
  /** It greets with OK but says nothing about where the agent is. */
  | { who: 'unknown' }
  /** It takes the connection but is no Assuan server that greets. */
  | { who: 'silent'; reason: string };

export type ClientSocket =
  | { kind: 'nothing'; directoryMissing: boolean }
  | { kind: 'notSocket'; route: Route; description: string }
  | { kind: 'dangling'; route: Route }
  | { kind: 'stale'; route: Route; isProxy: boolean }
  | { kind: 'live'; route: Route; isProxy: boolean; answer: Answer };

/** Bounds every wait on a socket: a wedged server makes the doctor slow, never stuck. */
const PROBE_TIMEOUT_MS = 5_000;

export async function inspectClientSocket(clientPath: string, listenPath: string, env: NodeJS.ProcessEnv): Promise<ClientSocket> {
  let entry: fs.Stats;
  try {
    entry = fs.lstatSync(clientPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return { kind: 'nothing', directoryMissing: !fs.existsSync(path.dirname(clientPath)) };
  }
  let route: Route = entry.isSymbolicLink() ? { how: 'symlink', target: fs.readlinkSync(clientPath) } : { how: 'direct' };
  // stat follows symlinks, as connect() and libassuan's reading of a redirect file do.
  let target = statOrUndefined(clientPath);
  if (target === undefined) return { kind: 'dangling', route };
  let reached = clientPath;
  if (target.isFile()) {
    const redirect = await redirectTargetOf(clientPath, env);
    if (typeof redirect !== 'string') return { kind: 'notSocket', route, description: redirect.problem };
    route = { how: 'redirect', target: redirect };
    reached = redirect;
    target = statOrUndefined(reached);
    if (target === undefined) return { kind: 'dangling', route };
  }
  if (!target.isSocket()) return { kind: 'notSocket', route, description: `a ${fileKind(target)}` };
  const proxy = statOrUndefined(listenPath);
  const isProxy = proxy !== undefined && proxy.dev === target.dev && proxy.ino === target.ino;
  const answer = await probe(reached, target, env);
  return answer === 'refused' ? { kind: 'stale', route, isProxy } : { kind: 'live', route, isProxy, answer };
}

/** The socket a %Assuan% redirect file names, or what is wrong with the file (in words, never its bytes). */
async function redirectTargetOf(file: string, env: NodeJS.ProcessEnv): Promise<string | { problem: string }> {
  try {
    const head = await readHead(file, SOCKET_FILE_READ_LIMIT);
    const content = parseSocketFile(file, head, env);
    if (content.form === 'redirect') return content.path;
    return { problem: `a ${content.form === 'windows' ? 'Windows' : 'Cygwin'} socket-emulation file, which gpg on this system does not use` };
  } catch (err) {
    if (err instanceof SocketFileError) return { problem: `a file that is no %Assuan% redirect (${describeDefect(err.defect)})` };
    throw err;
  }
}

/** Who answers at `socketPath`, or 'refused' when nobody does (a stale socket). */
async function probe(socketPath: string, reached: fs.BigIntStats, env: NodeJS.ProcessEnv): Promise<Answer | 'refused'> {
  let connection: AssuanConnection;
  try {
    ({ connection } = await AssuanConnection.open(socketPath, env, PROBE_TIMEOUT_MS));
  } catch (err) {
    if (err instanceof DialError) return 'refused';
    if (err instanceof AssuanError) return { who: 'silent', reason: err.message };
    throw err;
  }
  try {
    // gpg-agent answers with the path of the socket it listens on: a relay's answer names another socket.
    const name = await connection.request('GETINFO socket_name');
    if (name.ok) {
      const reported = name.data.toString('utf8');
      const named = statOrUndefined(reported);
      const isItself = named !== undefined ? named.dev === reached.dev && named.ino === reached.ino : path.resolve(reported) === path.resolve(socketPath);
      const socketName = printable(reported);
      if (!isItself || (await runsElsewhere(connection))) return { who: 'relay', socketName, restricted: false };
      return { who: 'agent', socketName };
    }
    // On a restricted connection (an extra socket, or a relay of one) gpg-agent withholds its socket name.
    if (name.error?.code === GPG_ERR_FORBIDDEN) {
      const restricted = await connection.request('GETINFO restricted');
      if (restricted.ok) return { who: 'relay', socketName: undefined, restricted: true };
    }
    return { who: 'unknown' };
  } catch (err) {
    if (err instanceof AssuanError) return { who: 'silent', reason: err.message };
    throw err;
  } finally {
    connection.close();
  }
}

/**
 * Whether the agent answering is on another machine although it names our path: an ssh forward of an agent whose
 * socket has the same path on both hosts (/run/user/UID/gnupg/S.gpg-agent with the same uid). Its pid is then no
 * local gpg-agent. Only where /proc tells (Linux); elsewhere the socket name alone decides.
 */
async function runsElsewhere(connection: AssuanConnection): Promise<boolean> {
  if (!fs.existsSync('/proc/self/comm')) return false;
  const reply = await connection.request('GETINFO pid');
  const pid = reply.ok ? reply.data.toString('latin1') : '';
  if (!/^[1-9][0-9]{0,9}$/.test(pid)) return false;
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'gpg-agent';
  } catch {
    return true;
  }
}

/** The first `limit` bytes of a file: enough to tell a redirect, whatever the file's size. */
async function readHead(file: string, limit: number): Promise<Buffer> {
  const handle = await fs.promises.open(file, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(limit), 0, limit, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

export function statOrUndefined(file: string): fs.BigIntStats | undefined {
  try {
    return fs.statSync(file, { bigint: true });
  } catch {
    return undefined;
  }
}

function fileKind(stats: fs.Stats | fs.BigIntStats): string {
  if (stats.isDirectory()) return 'directory';
  if (stats.isFIFO()) return 'named pipe';
  if (stats.isFile()) return 'regular file';
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'device';
  return 'file that is not a socket';
}
