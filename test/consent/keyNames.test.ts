/**
 * KeyNames: a keygrip's user ID in a real, throw-away keyring. gpg's colon listing escapes `:` (and `\`, control
 * bytes) as `\xHH` and prints the other bytes of a UTF-8 user ID as they are.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyNames } from '../../src/consent/keyNames.js';
import { mustRun, tempDirs, type KeyInfo } from '../support/gnupg.js';

const execFileAsync = promisify(execFile);
const dirs = tempDirs();
const homes: string[] = [];

/** The user ID: UTF-8 (two- and three-byte characters, an emoji), a colon gpg escapes, a backslash. */
const USER_ID = 'Zoë 日本 🔑: Tester \\ x3a <zoe@example.org>';
const LATER_ID = 'Later Key: Ünïcode <later@example.org>';

let home: string;
let key: KeyInfo;
let grips: string[];

const env = (gnupgHome: string) => ({ ...process.env, GNUPGHOME: gnupgHome });

/**
 * Generates an unprotected key whose user ID is stored as the UTF-8 it is. (runTool sets LC_ALL=C, under which
 * gpg takes its arguments as Latin-1 and would store `ë` as the UTF-8 of `Ã«`: a double encoding that hides
 * decoding faults.)
 */
async function utf8Key(gnupgHome: string, userId: string): Promise<KeyInfo> {
  await mustRun('gpg', gnupgHome, ['--batch', '--display-charset', 'utf-8', '--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', userId, 'future-default', 'default', 'never']);
  const listing = (await mustRun('gpg', gnupgHome, ['--batch', '--with-colons', '-k'])).toString('utf8');
  // Each home here holds this one key when it is made: the first fpr is its primary key's.
  const fingerprint = /^fpr:+([0-9A-F]+):/m.exec(listing)?.[1];
  if (!fingerprint) throw new Error(`no key listed for ${userId}`);
  return { fingerprint, keygrip: '' };
}

async function keygrips(gnupgHome: string, fingerprint: string): Promise<string[]> {
  const listing = (await mustRun('gpg', gnupgHome, ['--batch', '--with-colons', '--with-keygrip', '-k', fingerprint])).toString();
  return listing
    .split('\n')
    .filter((line) => line.startsWith('grp:'))
    .map((line) => line.split(':')[9]!);
}

beforeAll(async () => {
  home = dirs.make('kn.');
  homes.push(home);
  key = await utf8Key(home, USER_ID);
  grips = await keygrips(home, key.fingerprint);
});

afterAll(async () => {
  for (const h of homes) await execFileAsync('gpgconf', ['--kill', 'all'], { env: env(h) }).catch(() => {});
  dirs.removeAll();
});

describe('KeyNames with a real keyring', () => {
  it('the listing holds the user ID as UTF-8 and escapes the colon (the case under test is real)', async () => {
    const listing = (await mustRun('gpg', home, ['--batch', '--with-colons', '-k', key.fingerprint])).toString('utf8');
    expect(listing).toContain('\\x3a');
    expect(listing).toContain('Zoë 日本 🔑\\x3a Tester \\x5c x3a <zoe@example.org>');
    expect(grips).toHaveLength(2);
    expect(grips[0]).not.toBe(grips[1]);
  });

  it("maps both the primary key's and the subkey's keygrip to the user ID, UTF-8 and colon intact", async () => {
    const names = new KeyNames(env(home));
    expect(await names.userIdOf(grips[0])).toBe(USER_ID);
    expect(await names.userIdOf(grips[1])).toBe(USER_ID);
    // A keygrip as a line may give it, lower-case.
    expect(await names.userIdOf(grips[1]!.toLowerCase())).toBe(USER_ID);
  });

  it('an unknown keygrip, or none, is undefined', async () => {
    const names = new KeyNames(env(home));
    expect(await names.userIdOf('0'.repeat(40))).toBeUndefined();
    expect(await names.userIdOf(undefined)).toBeUndefined();
    // Known keys are still found after a miss.
    expect(await names.userIdOf(grips[0])).toBe(USER_ID);
  });

  it('lookups at the same time all get the answer', async () => {
    const names = new KeyNames(env(home));
    const answers = await Promise.all([names.userIdOf(grips[0]), names.userIdOf(grips[1]), names.userIdOf('F'.repeat(40))]);
    expect(answers).toEqual([USER_ID, USER_ID, undefined]);
  });

  it('a key imported after the first lookup is found on a miss (the keyring is listed again)', async () => {
    let t = 1_000_000;
    const names = new KeyNames(env(home), () => t);
    expect(await names.userIdOf(grips[0])).toBe(USER_ID);
    // Another key, made elsewhere, imported into this keyring after the listing was taken.
    const other = dirs.make('kn2.');
    homes.push(other);
    const later = await utf8Key(other, LATER_ID);
    const laterGrips = await keygrips(other, later.fingerprint);
    const exported = await mustRun('gpg', other, ['--batch', '--export', later.fingerprint]);
    await mustRun('gpg', home, ['--batch', '--import'], exported);
    t += 1_000;
    // Within 10 s of the last listing a miss is not listed again: a client naming random keygrips (READKEY …, which
    // the audit names) must not keep gpg running.
    expect(await names.userIdOf(laterGrips[0])).toBeUndefined();
    t += 10_000; // still within the minute the listing is kept, but past the bound on listing for a miss
    expect(await names.userIdOf(laterGrips[0])).toBe(LATER_ID);
    expect(await names.userIdOf(laterGrips[1])).toBe(LATER_ID);
    expect(await names.userIdOf(grips[0])).toBe(USER_ID);
  });

  it('random keygrips run gpg at most once per 10 s', async () => {
    let t = 2_000_000;
    let runs = 0;
    const names = new KeyNames(env(home), () => t);
    const list = (names as unknown as { list(): Promise<Map<string, string>> }).list.bind(names);
    (names as unknown as { list(): Promise<Map<string, string>> }).list = () => (runs++, list());
    for (let i = 0; i < 20; i++) {
      expect(await names.userIdOf(i.toString(16).padStart(40, '0'))).toBeUndefined();
      t += 100;
    }
    expect(runs).toBe(1);
  });

  it('a keyring gpg cannot list leaves the user ID unknown, without throwing', async () => {
    const names = new KeyNames({ ...process.env, GNUPGHOME: '/nonexistent/kn-home', PATH: '/nonexistent' });
    await expect(names.userIdOf(grips[0])).resolves.toBeUndefined();
  });
});
