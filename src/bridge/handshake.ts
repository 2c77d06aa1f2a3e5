/**
 * What travels on a bridge transport before HTTP/2, in both directions.
 *
 * Agent end → client end (the transport's stdin): a header line `assuan-proxy-client-end <codeBytes> <argsBytes>`,
 * the client end's code (the single-file build) and its arguments as JSON; then HTTP/2 from the server side.
 * Client end → agent end (the transport's stdout): whatever the transport prints first (a motd, kubectl's
 * warnings), then the banner line, then HTTP/2 from the client side. Bytes before the banner are skipped.
 */

export const CODE_HEADER = 'assuan-proxy-client-end';
export const BANNER = Buffer.from('assuan-proxy-link 1\n');
/** Sent by the client end in place of the banner when it cannot serve, followed by why (one line). */
export const REFUSAL = Buffer.from('assuan-proxy-link-refused ');
/** Skipped bytes kept for the log, at most (the rest is only counted). */
const PREVIEW_BYTES = 200;
/** Past this many bytes without a banner, the transport is not talking to a client end. */
export const MAX_BYTES_BEFORE_BANNER = 64 * 1024;

export function codePayload(code: Buffer, args: readonly string[]): Buffer {
  const argsJson = Buffer.from(JSON.stringify(args));
  return Buffer.concat([Buffer.from(`${CODE_HEADER} ${code.length} ${argsJson.length}\n`), code, argsJson]);
}

/** Finds the banner in what the transport prints first; what came before it is counted and previewed. */
export class BannerSeeker {
  private seen: Buffer = Buffer.alloc(0);
  skippedBytes = 0;
  found = false;
  /** The client end's refusal, once a whole refusal line has come. */
  refusal: string | undefined;

  /**
   * Takes a chunk; returns the bytes after the banner once it is found (possibly empty), undefined until then.
   * Throws past MAX_BYTES_BEFORE_BANNER.
   */
  push(chunk: Buffer): Buffer | undefined {
    this.seen = this.seen.length === 0 ? chunk : Buffer.concat([this.seen, chunk]);
    const refusedAt = this.seen.indexOf(REFUSAL);
    const refusalEnd = refusedAt >= 0 ? this.seen.indexOf(0x0a, refusedAt) : -1;
    if (refusalEnd >= 0) {
      this.refusal = printable(this.seen.subarray(refusedAt + REFUSAL.length, Math.min(refusalEnd, refusedAt + REFUSAL.length + 500)));
      return undefined;
    }
    const at = this.seen.indexOf(BANNER);
    if (at >= 0) {
      this.found = true;
      this.skippedBytes = at;
      const rest = this.seen.subarray(at + BANNER.length);
      this.preview = printable(this.seen.subarray(0, Math.min(at, PREVIEW_BYTES)));
      this.seen = Buffer.alloc(0);
      return rest;
    }
    this.skippedBytes = this.seen.length;
    if (this.seen.length > MAX_BYTES_BEFORE_BANNER) throw new Error(`no link banner in the first ${MAX_BYTES_BEFORE_BANNER} bytes the transport printed`);
    return undefined;
  }

  /** The start of the skipped bytes, control characters escaped, for the log. */
  preview = '';
}

function printable(bytes: Buffer): string {
  return bytes.toString('latin1').replace(/[^\x20-\x7e]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** HTTP/2 names and settings both ends use. */
export const LINK_AUTHORITY = 'assuan-proxy.link';
export const SESSION_PATH = '/assuan';
/** Per stream: 1 MiB in flight before the reader must take it; the link as a whole gets far more (see the ends). */
export const LINK_SETTINGS = { enablePush: false, initialWindowSize: 1024 * 1024 } as const;
