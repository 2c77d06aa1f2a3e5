/**
 * A scripted upstream: a Unix socket server the test drives line by line, standing in for gpg-agent where the
 * real one cannot be made to misbehave (early close, no greeting, non-Assuan output, held answers). It keeps a
 * journal of what it received and sent, in order, so tests can assert on ordering without timing.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RawClient } from './assuanClient.js';
import { makeTempDir } from './gnupg.js';

export interface ScriptedConnection {
  /** Lines received from the proxy, as bytes. */
  readLineBytes(): Promise<Buffer | undefined>;
  readLine(): Promise<string>;
  send(data: string | Buffer): void;
  end(): void;
  destroy(): void;
  /** Bytes this side has written that the proxy has not read yet (beyond the socket buffers). */
  pendingBytes(): number;
  /** Stop reading from the socket: what the proxy writes piles up in the socket buffers. */
  stopReading(): void;
  /** Read again after stopReading(). */
  resumeReading(): void;
  /** Stay open after the proxy's EOF (by default the scripted agent closes then, as gpg-agent does). */
  holdOpenAfterEof(): void;
  closed: Promise<void>;
}

export interface ScriptedAgent {
  socket: string;
  /** The connections the proxy opened, in order. */
  nextConnection(): Promise<ScriptedConnection>;
  /** What happened, in order: `recv <line>` as each line arrives, `send <line>` as it is written. */
  journal: string[];
  close(): Promise<void>;
}

export async function createScriptedAgent(): Promise<ScriptedAgent> {
  const dir = makeTempDir('sagt.');
  const socket = path.join(dir, 'S.scripted');
  const journal: string[] = [];
  const pending: ScriptedConnection[] = [];
  let waiters: Array<(c: ScriptedConnection) => void> = [];
  const sockets = new Set<net.Socket>();

  // Half-open allowed: a test decides when the scripted agent closes after the proxy's EOF.
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    // Reuse the raw client's line reader over the accepted socket.
    const reader = RawClient.wrap(sock, (line) => journal.push(`recv ${line.toString('latin1').replace(/\n$/, '')}`));
    let closeOnEof = true;
    sock.on('end', () => {
      if (closeOnEof) sock.end();
    });
    const conn: ScriptedConnection = {
      readLineBytes: () => reader.readLineBytes(),
      async readLine() {
        const line = await conn.readLineBytes();
        if (line === undefined) throw new Error('proxy closed the upstream connection');
        return line.toString('latin1').replace(/\n$/, '');
      },
      send(data) {
        const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
        journal.push(`send ${bytes.toString('latin1').replace(/\n$/, '')}`);
        sock.write(bytes);
      },
      end: () => sock.end(),
      destroy: () => sock.destroy(),
      pendingBytes: () => sock.writableLength,
      stopReading: () => sock.pause(),
      resumeReading: () => sock.resume(),
      holdOpenAfterEof: () => {
        closeOnEof = false;
      },
      closed: reader.closed,
    };
    const waiter = waiters.shift();
    if (waiter) waiter(conn);
    else pending.push(conn);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));

  return {
    socket,
    journal,
    nextConnection() {
      const ready = pending.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve) => waiters.push(resolve));
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      waiters = [];
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
