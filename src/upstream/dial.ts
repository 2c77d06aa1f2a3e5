/**
 * Connecting to an upstream Assuan server by the path a GnuPG client would use. A Unix socket is one connect and
 * nothing else; only when that connect fails as it does on a path that is no socket do we look at the path, and
 * a regular file there is read as libassuan's _assuan_sock_connect reads it (src/assuan-socket.c, libassuan master
 * 92587b7, :1174-1202 on Unix, :1111-1163 on Windows): a Unix redirect, or a Windows or Cygwin socket-emulation
 * file (reached from WSL). The file is read on every dial: the emulation's port and nonce change each time the
 * agent starts.
 */
import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import net from 'node:net';
import { UpstreamHandshake } from './handshake.js';
import { parseSocketFile, SOCKET_FILE_READ_LIMIT, SocketFileError, type SocketFileContent } from './socketFile.js';

/**
 * `connected`: the socket is connected, with no listener of ours and nothing read from it. With a `handshake`
 * (an emulation file), the caller writes `handshake.opening()` first and, when `handshake.needsReply`, feeds what
 * arrives to `handshake.receive()` until it is done; Assuan starts after that.
 */
export type DialOutcome =
  | { kind: 'connected'; socket: net.Socket; handshake: UpstreamHandshake | undefined }
  | { kind: 'failed'; code: string }
  | { kind: 'invalidFile'; error: SocketFileError };

/**
 * What connecting to a path that is no socket gives: ECONNREFUSED on Linux for a regular file (and for a socket
 * nobody listens on); the others where other systems or file systems (WSL's drvfs) differ.
 */
const NOT_A_LISTENING_SOCKET = new Set(['ECONNREFUSED', 'ENOTSOCK', 'EPROTOTYPE', 'ENOTSUP', 'EOPNOTSUPP']);

export async function dialUpstream(path: string, env: NodeJS.ProcessEnv): Promise<DialOutcome> {
  const direct = await connect({ path });
  if (direct.kind === 'connected') return { ...direct, handshake: undefined };
  if (!NOT_A_LISTENING_SOCKET.has(direct.code)) return direct;

  // stat, not lstat: libassuan follows a symlink to the file (:1182-1184).
  const isRegularFile = await stat(path).then(
    (info) => info.isFile(),
    () => false,
  );
  if (!isRegularFile) return direct;
  let content: Buffer;
  try {
    content = await readHead(path, SOCKET_FILE_READ_LIMIT);
  } catch (err) {
    return { kind: 'failed', code: errnoCode(err) };
  }
  let target: SocketFileContent;
  try {
    target = parseSocketFile(path, content, env);
  } catch (err) {
    if (err instanceof SocketFileError) return { kind: 'invalidFile', error: err };
    throw err;
  }

  if (target.form === 'redirect') {
    // One hop only: libassuan connects to the named path without looking at it again (:1191-1197).
    const redirected = await connect({ path: target.path });
    return redirected.kind === 'connected' ? { ...redirected, handshake: undefined } : redirected;
  }
  // 127.0.0.1 as libassuan (INADDR_LOOPBACK, :1127); 'localhost' may resolve to ::1, where nobody listens.
  const emulated = await connect({ host: '127.0.0.1', port: target.port });
  return emulated.kind === 'connected' ? { ...emulated, handshake: new UpstreamHandshake(target) } : emulated;
}

/** gpg-agent's ssh socket speaks the ssh-agent protocol, not Assuan. */
export function isSshAgentSocketPath(path: string): boolean {
  const name = path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1);
  return name === 'S.gpg-agent.ssh';
}

type Connected = { kind: 'connected'; socket: net.Socket } | { kind: 'failed'; code: string };

/** Connects; our listeners are gone once this settles, so later errors reach the caller's. */
function connect(options: net.NetConnectOpts): Promise<Connected> {
  return new Promise((resolve) => {
    const socket = net.connect(options);
    const onConnect = () => {
      socket.off('error', onError);
      resolve({ kind: 'connected', socket });
    };
    const onError = (err: Error) => {
      socket.off('connect', onConnect);
      socket.destroy();
      resolve({ kind: 'failed', code: errnoCode(err) });
    };
    socket.once('connect', onConnect);
    socket.once('error', onError);
  });
}

/** The first `limit` bytes of a file (fewer if it is shorter). Non-blocking open: a FIFO swapped in cannot hang us. */
async function readHead(path: string, limit: number): Promise<Buffer> {
  const handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    const buffer = Buffer.alloc(limit);
    let filled = 0;
    while (filled < limit) {
      const { bytesRead } = await handle.read(buffer, filled, limit - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'ERROR';
}
