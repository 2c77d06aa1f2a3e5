/**
 * What Linux's /proc says about sockets, read without connecting to any: which Unix socket paths and loopback TCP
 * ports have a listener, and which path a socket descriptor is bound to. Elsewhere (no /proc) each says undefined:
 * cannot tell.
 */
import fs from 'node:fs';

/** Paths of the listening Unix sockets (Linux: /proc/net/unix, flag __SO_ACCEPTCON), or undefined elsewhere. */
export async function listeningUnixPaths(): Promise<Set<string> | undefined> {
  const table = await fs.promises.readFile('/proc/net/unix').catch(() => undefined);
  if (table === undefined) return undefined;
  const paths = new Set<string>();
  for (const socket of unixSocketTable(table)) if (socket.listening && socket.path.startsWith('/')) paths.add(realOrAsIs(socket.path));
  return paths;
}

/**
 * /proc/net/unix, row by row: `Num RefCount Protocol Flags Type St Inode Path`. The path is the rest of the row,
 * as bytes (it may hold blanks and any UTF-8), so it is cut after the seventh field, never split on blanks.
 */
export function unixSocketTable(table: Buffer): Array<{ inode: string; listening: boolean; path: string }> {
  const rows: Array<{ inode: string; listening: boolean; path: string }> = [];
  const ROW = /^\s*\S+:\s+\S+\s+\S+\s+(\S+)\s+\S+\s+\S+\s+(\d+) ?(.*)$/s;
  let start = table.indexOf(0x0a) + 1;
  while (start > 0 && start < table.length) {
    const end = table.indexOf(0x0a, start);
    const row = table.subarray(start, end < 0 ? table.length : end);
    start = end < 0 ? table.length : end + 1;
    const match = ROW.exec(row.toString('latin1'));
    if (!match) continue;
    const pathStart = row.length - Buffer.byteLength(match[3]!, 'latin1');
    rows.push({ inode: match[2]!, listening: match[1] === '00010000', path: row.subarray(pathStart).toString('utf8') });
  }
  return rows;
}

/** Ports listening where 127.0.0.1 reaches them (Linux: /proc/net/tcp and tcp6, state 0A), or undefined elsewhere. */
export async function listeningLoopbackPorts(): Promise<Set<number> | undefined> {
  const tables = await Promise.all(['/proc/net/tcp', '/proc/net/tcp6'].map((file) => fs.promises.readFile(file, 'latin1').catch(() => undefined)));
  if (tables[0] === undefined) return undefined;
  // 127.0.0.1 and 0.0.0.0; in tcp6, :: and ::ffff:127.0.0.1 (each 32-bit word in host order).
  const reachable = new Set(['0100007F', '00000000', '00000000000000000000000000000000', '0000000000000000FFFF00000100007F']);
  const ports = new Set<number>();
  for (const table of tables) {
    for (const line of (table ?? '').split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      const [address, port] = local?.split(':') ?? [];
      if (state === '0A' && address && reachable.has(address) && port) ports.add(parseInt(port, 16));
    }
  }
  return ports;
}

/**
 * The path a Unix socket descriptor is bound to (Node 20's server.address() gives null for a server opened from
 * a descriptor): the descriptor names the socket's inode, /proc/net/unix its path.
 */
export function boundPathOfDescriptor(fd: number): string | undefined {
  try {
    const inode = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`))?.[1];
    if (!inode) return undefined;
    return unixSocketTable(fs.readFileSync('/proc/net/unix')).find((socket) => socket.inode === inode && socket.path !== '')?.path;
  } catch {
    return undefined;
  }
}

/** A path with its symlinks resolved (a bound socket's file may have been removed since: then as it is). */
export function realOrAsIs(file: string): string {
  try {
    return fs.realpathSync(file);
  } catch {
    return file;
  }
}
