/**
 * The bytes a client owes a socket-emulation server before Assuan starts, as libassuan's _assuan_sock_connect sends
 * them (src/assuan-socket.c, libassuan master 92587b7, :1136-1160):
 *
 * - Windows form: the 16-byte nonce, and nothing comes back for it (:1139);
 * - Cygwin form: the nonce; the server echoes it (:1146, server side :1516); we send 8 bytes of credentials, our
 *   pid and zeros for uid and gid (:1150-1153); the server sends its own 8 (:1157, server side :1529-1531).
 *
 * Pure: the caller writes and reads. libassuan reads the echo without looking at it (:1144-1146); we compare it,
 * in constant time, so that a server which is not the one the file names fails here rather than later.
 */
import { timingSafeEqual } from 'node:crypto';
import { NONCE_BYTES } from './socketFile.js';

/** Cygwin's `struct ucred { pid_t pid; uid_t uid; gid_t gid; }`: 4 + 2 + 2 bytes (:1518-1523). */
const CREDENTIAL_BYTES = 8;

export type HandshakeDefect = 'nonceMismatch' | 'closedBeforeEcho' | 'closedBeforeCredentials';

/**
 * What one event of the exchange asks for: bytes to write (before anything else), the end of the handshake with
 * the bytes that came after it (the start of the Assuan greeting), or a failure. `write` and `done` may come together.
 */
export type HandshakeStep = { write?: Buffer; done?: { leftover: Buffer }; failed?: HandshakeDefect };

const HANDSHAKE_DEFECTS: Record<HandshakeDefect, string> = {
  nonceMismatch: 'the server did not echo the nonce of the socket file: it is not the server that wrote the file',
  closedBeforeEcho:
    'the server closed the connection before echoing the nonce; a libassuan server does this when the nonce is wrong (is the socket file stale?)',
  closedBeforeCredentials: 'the server closed the connection after echoing the nonce, before sending its credentials',
};

/** Plain words for a person; never any nonce bytes. */
export function describeHandshakeDefect(defect: HandshakeDefect): string {
  return HANDSHAKE_DEFECTS[defect];
}

type Phase = 'echo' | 'credentials' | 'done' | 'failed';

export class UpstreamHandshake {
  readonly form: 'windows' | 'cygwin';
  /** Whether the server answers the opening; false for the Windows form: done once the opening is written. */
  readonly needsReply: boolean;
  private readonly nonce: Buffer;
  private readonly echo = Buffer.alloc(NONCE_BYTES);
  private echoReceived = 0;
  private credentialsReceived = 0;
  private phase: Phase;

  constructor(target: { form: 'windows' | 'cygwin'; nonce: Buffer }) {
    if (target.nonce.length !== NONCE_BYTES) throw new RangeError(`a nonce has ${NONCE_BYTES} bytes, not ${target.nonce.length}`);
    this.form = target.form;
    this.needsReply = target.form === 'cygwin';
    this.nonce = Buffer.from(target.nonce);
    this.phase = this.needsReply ? 'echo' : 'done';
  }

  /** What to write right after connecting: the nonce (a copy; the handshake keeps its own). */
  opening(): Buffer {
    return Buffer.from(this.nonce);
  }

  /**
   * Bytes from the server while the handshake runs. Once it is done, further bytes belong to the caller: passing
   * them here is a mistake that would lose them, so it throws. After a failure, bytes are ignored: the failure was
   * reported once, and a late chunk must not throw inside a socket's data handler.
   */
  receive(chunk: Buffer): HandshakeStep {
    if (this.phase === 'failed') return {};
    if (this.phase === 'done') throw new Error(this.needsReply ? 'the handshake is over' : 'a Windows-form handshake takes no reply');
    const step: HandshakeStep = {};
    let at = 0;
    if (this.phase === 'echo') {
      at = chunk.copy(this.echo, this.echoReceived, 0, NONCE_BYTES - this.echoReceived);
      this.echoReceived += at;
      if (this.echoReceived < NONCE_BYTES) return step;
      if (!timingSafeEqual(this.echo, this.nonce)) {
        this.phase = 'failed';
        return { failed: 'nonceMismatch' };
      }
      this.phase = 'credentials';
      step.write = ownCredentials();
    }
    // The server's credentials are not kernel-checked and tell us nothing; libassuan ignores them too (:1156).
    const taken = Math.min(CREDENTIAL_BYTES - this.credentialsReceived, chunk.length - at);
    this.credentialsReceived += taken;
    at += taken;
    if (this.credentialsReceived === CREDENTIAL_BYTES) {
      this.phase = 'done';
      step.done = { leftover: chunk.subarray(at) };
    }
    return step;
  }

  /** The server's EOF came: a failure if the exchange was not over (nothing to report for the Windows form). */
  ended(): HandshakeStep {
    if (this.phase === 'done' || this.phase === 'failed') return {};
    const failed: HandshakeDefect = this.phase === 'echo' ? 'closedBeforeEcho' : 'closedBeforeCredentials';
    this.phase = 'failed';
    return { failed };
  }
}

/** pid as a native int (little-endian on every Windows machine), uid = gid = 0 (:1150-1152). */
function ownCredentials(): Buffer {
  const credentials = Buffer.alloc(CREDENTIAL_BYTES);
  credentials.writeInt32LE(process.pid, 0);
  return credentials;
}
