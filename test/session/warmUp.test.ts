/** The start-up warm-up runs whole sessions over real sockets against its own stand-in agent, and leaves nothing behind. */
import fs from 'node:fs';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { warmUpSessions } from '../../src/session/warmUp.js';

const TIMEOUTS = { connectMs: 5_000, greetingMs: 5_000, idleMs: 60_000, inquiryMs: 300_000, closeGraceMs: 2_000 };
const warmDirs = () => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith('assuan-proxy-warm-'));

describe('warming the session path at start', () => {
  it('every throwaway session goes through a whole gpg-like exchange and ends closed; its directory is gone', async () => {
    const before = warmDirs();
    const ended = await warmUpSessions(TIMEOUTS, 3);
    expect(ended.map((s) => [s.outcome, s.failure, s.commands])).toEqual([
      ['closed', null, 10],
      ['closed', null, 10],
      ['closed', null, 10],
    ]);
    expect(warmDirs()).toEqual(before);
  });
});
