/**
 * Where and how the proxy listens. Anyone who can connect to the socket can use the keys behind it, so:
 * the socket lives in a directory only we can enter (0700, ours, not a symlink), is created 0600, never
 * replaces a live socket, and never sits in the agent's own socket directory (gpg-agent shuts down when a file
 * named like its sockets is removed there, and it checks that its socket is still its own).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { boundPathOfDescriptor } from './procNet.js';

/** A reason the proxy cannot start, worded for the person who started it. */
export class ProxyStartError extends Error {
  override readonly name = 'ProxyStartError';
}

/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/** `fileName` in our private directory: S.gpg-agent by default, S.dirmngr in front of dirmngr, and so on. */
export function defaultListenPath(env: NodeJS.ProcessEnv = process.env, fileName = 'S.gpg-agent'): string {
  const runtimeDir = env.XDG_RUNTIME_DIR;
  // In the shared temp dir the name carries our uid, so another user cannot have taken it first.
  const dir = runtimeDir ? path.join(runtimeDir, 'assuan-proxy') : path.join(os.tmpdir(), `assuan-proxy-${uid()}`);
  return path.join(dir, fileName);
}

/** Checks everything about `socketPath` that can be checked before binding, and removes our own stale socket. */
export async function prepareListenPath(socketPath: string, upstreamPath: string): Promise<string> {
  const resolved = path.resolve(socketPath);
  if (Buffer.byteLength(resolved) > MAX_SOCKET_PATH_BYTES) {
    throw new ProxyStartError(`listen path is ${Buffer.byteLength(resolved)} bytes; a Unix socket path holds at most ${MAX_SOCKET_PATH_BYTES}: ${resolved}`);
  }
  const upstream = path.resolve(upstreamPath);
  if (resolved === upstream) {
    throw new ProxyStartError(`listen path is the upstream agent's socket itself: ${resolved}`);
  }
  if (path.dirname(resolved) === path.dirname(upstream)) {
    throw new ProxyStartError(
      `refusing to listen in gpg-agent's own socket directory ${path.dirname(upstream)}: gpg-agent watches the sockets there. Choose another directory.`,
    );
  }
  ensurePrivateDirectory(path.dirname(resolved));
  await removeStaleSocket(resolved);
  return resolved;
}

/** Creates the directory 0700 if missing; refuses one that others can enter or that is not ours. */
export function ensurePrivateDirectory(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ProxyStartError(`cannot create socket directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  const stat = fs.lstatSync(dir);
  if (!stat.isDirectory()) throw new ProxyStartError(`socket directory ${dir} is not a directory (a symlink?)`);
  if (stat.uid !== uid()) throw new ProxyStartError(`socket directory ${dir} belongs to uid ${stat.uid}, not to us (uid ${uid()})`);
  if ((stat.mode & 0o077) !== 0) {
    throw new ProxyStartError(
      `socket directory ${dir} has mode ${(stat.mode & 0o777).toString(8)}; it must be private (700) because anyone who reaches the socket can use the keys`,
    );
  }
}

/** A live socket at the path is an error; a socket nobody answers on is removed; anything else is refused. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stat.isSocket()) throw new ProxyStartError(`${socketPath} exists and is not a socket; not touching it`);
  if (await isLive(socketPath)) throw new ProxyStartError(`something is already listening on ${socketPath}`);
  fs.unlinkSync(socketPath);
}

function isLive(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect({ path: socketPath });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** Clients arriving at once queue here before they are accepted (Node's default is 511; Linux caps at somaxconn). */
const LISTEN_BACKLOG = 4096;

/** Which file our socket is: device, inode and change time (an inode number alone may be reused). */
export interface SocketIdentity {
  dev: bigint;
  ino: bigint;
  ctimeNs: bigint;
}

export function identityOf(socketPath: string): SocketIdentity | undefined {
  try {
    const st = fs.lstatSync(socketPath, { bigint: true });
    return { dev: st.dev, ino: st.ino, ctimeNs: st.ctimeNs };
  } catch {
    return undefined;
  }
}

export function isOurs(socketPath: string, ours: SocketIdentity): boolean {
  const now = identityOf(socketPath);
  return now !== undefined && now.dev === ours.dev && now.ino === ours.ino && now.ctimeNs === ours.ctimeNs;
}

/**
 * Binds `server` to `socketPath` so that the socket is never reachable by others, even for an instant:
 * created under umask 177, then chmod 600. Returns its identity, so that we later remove only our own socket.
 */
export async function listenPrivately(server: net.Server, socketPath: string): Promise<SocketIdentity> {
  const previous = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      // For a pipe path, bind() happens synchronously inside listen(), so the umask is in force for it.
      server.listen({ path: socketPath, backlog: LISTEN_BACKLOG }, () => {
        server.off('error', onError);
        resolve();
      });
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ProxyStartError(`cannot listen on ${socketPath}: ${code ?? err}`);
  } finally {
    process.umask(previous);
  }
  fs.chmodSync(socketPath, 0o600);
  return identityOf(socketPath)!;
}

/**
 * Listens on a socket someone else bound (systemd socket activation passes it as a file descriptor). Returns the
 * path it is bound to, for messages. Its file and mode are its owner's: we neither chmod nor, at the end, remove it.
 */
export async function listenOnDescriptor(server: net.Server, fd: number): Promise<string> {
  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen({ fd, backlog: LISTEN_BACKLOG }, () => {
        server.off('error', onError);
        resolve();
      });
    });
  } catch (err) {
    throw new ProxyStartError(`cannot listen on the socket passed as file descriptor ${fd}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  const address = server.address();
  // A TCP socket (ListenStream=PORT) would hand the keys to the network: only a Unix socket is served.
  if (address !== null && typeof address === 'object') {
    server.close();
    throw new ProxyStartError(`the socket passed as file descriptor ${fd} is a TCP socket (${address.address}:${address.port}); the proxy serves only a Unix socket (ListenStream=%t/assuan-proxy/S.gpg-agent)`);
  }
  const boundPath = typeof address === 'string' && address !== '' ? address : boundPathOfDescriptor(fd);
  if (boundPath === undefined) return `file descriptor ${fd}`;
  const problem = unprivateSocket(boundPath);
  if (problem) {
    server.close();
    throw new ProxyStartError(`the socket passed as file descriptor ${fd}, ${boundPath}, ${problem}: anyone who reaches it can use the keys`);
  }
  return boundPath;
}

/** What makes a socket someone else bound reachable by other users (systemd's default SocketMode is 0666). */
function unprivateSocket(socketPath: string): string | undefined {
  // An abstract socket has no file and no mode: anyone in the network namespace may connect.
  if (!socketPath.startsWith('/')) return 'is not a file (an abstract socket) and has no permissions';
  // Connecting takes write permission on the socket file itself: without it for group and others (0600, 0644),
  // nobody else can connect, whatever its directory.
  const socket = fs.statSync(socketPath);
  if (socket.uid !== uid()) return `belongs to uid ${socket.uid}, not to us (uid ${uid()})`;
  if ((socket.mode & 0o022) !== 0) return `has mode ${(socket.mode & 0o777).toString(8)} (set SocketMode=0600)`;
  return undefined;
}

/**
 * Stops listening without harming a socket someone else has put at our path meanwhile: libuv unlinks the path
 * when a Unix socket server closes, whatever file is there by then. A foreign file is moved aside (in the same
 * directory, an atomic rename) for the synchronous close, then put back.
 */
export function closeListener(server: net.Server, socketPath: string, ours: SocketIdentity | undefined): void {
  const foreign = ours !== undefined && identityOf(socketPath) !== undefined && !isOurs(socketPath, ours);
  if (!foreign) {
    server.close();
    return;
  }
  const aside = `${socketPath}.${process.pid}.aside`;
  fs.renameSync(socketPath, aside);
  try {
    server.close();
  } finally {
    fs.renameSync(aside, socketPath);
  }
}

/** Removes the socket file only if it is still the one we created. */
export function removeOwnSocket(socketPath: string, ours: SocketIdentity): void {
  try {
    if (isOurs(socketPath, ours)) fs.unlinkSync(socketPath);
  } catch {
    // Already gone.
  }
}

function uid(): number {
  return process.getuid?.() ?? 0;
}
