/**
 * Incremental LF framer for Assuan lines.
 *
 * Bytes go in with `push()` in whatever pieces the socket delivered; complete lines come out of `next()` one
 * at a time, so the caller can stop between two lines of the same chunk (a command in flight must hold back the
 * lines pipelined behind it). Lines are returned as views into the received chunks, terminator included, so
 * relaying them is byte-exact and costs no copy unless a line straddles two chunks.
 *
 * libassuan accepts a line only if its LF lies within the first 1002 bytes (ASSUAN_LINELENGTH). A longer line is
 * not buffered: its bytes are dropped as they arrive and one `tooLong` item is produced when its LF shows up,
 * so a client that never sends LF costs no memory.
 */
import { MAX_LINE_BYTES } from './limits.js';

export type FramedItem =
  | { readonly kind: 'line'; readonly bytes: Buffer }
  | { readonly kind: 'tooLong'; readonly byteCount: number };

const LF = 0x0a;
const EMPTY = Buffer.alloc(0);

export class LineFramer {
  /** Holds unconsumed bytes in [start, end). Either a received chunk itself or our own growable copy. */
  private buffer: Buffer = EMPTY;
  private start = 0;
  private end = 0;
  /** Bytes in [start, scanFrom) are known to contain no LF, so they are not searched again. */
  private scanFrom = 0;
  private ownsBuffer = false;
  /** Bytes of an over-long line dropped so far, or -1 when not inside one. */
  private droppedBytes = -1;

  constructor(private readonly maxLineBytes: number = MAX_LINE_BYTES) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.start === this.end) {
      // Nothing pending: take the chunk as is (the common case, no copy).
      this.buffer = chunk;
      this.start = 0;
      this.end = chunk.length;
      this.scanFrom = 0;
      this.ownsBuffer = false;
      return;
    }
    this.append(chunk);
  }

  /** The next complete line, `tooLong` for a dropped over-long line, or undefined when more bytes are needed. */
  next(): FramedItem | undefined {
    while (this.start < this.end) {
      const lf = this.buffer.indexOf(LF, this.scanFrom);
      const found = lf !== -1 && lf < this.end;
      if (this.droppedBytes >= 0) {
        // Inside an over-long line: drop everything up to and including its LF.
        const stop = found ? lf + 1 : this.end;
        this.droppedBytes += stop - this.start;
        this.consumeTo(stop);
        if (!found) return undefined;
        const byteCount = this.droppedBytes;
        this.droppedBytes = -1;
        return { kind: 'tooLong', byteCount };
      }
      if (found) {
        const lineEnd = lf + 1;
        const length = lineEnd - this.start;
        if (length > this.maxLineBytes) {
          this.consumeTo(lineEnd);
          return { kind: 'tooLong', byteCount: length };
        }
        const bytes = this.buffer.subarray(this.start, lineEnd);
        // The caller may hold this view (e.g. queued in a socket) after we return: never write into it again.
        this.ownsBuffer = false;
        this.consumeTo(lineEnd);
        return { kind: 'line', bytes };
      }
      if (this.end - this.start >= this.maxLineBytes) {
        // The LF can no longer fall within the limit: start dropping this line now.
        this.droppedBytes = 0;
        continue;
      }
      this.scanFrom = this.end;
      return undefined;
    }
    return undefined;
  }

  /**
   * The line `next()` would return now, without taking it; undefined when that would be anything else (no complete
   * line yet, or an over-long one). Lets a caller decide whether the next line joins a run before taking it.
   */
  peekLine(): Buffer | undefined {
    if (this.droppedBytes >= 0 || this.start === this.end) return undefined;
    const lf = this.buffer.indexOf(LF, this.scanFrom);
    if (lf === -1 || lf >= this.end || lf + 1 - this.start > this.maxLineBytes) return undefined;
    return this.buffer.subarray(this.start, lf + 1);
  }

  /** True if `next()` would return an item now, without taking it. */
  hasItem(): boolean {
    if (this.start === this.end) return false;
    const lf = this.buffer.indexOf(LF, this.scanFrom);
    return lf !== -1 && lf < this.end;
  }

  /**
   * The bytes of an incomplete last line (a copy), taken: what a peer that ended mid-line sent of it. Empty while
   * complete lines are pending or an over-long line is being dropped.
   */
  takePartial(): Buffer {
    if (this.droppedBytes >= 0 || this.hasItem() || this.start === this.end) return EMPTY;
    const partial = Buffer.from(this.buffer.subarray(this.start, this.end));
    this.consumeTo(this.end);
    return partial;
  }

  /** Bytes of an incomplete line waiting for its LF (0 while dropping an over-long line). */
  get partialBytes(): number {
    return this.droppedBytes >= 0 ? 0 : this.end - this.start;
  }

  /** Bytes held, complete lines included: what a paused reader has let pile up. */
  get bufferedBytes(): number {
    return this.end - this.start;
  }

  /** True while the bytes received so far end inside a line (kept or being dropped). */
  get midLine(): boolean {
    return this.droppedBytes >= 0 || this.end > this.start;
  }

  private consumeTo(offset: number): void {
    this.start = offset;
    this.scanFrom = offset;
    if (this.start === this.end) {
      // Fully consumed: forget the buffer so a received chunk is not kept alive by us.
      if (!this.ownsBuffer) this.buffer = EMPTY;
      this.start = this.end = this.scanFrom = 0;
    }
  }

  private append(chunk: Buffer): void {
    const pending = this.end - this.start;
    const needed = pending + chunk.length;
    if (!this.ownsBuffer || needed > this.buffer.length - this.start) {
      if (this.ownsBuffer && needed <= this.buffer.length) {
        this.buffer.copy(this.buffer, 0, this.start, this.end);
      } else {
        const grown = Buffer.allocUnsafe(Math.max(needed, this.maxLineBytes + 1, this.ownsBuffer ? this.buffer.length * 2 : 0));
        this.buffer.copy(grown, 0, this.start, this.end);
        this.buffer = grown;
        this.ownsBuffer = true;
      }
      this.scanFrom -= this.start;
      this.start = 0;
      this.end = pending;
    }
    chunk.copy(this.buffer, this.end);
    this.end += chunk.length;
  }
}
