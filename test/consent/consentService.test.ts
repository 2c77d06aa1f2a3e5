/** One person, one desk: the proxies of one process prompting through the same agent share prompts and windows. */
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startConsent } from '../../src/consent/consentService.js';
import { gpgconfDir, tempDirs } from '../support/gnupg.js';

const dirs = tempDirs();
afterAll(() => dirs.removeAll());
const log = pino({ level: 'silent' });
const confirm = (socket: string, sign: number) => ({ operations: new Set(['sign'] as const), windows: { sign }, socket, prompt: undefined });

describe('startConsent', () => {
  it('gives the listeners of one process prompting through one agent the same desk; another agent gets its own', async () => {
    const home = dirs.make('gpgh.');
    const env = { ...process.env, GNUPGHOME: home };
    const socket = await gpgconfDir(home, 'agent-socket');
    const first = await startConsent(confirm(socket, 60), env, log);
    const second = await startConsent(confirm(socket, 60), env, log);
    expect(second!.desk).toBe(first!.desk);
    const otherHome = dirs.make('gpgh.');
    const other = await startConsent(confirm(await gpgconfDir(otherHome, 'agent-socket'), 60), { ...process.env, GNUPGHOME: otherHome }, log);
    expect(other!.desk).not.toBe(first!.desk);
    // Other windows are another policy: not merged into one desk's.
    expect((await startConsent(confirm(socket, 0), env, log))!.desk).not.toBe(first!.desk);
  });
});
