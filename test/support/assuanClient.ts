/** A raw Assuan client for tests: writes exact bytes, reads whole lines, sees the close. */
import net from 'node:net';
import { LineFramer } from '../../src/protocol/framer.js';

export class RawClient {
  private readonly framer = new LineFramer(1 << 20);
  private readonly lines: Buffer[] = [];
  private waiters: Array<() => void> = [];
  private ended = false;
  readonly socket: net.Socket;
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket, onLine?: (line: Buffer) => void) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.framer.push(chunk);
      for (let item = this.framer.next(); item; item = this.framer.next()) {
        if (item.kind !== 'line') continue;
        const line = Buffer.from(item.bytes);
        onLine?.(line);
        this.lines.push(line);
      }
      this.wake();
    });
    socket.on('error', () => {});
    // The peer's EOF ends the lines, even while our side stays open (half-open sockets).
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
  }

  /** Reads lines from an already connected socket (e.g. one accepted by a test server). */
  static wrap(socket: net.Socket, onLine?: (line: Buffer) => void): RawClient {
    return new RawClient(socket, onLine);
  }

  static connect(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ path });
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** The next line as bytes, or undefined once the connection is closed with no line left. */
  async readLineBytes(): Promise<Buffer | undefined> {
    while (this.lines.length === 0 && !this.ended) await new Promise<void>((r) => this.waiters.push(r));
    return this.lines.shift();
  }

  /** The next line without its LF; throws if the connection closed instead. */
  async readLine(): Promise<string> {
    const line = await this.readLineBytes();
    if (line === undefined) throw new Error('connection closed while a line was expected');
    return line.toString('latin1').replace(/\n$/, '');
  }

  /** Lines, as bytes, up to and including the next OK/ERR/INQUIRE line. */
  async responseBytes(): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (;;) {
      const line = await this.readLineBytes();
      if (line === undefined) throw new Error('connection closed in the middle of a response');
      out.push(line);
      if (/^(OK|ERR|INQUIRE)( |\n|$)/.test(line.toString('latin1', 0, 8))) return out;
    }
  }

  /** Lines up to and including the next OK/ERR/INQUIRE line, without their LF. */
  async response(): Promise<string[]> {
    return (await this.responseBytes()).map((line) => line.toString('latin1').replace(/\n$/, ''));
  }

  /** Writes one command and returns its response lines. */
  async request(command: string): Promise<string[]> {
    this.write(`${command}\n`);
    return this.response();
  }

  /** Every remaining line until the peer closes. */
  async rest(): Promise<string[]> {
    const out: string[] = [];
    for (let line = await this.readLineBytes(); line; line = await this.readLineBytes()) out.push(line.toString('latin1').replace(/\n$/, ''));
    return out;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
