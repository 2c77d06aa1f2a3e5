/**
 * A minimal Assuan client for the proxy's own questions to a daemon (the doctor's read-only GETINFO and KEYINFO,
 * the consent prompt's GET_CONFIRMATION): connect, check the greeting, send a command, collect its answer. It is
 * not the relay: no client's line ever goes through it.
 */
import type net from 'node:net';
import { contentLength } from './classify.js';
import { LineFramer } from './framer.js';
import { dialUpstream } from '../upstream/dial.js';
import { describeHandshakeDefect, type UpstreamHandshake } from '../upstream/handshake.js';

/** An answer to one command: its D payload (percent escapes decoded), its S lines, and how it ended. */
export interface AssuanReply {
  readonly ok: boolean;
  readonly data: Buffer;
  readonly status: string[];
  /** For an ERR: gpg-error's code (the low 16 bits) and the text after the number. */
  readonly error?: { readonly code: number; readonly text: string };
}

/** GPG_ERR_FORBIDDEN: what gpg-agent answers on a restricted connection (its extra socket) to what it withholds. */
export const GPG_ERR_FORBIDDEN = 251;

/** Nothing the doctor asks for is large: a bound keeps a runaway server from filling our memory. */
const MAX_DATA_BYTES = 1024 * 1024;

export class AssuanError extends Error {
  override readonly name = 'AssuanError';
}

/** Nothing could be connected: `code` is the errno (ECONNREFUSED: a socket nobody listens on, ENOENT: nothing there). */
export class DialError extends Error {
  override readonly name = 'DialError';

  constructor(
    readonly socketPath: string,
    readonly code: string,
  ) {
    super(`cannot connect to ${socketPath}: ${code}`);
  }
}

/** Text a server sent, safe to print: control characters (a terminal's escape sequences) shown as \\xHH. */
export function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Decodes `%XX` escapes of a D line's payload. */
export function percentDecode(bytes: Buffer): Buffer {
  if (!bytes.includes(0x25)) return bytes;
  const out = Buffer.alloc(bytes.length);
  let length = 0;
  for (let i = 0; i < bytes.length; i++) {
    const hex = bytes[i] === 0x25 && i + 2 < bytes.length ? bytes.toString('latin1', i + 1, i + 3) : '';
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      out[length++] = parseInt(hex, 16);
      i += 2;
    } else {
      out[length++] = bytes[i]!;
    }
  }
  return out.subarray(0, length);
}

export class AssuanConnection {
  private readonly framer = new LineFramer();
  private readonly lines: Buffer[] = [];
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly timeoutMs: number,
    private handshake: UpstreamHandshake | undefined,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('end', () => this.fail(new AssuanError('the server closed the connection')));
    socket.on('error', (err) => this.fail(err));
    if (handshake) socket.write(handshake.opening());
    if (!handshake?.needsReply) this.handshake = undefined;
  }

  /**
   * Connects as a GnuPG client would (a socket, or a socket file: redirect, Windows or Cygwin form) and reads the
   * greeting; rejects with DialError when nothing can be connected, else unless the server greets with OK in time.
   */
  static async open(socketPath: string, env: NodeJS.ProcessEnv, timeoutMs = 5_000): Promise<{ connection: AssuanConnection; greeting: string }> {
    const dialing = dialUpstream(socketPath, env);
    let outcome: Awaited<typeof dialing>;
    try {
      outcome = await bounded(dialing, timeoutMs, () => {}, 'connecting');
    } catch (err) {
      // A connect that completes after we gave up must not hold the process open.
      void dialing.then((late) => late.kind === 'connected' && late.socket.destroy());
      throw err;
    }
    if (outcome.kind === 'failed') throw new DialError(socketPath, outcome.code);
    if (outcome.kind === 'invalidFile') throw new AssuanError(outcome.error.message);
    const connection = new AssuanConnection(outcome.socket, timeoutMs, outcome.handshake);
    try {
      const greeting = (await connection.nextLine()).toString('latin1');
      if (!/^OK( |$)/.test(greeting)) throw new AssuanError(`the greeting was "${printable(greeting.slice(0, 120))}", not OK`);
      return { connection, greeting };
    } catch (err) {
      connection.close();
      throw err;
    }
  }

  /**
   * Sends one command line and reads its answer. An INQUIRE is answered by `onInquire` (its keyword and the rest
   * of the line; what it returns, or resolves to, is sent: the server waits for it meanwhile), or else cancelled.
   */
  async request(command: string, onInquire?: (keyword: string, args: string) => string | Promise<string>): Promise<AssuanReply> {
    this.socket.write(`${command}\n`);
    const data: Buffer[] = [];
    let dataBytes = 0;
    const status: string[] = [];
    for (;;) {
      const line = await this.nextLine();
      const text = line.toString('latin1');
      if (text === 'OK' || text.startsWith('OK ')) return { ok: true, data: Buffer.concat(data), status };
      if (text.startsWith('ERR ')) {
        const match = /^ERR (\d+) ?(.*)$/.exec(text);
        const code = match ? Number(match[1]) & 0xffff : 0;
        return { ok: false, data: Buffer.concat(data), status, error: { code, text: match?.[2] ?? text.slice(4) } };
      }
      if (text.startsWith('D ')) {
        const payload = percentDecode(line.subarray(2));
        dataBytes += payload.length;
        if (dataBytes > MAX_DATA_BYTES) throw new AssuanError(`the answer to ${command.split(' ')[0]} is larger than expected`);
        data.push(payload);
      } else if (text.startsWith('S ')) {
        status.push(text.slice(2));
      } else if (text === 'INQUIRE' || text.startsWith('INQUIRE ')) {
        const [keyword = '', ...args] = text.slice('INQUIRE '.length).split(' ');
        this.socket.write(onInquire ? `${await onInquire(keyword, args.join(' '))}\n` : 'CAN\n');
      }
      // Comments (#) and anything else carry nothing for us.
    }
  }

  close(): void {
    if (!this.socket.destroyed) {
      // BYE lets the server end the session cleanly; whether it reads it does not matter.
      this.socket.end('BYE\n', () => this.socket.destroy());
    }
    this.fail(new AssuanError('closed'));
  }

  private receive(chunk: Buffer): void {
    if (!this.handshake) return this.take(chunk);
    const step = this.handshake.receive(chunk);
    if (step.write) this.socket.write(step.write);
    if (step.failed) return this.fail(new AssuanError(describeHandshakeDefect(step.failed)));
    if (step.done) {
      this.handshake = undefined;
      if (step.done.leftover.length > 0) this.take(step.done.leftover);
    }
  }

  private take(chunk: Buffer): void {
    this.framer.push(chunk);
    for (let item = this.framer.next(); item; item = this.framer.next()) {
      if (item.kind === 'tooLong') this.fail(new AssuanError('the server sent a line longer than Assuan allows'));
      else this.lines.push(item.bytes.subarray(0, contentLength(item.bytes)));
    }
    this.notify();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async nextLine(): Promise<Buffer> {
    return this.bounded(
      (async () => {
        for (;;) {
          const line = this.lines.shift();
          if (line) return line;
          if (this.failure) throw this.failure;
          await new Promise<void>((resolve) => (this.wake = resolve));
        }
      })(),
      'waiting for an answer',
    );
  }

  private bounded<T>(work: Promise<T>, doing: string): Promise<T> {
    return bounded(work, this.timeoutMs, (err) => {
      this.fail(err);
      this.socket.destroy();
    }, doing);
  }
}

/** `work`, or an AssuanError once `timeoutMs` have passed (after `onTimeout` has had it). */
function bounded<T>(work: Promise<T>, timeoutMs: number, onTimeout: (err: AssuanError) => void, doing: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new AssuanError(`no answer within ${timeoutMs / 1000} s (${doing})`);
      onTimeout(err);
      reject(err);
    }, timeoutMs);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** Opens a connection, runs `use`, and always closes it. */
export async function withAssuan<T>(socketPath: string, env: NodeJS.ProcessEnv, use: (connection: AssuanConnection) => Promise<T>, timeoutMs?: number): Promise<T> {
  const { connection } = await AssuanConnection.open(socketPath, env, timeoutMs);
  try {
    return await use(connection);
  } finally {
    connection.close();
  }
}
