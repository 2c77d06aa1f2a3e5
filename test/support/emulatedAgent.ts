/**
 * Fake socket-emulation servers, as Gpg4win's gpg-agent looks from WSL: a TCP listener on 127.0.0.1 and a socket
 * file naming its port and nonce. The nonce is checked as libassuan's server checks it (_assuan_sock_check_nonce,
 * src/assuan-socket.c :1484-1541): read 16 bytes, drop the connection without a byte on a mismatch; for the Cygwin
 * form echo them, read the client's 8 bytes of credentials and send 8 back. After that the connection is relayed
 * byte for byte to a Unix socket (a real gpg-agent can sit behind it) or, with none, answered by a minimal Assuan
 * server. Each connection records what it received in the handshake, for assertions.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const NONCE_BYTES = 16;
const CREDENTIAL_BYTES = 8;

export type EmulationForm = 'windows' | 'cygwin';

export interface EmulatedConnection {
  /** Every byte the client sent during the handshake: the nonce, then (Cygwin) its credentials. */
  handshakeBytes: Buffer;
  /** The client's 8 bytes of credentials (Cygwin form, nonce matched). */
  credentials: Buffer | undefined;
  /** Undefined until 16 bytes arrived (or the client closed before). */
  nonceMatched: boolean | undefined;
  /** Lines received after the handshake, when the server answers itself (no relay). */
  lines: Buffer[];
  /** Settles once the nonce was compared, or the client closed before sending 16 bytes. */
  checked: Promise<void>;
  /** Settles once the client's connection is closed. */
  closed: Promise<void>;
}

export interface EmulatedAgent {
  readonly form: EmulationForm;
  /** The socket file, as a client is given it. */
  readonly file: string;
  readonly port: number;
  readonly nonce: Buffer;
  /** Every connection accepted so far, in order. */
  readonly connections: EmulatedConnection[];
  /** The next connection accepted (including one accepted already and not yet taken). */
  nextConnection(): Promise<EmulatedConnection>;
  /** Listens on a new port with a new nonce and rewrites the file, as a restarted agent does; open connections stay. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** libassuan's Windows form: `%d\n` and the 16 raw nonce bytes (:1348-1354). */
export function windowsSocketFile(port: number, nonce: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${port}\n`, 'latin1'), nonce]);
}

/** libassuan's Cygwin form: `!<socket >%d s %08x-%08x-%08x-%08x` and a NUL, the words read as native ints (:1340-1346). */
export function cygwinSocketFile(port: number, nonce: Buffer): Buffer {
  const words = [0, 4, 8, 12].map((offset) => nonce.readUInt32LE(offset).toString(16).padStart(8, '0'));
  return Buffer.from(`!<socket >${port} s ${words.join('-')}\0`, 'latin1');
}

export async function startEmulatedAgent(options: { form: EmulationForm; directory: string; fileName?: string; relayTo?: string }): Promise<EmulatedAgent> {
  const { form, relayTo } = options;
  const file = path.join(options.directory, options.fileName ?? 'S.gpg-agent');
  const connections: EmulatedConnection[] = [];
  const untaken: EmulatedConnection[] = [];
  const waiting: Array<(connection: EmulatedConnection) => void> = [];
  const sockets = new Set<net.Socket>();
  const servers = new Set<net.Server>();

  const accept = (socket: net.Socket, nonce: Buffer) => {
    sockets.add(socket);
    socket.on('error', () => {});
    const connection = serve(socket, { form, nonce, relayTo, track: (other) => sockets.add(other) });
    socket.once('close', () => sockets.delete(socket));
    connections.push(connection);
    const waiter = waiting.shift();
    if (waiter) waiter(connection);
    else untaken.push(connection);
  };

  const listen = async (): Promise<{ server: net.Server; port: number; nonce: Buffer }> => {
    const nonce = randomBytes(NONCE_BYTES);
    const server = net.createServer((socket) => accept(socket, nonce));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    servers.add(server);
    return { server, port: (server.address() as net.AddressInfo).port, nonce };
  };

  const writeFile = (port: number, nonce: Buffer) => {
    const content = form === 'windows' ? windowsSocketFile(port, nonce) : cygwinSocketFile(port, nonce);
    // Renamed into place: a dial never reads half a file.
    const temporary = `${file}.new`;
    fs.writeFileSync(temporary, content, { mode: 0o600 });
    fs.renameSync(temporary, file);
  };

  let current = await listen();
  writeFile(current.port, current.nonce);

  // Stops accepting at once; the promise settles when the server's connections are gone too.
  const closing: Array<Promise<void>> = [];
  const stopListening = (server: net.Server) => {
    servers.delete(server);
    closing.push(new Promise<void>((resolve) => server.close(() => resolve())));
  };

  return {
    form,
    file,
    get port() {
      return current.port;
    },
    get nonce() {
      return Buffer.from(current.nonce);
    },
    connections,
    nextConnection() {
      const ready = untaken.shift();
      if (ready) return Promise.resolve(ready);
      return new Promise((resolve) => waiting.push(resolve));
    },
    async restart() {
      // The new listener is up before the old one goes, so the port differs for certain.
      const previous = current;
      current = await listen();
      writeFile(current.port, current.nonce);
      stopListening(previous.server);
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      for (const server of [...servers]) stopListening(server);
      await Promise.all(closing);
      fs.rmSync(file, { force: true });
    },
  };
}

/** One accepted connection: the server side of the handshake, then relay or answers. */
function serve(
  socket: net.Socket,
  setup: { form: EmulationForm; nonce: Buffer; relayTo: string | undefined; track: (socket: net.Socket) => void },
): EmulatedConnection {
  let markChecked!: () => void;
  const connection: EmulatedConnection = {
    handshakeBytes: Buffer.alloc(0),
    credentials: undefined,
    nonceMatched: undefined,
    lines: [],
    checked: new Promise((resolve) => (markChecked = resolve)),
    closed: new Promise((resolve) => socket.once('close', () => resolve())),
  };
  socket.once('close', () => markChecked());

  let phase: 'nonce' | 'credentials' | 'open' = 'nonce';
  let pending = Buffer.alloc(0);
  let forward: (bytes: Buffer) => void = () => {};

  socket.on('data', (chunk: Buffer) => {
    if (phase === 'open') return forward(chunk);
    pending = Buffer.concat([pending, chunk]);
    if (phase === 'nonce') {
      if (pending.length < NONCE_BYTES) return;
      const received = pending.subarray(0, NONCE_BYTES);
      pending = pending.subarray(NONCE_BYTES);
      connection.handshakeBytes = Buffer.from(received);
      connection.nonceMatched = received.equals(setup.nonce);
      markChecked();
      // libassuan's server answers a wrong nonce with nothing and closes (:1508-1512).
      if (!connection.nonceMatched) return void socket.destroy();
      if (setup.form === 'cygwin') {
        socket.write(Buffer.from(received));
        phase = 'credentials';
      } else phase = 'open';
    }
    if (phase === 'credentials') {
      if (pending.length < CREDENTIAL_BYTES) return;
      const credentials = Buffer.from(pending.subarray(0, CREDENTIAL_BYTES));
      pending = pending.subarray(CREDENTIAL_BYTES);
      connection.credentials = credentials;
      connection.handshakeBytes = Buffer.concat([connection.handshakeBytes, credentials]);
      // Its own pid, the client's uid and gid, as libassuan's server sends them (:1526-1531).
      const reply = Buffer.from(credentials);
      reply.writeInt32LE(process.pid, 0);
      socket.write(reply);
      phase = 'open';
    }
    forward = setup.relayTo ? relay(socket, setup.relayTo, setup.track) : answer(socket, connection);
    if (pending.length > 0) forward(pending);
  });
  return connection;
}

/** Relays to a Unix socket, byte for byte both ways; returns what takes the client's bytes. */
function relay(client: net.Socket, target: string, track: (socket: net.Socket) => void): (bytes: Buffer) => void {
  const upstream = net.connect({ path: target });
  track(upstream);
  upstream.on('data', (chunk: Buffer) => client.write(chunk));
  upstream.on('end', () => client.end());
  upstream.on('error', () => client.destroy());
  upstream.on('close', () => client.destroy());
  client.on('end', () => upstream.end());
  client.on('close', () => upstream.destroy());
  // Writes before the connect completes are queued by the socket.
  return (bytes) => upstream.write(bytes);
}

/** A minimal Assuan server: a greeting, then OK to every line, and BYE closes. */
function answer(client: net.Socket, connection: EmulatedConnection): (bytes: Buffer) => void {
  client.write('OK Pleased to meet you\n');
  let partial = Buffer.alloc(0);
  return (bytes) => {
    partial = Buffer.concat([partial, bytes]);
    for (let end = partial.indexOf(0x0a); end >= 0; end = partial.indexOf(0x0a)) {
      const line = Buffer.from(partial.subarray(0, end + 1));
      partial = partial.subarray(end + 1);
      connection.lines.push(line);
      if (line.equals(Buffer.from('BYE\n'))) return void client.end('OK closing connection\n');
      client.write('OK\n');
    }
  };
}
