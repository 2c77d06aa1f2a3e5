/**
 * One connection to the agent, dialed and greeted ahead of the next client: a session that takes it skips the
 * dial and the wait for the greeting (about half of connect + greeting, measured). The rules:
 * - never reused: the proxy writes nothing on a spare; a session takes it whole, and a new spare is dialed at once;
 * - only a greeted spare is handed out (the agent's `#` lines and its OK, nothing else); anything else is dropped;
 * - a spare the agent closes, or that is not greeted within the greeting timeout, is dropped and dialed again,
 *   after a delay that grows while the agent is away (so a stopped agent costs a dial every 30 s at most);
 * - the session replays the bytes the agent sent, so its machine sees the greeting as it would on a fresh dial
 *   (its machine draws the spare as a way through `connecting`: AGENT_SPARE_TAKEN, then the greeting).
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { classifyAgentLine } from '../protocol/classify.js';
import { LineFramer } from '../protocol/framer.js';

/** What a session takes: the connected socket, paused, and the bytes the agent has sent on it (its greeting). */
export interface SpareConnection {
  socket: net.Socket;
  received: Buffer;
}

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 30_000;
/** More than a greeting: a spare whose agent says this much before OK is not what we expect; drop it. */
const MAX_GREETING_BYTES = 4096;

interface Pending {
  socket: net.Socket;
  chunks: Buffer[];
  bytes: number;
  framer: LineFramer;
  greeted: boolean;
  greetingTimer: NodeJS.Timeout;
}

export class SpareAgentConnection {
  private current: Pending | undefined;
  private retryMs = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly upstreamPath: string,
    private readonly greetingMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.dial();
  }

  /** A greeted spare is waiting to be taken. */
  get ready(): boolean {
    return this.current?.greeted ?? false;
  }

  /** The greeted spare, if one is ready (a replacement is dialed at once); undefined: dial as usual. */
  take(): SpareConnection | undefined {
    const spare = this.current;
    if (!spare?.greeted) return undefined;
    this.current = undefined;
    this.release(spare);
    // The replacement is dialed once the session taking this one has relayed its greeting: not in its way.
    setImmediate(() => this.dial());
    return { socket: spare.socket, received: Buffer.concat(spare.chunks, spare.bytes) };
  }

  /** No more spares: the one held is closed, and none is dialed again. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    if (this.current) {
      this.release(this.current);
      this.current.socket.destroy();
      this.current = undefined;
    }
  }

  private dial(): void {
    if (this.closed || this.current) return;
    const socket = net.connect({ path: this.upstreamPath });
    const spare: Pending = {
      socket,
      chunks: [],
      bytes: 0,
      framer: new LineFramer(),
      greeted: false,
      greetingTimer: setTimeout(() => this.drop(spare, 'no greeting in time'), this.greetingMs).unref(),
    };
    this.current = spare;
    socket.on('data', (chunk: Buffer) => this.onData(spare, chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => this.drop(spare, err.code ?? 'error'));
    socket.on('end', () => this.drop(spare, 'closed by the agent'));
    socket.on('close', () => this.drop(spare, 'closed'));
  }

  private onData(spare: Pending, chunk: Buffer): void {
    if (spare.greeted) {
      // The agent speaks unasked on an idle connection: not a connection to hand to a client.
      this.drop(spare, 'unexpected output');
      return;
    }
    spare.chunks.push(chunk);
    spare.bytes += chunk.length;
    spare.framer.push(chunk);
    for (let item = spare.framer.next(); item !== undefined; item = spare.framer.next()) {
      const kind = item.kind === 'line' ? classifyAgentLine(item.bytes).kind : 'invalid';
      if (kind === 'comment') continue;
      if (kind !== 'ok' || spare.framer.hasItem() || spare.framer.midLine) {
        this.drop(spare, 'not a plain greeting');
        return;
      }
      // Kept reading: an agent that closes an idle spare (a restart) is seen at once, and the spare dialed again.
      spare.greeted = true;
      clearTimeout(spare.greetingTimer);
      this.retryMs = 0;
      return;
    }
    if (spare.bytes > MAX_GREETING_BYTES) this.drop(spare, 'greeting too long');
  }

  /** Forgets a spare that cannot be handed out, and dials another after a delay that grows while this repeats. */
  private drop(spare: Pending, reason: string): void {
    if (this.current !== spare) return;
    this.current = undefined;
    this.release(spare);
    spare.socket.destroy();
    if (this.closed) return;
    this.retryMs = Math.min(Math.max(this.retryMs * 2, FIRST_RETRY_MS), MAX_RETRY_MS);
    this.log.debug({ reason, retryMs: this.retryMs }, 'spare agent connection dropped');
    this.retryTimer = setTimeout(() => this.dial(), this.retryMs).unref();
  }

  /** The socket is no longer ours to watch: a session takes it, or it is being closed. */
  private release(spare: Pending): void {
    clearTimeout(spare.greetingTimer);
    // Whatever arrives from here on waits in the socket for its new owner.
    spare.socket.pause();
    spare.socket.removeAllListeners('data');
    spare.socket.removeAllListeners('end');
    spare.socket.removeAllListeners('error');
    spare.socket.removeAllListeners('close');
    // An error between now and the new owner's handlers must not become an uncaught exception.
    spare.socket.on('error', () => {});
  }
}
