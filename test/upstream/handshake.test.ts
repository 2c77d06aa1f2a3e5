import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { describeHandshakeDefect, UpstreamHandshake, type HandshakeDefect, type HandshakeStep } from '../../src/upstream/handshake.js';

// Wrapped, not replaced: the test sees whether the echo is compared with timingSafeEqual.
vi.mock('node:crypto', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:crypto')>();
  return { ...original, timingSafeEqual: vi.fn(original.timingSafeEqual) };
});
const { timingSafeEqual } = await import('node:crypto');

const NONCE = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const SERVER_CREDENTIALS = Buffer.from('7b000000e8030000', 'hex');
const GREETING = Buffer.from('OK Pleased to meet you\n');
/** Our pid as a little-endian int, then uid = gid = 0, as libassuan sends it. */
const OWN_CREDENTIALS = Buffer.alloc(8);
OWN_CREDENTIALS.writeInt32LE(process.pid, 0);

/** Feeds chunks as a caller would: once done, later bytes go to the caller, not the handshake. */
function run(handshake: UpstreamHandshake, chunks: Buffer[]) {
  const writes: Buffer[] = [];
  const after: Buffer[] = [];
  let done = 0;
  let failed: HandshakeDefect | undefined;
  for (const chunk of chunks) {
    if (done > 0 || failed) {
      after.push(chunk);
      continue;
    }
    const step: HandshakeStep = handshake.receive(chunk);
    if (step.write) writes.push(step.write);
    if (step.failed) failed = step.failed;
    if (step.done) {
      done += 1;
      after.push(step.done.leftover);
    }
  }
  return { writes, done, failed, rest: Buffer.concat(after) };
}

function cygwin(nonce = NONCE) {
  return new UpstreamHandshake({ form: 'cygwin', nonce });
}

describe('Windows form', () => {
  it('opens with the nonce and expects no reply', () => {
    const handshake = new UpstreamHandshake({ form: 'windows', nonce: NONCE });
    expect(handshake.form).toBe('windows');
    expect(handshake.needsReply).toBe(false);
    expect(handshake.opening()).toEqual(NONCE);
    expect(() => handshake.receive(GREETING)).toThrow();
    expect(handshake.ended()).toEqual({});
  });

  it('keeps a nonce of its own: changing the given buffer or an opening changes nothing', () => {
    const given = Buffer.from(NONCE);
    const handshake = new UpstreamHandshake({ form: 'windows', nonce: given });
    given.fill(0);
    handshake.opening().fill(0);
    expect(handshake.opening()).toEqual(NONCE);
  });

  it('refuses a nonce that is not 16 bytes', () => {
    expect(() => new UpstreamHandshake({ form: 'windows', nonce: Buffer.alloc(15) })).toThrow(RangeError);
    expect(() => new UpstreamHandshake({ form: 'cygwin', nonce: Buffer.alloc(17) })).toThrow(RangeError);
  });
});

describe('Cygwin form', () => {
  const serverStream = Buffer.concat([NONCE, SERVER_CREDENTIALS, GREETING]);

  it('opens with the nonce, sends pid and zeros after the echo, and is done after 8 bytes back', () => {
    const handshake = cygwin();
    expect(handshake.form).toBe('cygwin');
    expect(handshake.needsReply).toBe(true);
    expect(handshake.opening()).toEqual(NONCE);
    expect(handshake.receive(NONCE)).toEqual({ write: OWN_CREDENTIALS });
    expect(handshake.receive(SERVER_CREDENTIALS)).toEqual({ done: { leftover: Buffer.alloc(0) } });
    expect(() => handshake.receive(GREETING)).toThrow();
  });

  it('writes the credentials and is done in one step when all comes in one read', () => {
    expect(cygwin().receive(serverStream)).toEqual({ write: OWN_CREDENTIALS, done: { leftover: GREETING } });
  });

  it('gives the same result for every split of the reads into two', () => {
    for (let cut = 0; cut <= serverStream.length; cut += 1) {
      const result = run(cygwin(), [serverStream.subarray(0, cut), serverStream.subarray(cut)]);
      expect(result, `cut at ${cut}`).toEqual({ writes: [OWN_CREDENTIALS], done: 1, failed: undefined, rest: GREETING });
    }
  });

  it('gives the same result for every split into three, and byte by byte', () => {
    for (let first = 0; first <= serverStream.length; first += 1) {
      for (let second = first; second <= serverStream.length; second += 1) {
        const chunks = [serverStream.subarray(0, first), serverStream.subarray(first, second), serverStream.subarray(second)];
        expect(run(cygwin(), chunks), `cuts at ${first}, ${second}`).toEqual({ writes: [OWN_CREDENTIALS], done: 1, failed: undefined, rest: GREETING });
      }
    }
    const byteByByte = [...serverStream].map((byte) => Buffer.from([byte]));
    expect(run(cygwin(), byteByByte)).toEqual({ writes: [OWN_CREDENTIALS], done: 1, failed: undefined, rest: GREETING });
  });

  it('asks for the credentials write exactly when the 16th echo byte arrives', () => {
    const handshake = cygwin();
    for (let index = 0; index < 15; index += 1) expect(handshake.receive(NONCE.subarray(index, index + 1))).toEqual({});
    expect(handshake.receive(NONCE.subarray(15))).toEqual({ write: OWN_CREDENTIALS });
    for (let index = 0; index < 7; index += 1) expect(handshake.receive(SERVER_CREDENTIALS.subarray(index, index + 1))).toEqual({});
    expect(handshake.receive(SERVER_CREDENTIALS.subarray(7))).toEqual({ done: { leftover: Buffer.alloc(0) } });
  });

  it('fails on an echo that differs in any one byte, at any split, and writes nothing', () => {
    for (let position = 0; position < 16; position += 1) {
      const echo = Buffer.from(NONCE);
      echo[position]! ^= 0x01;
      const stream = Buffer.concat([echo, SERVER_CREDENTIALS, GREETING]);
      for (let cut = 0; cut <= stream.length; cut += 1) {
        const result = run(cygwin(), [stream.subarray(0, cut), stream.subarray(cut)]);
        expect(result.failed, `byte ${position}, cut at ${cut}`).toBe('nonceMismatch');
        expect(result.writes).toEqual([]);
        expect(result.done).toBe(0);
      }
    }
  });

  it('compares the echo with timingSafeEqual', () => {
    vi.mocked(timingSafeEqual).mockClear();
    cygwin().receive(NONCE);
    expect(vi.mocked(timingSafeEqual)).toHaveBeenCalledTimes(1);
  });

  it('reports a close before the echo and one before the credentials', () => {
    const beforeEcho = cygwin();
    beforeEcho.receive(NONCE.subarray(0, 10));
    expect(beforeEcho.ended()).toEqual({ failed: 'closedBeforeEcho' });
    expect(cygwin().ended()).toEqual({ failed: 'closedBeforeEcho' });

    const beforeCredentials = cygwin();
    beforeCredentials.receive(Buffer.concat([NONCE, SERVER_CREDENTIALS.subarray(0, 3)]));
    expect(beforeCredentials.ended()).toEqual({ failed: 'closedBeforeCredentials' });

    const finished = cygwin();
    finished.receive(Buffer.concat([NONCE, SERVER_CREDENTIALS]));
    expect(finished.ended()).toEqual({});
  });

  it('ignores bytes after a failure, and reports it once', () => {
    const handshake = cygwin();
    expect(handshake.receive(randomBytes(16).fill(0xee, 0, 1))).toEqual({ failed: 'nonceMismatch' });
    expect(handshake.receive(SERVER_CREDENTIALS)).toEqual({});
    expect(handshake.ended()).toEqual({});
    const closed = cygwin();
    closed.ended();
    expect(closed.ended()).toEqual({});
    expect(closed.receive(NONCE)).toEqual({});
  });
});

describe('defect messages', () => {
  const defects: HandshakeDefect[] = ['nonceMismatch', 'closedBeforeEcho', 'closedBeforeCredentials'];

  it('are distinct words without nonce bytes', () => {
    const messages = defects.map(describeHandshakeDefect);
    expect(new Set(messages).size).toBe(defects.length);
    for (const message of messages) {
      expect(message.length).toBeGreaterThan(20);
      expect(message).not.toContain(NONCE.toString('hex'));
      expect(message).not.toContain(NONCE.toString('latin1'));
    }
  });
});
