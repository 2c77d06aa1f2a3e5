/**
 * One socket (or any byte stream: an HTTP/2 stream of a bridge link) as Assuan lines: bytes in are framed on LF (taken line by line by whoever reads them), lines out are
 * collected and written one coalesced write per batch, and what happens to the socket is reported through
 * callbacks named after it. The session uses one for the client and one for the agent; each keeps its own
 * socket's flags (ended, closed, blocked), so nothing beside the machine tracks either socket twice.
 */
import type { Duplex } from 'node:stream';
import { CoalescingWriter } from '../coalescingWriter.js';
import { LineFramer } from '../protocol/framer.js';

export interface EndpointEvents {
  /** Bytes arrived and were framed: there may be lines to take. */
  readable(): void;
  /** The peer finished sending (EOF). */
  ended(): void;
  /** The socket failed; `code` is an errno name such as ECONNRESET. */
  failed(code: string): void;
  /** The socket is closed, both ways. */
  closed(): void;
  /** A write was taken only in part: the peer is not reading. */
  blocked(): void;
  /** The peer read what was pending. */
  drained(): void;
}

export class LineEndpoint {
  readonly framer = new LineFramer();
  private readonly out = new CoalescingWriter((bytes) => this.writeNow(bytes));
  /** Every byte received. */
  bytesIn = 0;
  /** EOF received: nothing more will arrive. */
  ended = false;
  closed = false;
  /** The socket has not taken all we wrote (reported as blocked, drained not yet). */
  blocked = false;
  /** Once set, what arrives is counted and dropped. */
  private dropping = false;
  /** While set, what arrives goes here unframed (a handshake that precedes the Assuan lines). */
  private rawReader: ((chunk: Buffer) => void) | undefined;

  constructor(
    readonly socket: Duplex,
    private readonly events: EndpointEvents,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
      if (this.dropping) return;
      if (this.rawReader) return this.rawReader(chunk);
      this.framer.push(chunk);
      this.events.readable();
    });
    socket.on('end', () => {
      this.ended = true;
      this.events.ended();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => this.events.failed(err.code ?? 'ERROR'));
    socket.on('close', () => {
      this.closed = true;
      this.events.closed();
    });
    socket.on('drain', () => {
      if (!this.blocked) return;
      this.blocked = false;
      this.events.drained();
    });
  }

  /** The socket takes writes: not destroyed, not ended by us. */
  get writable(): boolean {
    return !this.socket.destroyed && !this.socket.writableEnded;
  }

  /** Queues a line (or a run of lines) for the next flush. */
  write(bytes: Buffer): void {
    if (this.writable) this.out.add(bytes);
  }

  /** Writes what has been queued, lines contiguous in memory as one write. */
  flush(): void {
    this.out.flush();
  }

  /** Forgets what has been queued (the session failed; nothing more goes to this peer). */
  discardQueued(): void {
    this.out.discard();
  }

  private writeNow(bytes: Buffer): void {
    if (!this.writable) return;
    if (!this.socket.write(bytes) && !this.blocked) {
      this.blocked = true;
      this.events.blocked();
    }
  }

  /** Half-closes our side once what is queued has been written. */
  endOutput(last?: Buffer, then?: () => void): void {
    this.flush();
    if (!this.writable) return;
    // A bare end() writes nothing: a zero-length write to a peer that has gone would fail with EPIPE.
    if (last) this.socket.end(last, then);
    else this.socket.end(then);
  }

  /**
   * Until `lines` is called, what arrives goes to `reader` as raw bytes (a handshake before the Assuan lines).
   * `lines(leftover)` frames the bytes that came after the handshake and resumes framing.
   */
  readRaw(reader: (chunk: Buffer) => void): { lines(leftover: Buffer): void } {
    this.rawReader = reader;
    return {
      lines: (leftover) => {
        this.rawReader = undefined;
        if (leftover.length === 0) return;
        this.framer.push(leftover);
        this.events.readable();
      },
    };
  }

  /** Writes bytes at once, outside the line batches (a handshake's). */
  writeRaw(bytes: Buffer): void {
    this.flush();
    this.writeNow(bytes);
  }

  /** From now on what arrives is counted and dropped, and reading goes on so that the peer's close is seen. */
  dropInput(): void {
    this.dropping = true;
    this.socket.resume();
  }

  get droppingInput(): boolean {
    return this.dropping;
  }

  /** Reads, or stops reading. Only on a change: resume() on a flowing stream still schedules a tick. */
  setReading(wanted: boolean): void {
    if (wanted === this.socket.isPaused()) {
      if (wanted) this.socket.resume();
      else this.socket.pause();
    }
  }

  get paused(): boolean {
    return this.socket.isPaused();
  }

  /** Bytes written that the socket has not taken yet. */
  get pendingBytes(): number {
    return this.socket.writableLength;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
