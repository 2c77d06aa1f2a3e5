/**
 * Where log lines go: a stream (stdout) written so that it can never hold the proxy up. pino's own destination
 * (sonic-boom) flushes synchronously on exit and retries a failed write every 100 ms for as long as it fails,
 * so a reader that had gone (`assuan-proxy | head -1`) kept the process from ever exiting; in synchronous mode
 * a reader that stops reading stops the whole event loop. Here a write is handed to the stream (libuv writes a
 * pipe without blocking and queues the rest); while the stream's queue is over a bound, lines are dropped
 * rather than queued; after the stream fails (EPIPE: the reader is gone) every line is dropped. Nothing is
 * flushed on exit.
 */
export const MAX_LOG_BACKLOG_BYTES = 1024 * 1024;

export interface LogSink {
  write(line: string): void;
  /** Lines not written because the reader was gone or too slow. */
  readonly dropped: number;
}

export function logSink(out: NodeJS.WritableStream & { writableLength: number; destroyed: boolean }, maxBacklogBytes = MAX_LOG_BACKLOG_BYTES): LogSink {
  let failed = false;
  let dropped = 0;
  // Kept for the stream's whole life: a write error (even one after the first) must never become an exception.
  out.on('error', () => {
    failed = true;
  });
  return {
    write(line: string): void {
      if (failed || out.destroyed || out.writableLength > maxBacklogBytes) {
        dropped++;
        return;
      }
      out.write(line);
    },
    get dropped() {
      return dropped;
    },
  };
}
