/**
 * A line on its way through the session machine: the bytes travel inside the event that describes them, to the
 * action that writes them, as an argument, never through a field beside the machine. The handle is opaque: its
 * bytes sit in a private field that no serialisation, inspector, log or `util.inspect` can reach (JSON gives
 * nothing; the event's own `bytes` field is what may be published).
 */
import { inspect } from 'node:util';

export class LineHandle {
  readonly #bytes: Buffer;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  /** For the effect that writes the line, and only for it. */
  take(): Buffer {
    return this.#bytes;
  }

  get length(): number {
    return this.#bytes.length;
  }

  toJSON(): undefined {
    return undefined;
  }

  [inspect.custom](): string {
    return '[line]';
  }
}

/** The handle of a line the proxy never had the bytes of (an over-long line, dropped as it arrived). */
export const NO_BYTES = new LineHandle(Buffer.alloc(0));
