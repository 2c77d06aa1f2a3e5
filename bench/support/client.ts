/** A benchmark client: one Assuan connection, lines out, lines in, timed with hrtime. */
import net from 'node:net';
import { LineFramer } from '../../src/protocol/framer.js';

const OK = 0x4f; // 'O'
const D = 0x44; // 'D'
const GETINFO_VERSION = Buffer.from('GETINFO version\n');
const BYE = Buffer.from('BYE\n');

export function nowMicros(): number {
  return Number(process.hrtime.bigint()) / 1000;
}

export class BenchConnection {
  private readonly framer = new LineFramer();
  private readonly queue: Buffer[] = [];
  private waiting: ((line: Buffer) => void) | undefined;
  private failure: Error | undefined;
  private onFailure: ((err: Error) => void) | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.framer.push(chunk);
      for (let item = this.framer.next(); item; item = this.framer.next()) {
        if (item.kind !== 'line') return this.fail(new Error('line too long from the server'));
        if (this.waiting) {
          const deliver = this.waiting;
          this.waiting = undefined;
          deliver(item.bytes);
        } else this.queue.push(item.bytes);
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  /** Connects and reads the greeting. */
  static async open(socketPath: string): Promise<BenchConnection> {
    const socket = net.connect({ path: socketPath });
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const conn = new BenchConnection(socket);
    const greeting = await conn.line();
    if (greeting[0] !== OK) throw new Error(`no greeting: ${greeting.toString('latin1').trim()}`);
    return conn;
  }

  /** Microseconds from connect() to the greeting's LF, the connection then closed. */
  static async connectAndGreet(socketPath: string): Promise<number> {
    const start = nowMicros();
    const conn = await BenchConnection.open(socketPath);
    const elapsed = nowMicros() - start;
    conn.close();
    return elapsed;
  }

  line(): Promise<Buffer> {
    const next = this.queue.shift();
    if (next !== undefined) return Promise.resolve(next);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.onFailure = reject;
    });
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Microseconds for one `GETINFO version` round trip (D line, then OK). */
  async roundTrip(): Promise<number> {
    const start = nowMicros();
    this.socket.write(GETINFO_VERSION);
    const data = await this.line();
    const ok = await this.line();
    if (data[0] !== D || ok[0] !== OK) throw new Error(`unexpected answer: ${data.toString('latin1').trim()} / ${ok.toString('latin1').trim()}`);
    return nowMicros() - start;
  }

  /** Reads lines until an OK or ERR; returns the bytes of the lines before it. */
  async readAnswer(): Promise<number> {
    let bytes = 0;
    for (;;) {
      const line = await this.line();
      if (line[0] === OK && line[1] === 0x4b) return bytes;
      if (line[0] === 0x45 && line[1] === 0x52 && line[2] === 0x52) throw new Error(`ERR: ${line.toString('latin1').trim()}`);
      bytes += line.length;
    }
  }

  /** Microseconds from sending `line` to its OK (status and data lines before it read); throws on ERR. */
  async command(line: Buffer): Promise<number> {
    const start = nowMicros();
    this.socket.write(line);
    await this.readAnswer();
    return nowMicros() - start;
  }

  /** Sends BYE and closes without waiting for the answer, as libassuan's clients do when they finish. */
  leave(): void {
    this.socket.removeAllListeners('close');
    this.socket.end(BYE);
  }

  async bye(): Promise<void> {
    this.socket.write(BYE);
    await this.line();
    this.socket.destroy();
  }

  close(): void {
    this.socket.removeAllListeners('close');
    this.socket.destroy();
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    const reject = this.onFailure;
    this.waiting = undefined;
    this.onFailure = undefined;
    reject?.(err);
  }
}
