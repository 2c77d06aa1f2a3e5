/**
 * The warm-up's sockets live inside a private temporary directory (mode 0700), removed afterwards. Node truncates
 * a Unix socket path longer than sun_path (107 bytes) without an error, so with a long TMPDIR the stand-in
 * agent's socket lands outside that directory: in TMPDIR itself, under a name cut from the private directory's,
 * where whoever can reach TMPDIR can connect to it, and where it stays after the warm-up.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { warmUpSessions } from '../../src/session/warmUp.js';
import { makeTempDir } from '../support/gnupg.js';

const TIMEOUTS = { connectMs: 5_000, greetingMs: 5_000, idleMs: 60_000, inquiryMs: 300_000, closeGraceMs: 2_000 };

const savedTmpdir = process.env.TMPDIR;
let base: string | undefined;
afterEach(() => {
  if (savedTmpdir === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmpdir;
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

describe('the warm-up with a long TMPDIR', () => {
  it('leaves nothing in TMPDIR, and never binds a socket outside its private directory', async () => {
    base = makeTempDir('advw.');
    // A TMPDIR of 90 bytes: the private directory's socket paths (TMPDIR + 32 bytes) exceed 107 bytes.
    const tmpdir = path.join(base, 'd'.repeat(90 - base.length - 1));
    fs.mkdirSync(tmpdir, { mode: 0o755 });
    expect(Buffer.byteLength(tmpdir)).toBe(90);
    process.env.TMPDIR = tmpdir;
    const before = fs.readdirSync(tmpdir);
    await warmUpSessions(TIMEOUTS, 1);
    // On the current code: a socket named after a prefix of `assuan-proxy-warm-XXXXXX` is left in TMPDIR.
    expect(fs.readdirSync(tmpdir)).toEqual(before);
  });
});
