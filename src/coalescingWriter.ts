/**
 * Collects the lines bound for one socket while a received chunk is processed, and writes each run of lines that
 * lie back to back in memory as one write. Lines relayed unchanged are views into the chunk they arrived in, so
 * a chunk's lines usually leave in a single write, with no copy and no writev.
 *
 * Two views that are adjacent in the same ArrayBuffer are, byte for byte, their concatenation: coalescing never
 * changes what is sent, only how many writes carry it.
 */
/** True when `next` starts in memory exactly where `run` ends: together they are one view of the same bytes. */
export function followsInMemory(run: Buffer, next: Buffer): boolean {
  return next.buffer === run.buffer && next.byteOffset === run.byteOffset + run.length;
}

/** One view over `run` and the `next` view that follows it in memory (see followsInMemory). */
export function extendView(run: Buffer, next: Buffer): Buffer {
  return Buffer.from(run.buffer, run.byteOffset, run.length + next.length);
}

export class CoalescingWriter {
  private pending: Buffer | undefined;
  private runStart = 0;
  private runEnd = 0;

  constructor(private readonly write: (bytes: Buffer) => void) {}

  add(bytes: Buffer): void {
    if (bytes.length === 0) return;
    const pending = this.pending;
    if (pending !== undefined && bytes.buffer === pending.buffer && bytes.byteOffset === this.runEnd) {
      // The same test as followsInMemory, against the run collected so far.
      this.runEnd += bytes.length;
      return;
    }
    this.flush();
    this.pending = bytes;
    this.runStart = bytes.byteOffset;
    this.runEnd = bytes.byteOffset + bytes.length;
  }

  /** Writes what has been collected. */
  flush(): void {
    const pending = this.pending;
    if (pending === undefined) return;
    this.pending = undefined;
    const whole = this.runStart === pending.byteOffset && this.runEnd === pending.byteOffset + pending.length;
    this.write(whole ? pending : Buffer.from(pending.buffer, this.runStart, this.runEnd - this.runStart));
  }

  /** Forgets what has been collected (the socket is gone). */
  discard(): void {
    this.pending = undefined;
  }
}
