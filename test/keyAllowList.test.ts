/** `--keys`: which lines name only allowed keys, read as gpg-agent reads them, against hostile variants. */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { checkKeyEntries, KeyAllowList, KeyAllowListError } from '../src/keyAllowList.js';
import { createCommandPolicy } from '../src/policy.js';
import { classifyClientLine } from '../src/protocol/classify.js';

const ALLOWED = 'A'.repeat(38) + '01';
const OTHER = 'B'.repeat(38) + '02';
const silent = pino({ level: 'silent' });

async function allowList(): Promise<KeyAllowList> {
  const keys = new KeyAllowList(checkKeyEntries([`&${ALLOWED.toLowerCase()}`]));
  await keys.resolve({}, silent);
  return keys;
}

/** The verdict of the whole policy (as the session's intake asks it) for one line. */
async function verdict(text: string): Promise<string | undefined> {
  const policy = createCommandPolicy({ keys: await allowList() })!;
  const line = Buffer.from(text, 'latin1');
  return policy(line, classifyClientLine(line).verb);
}

describe('--keys entries', () => {
  it('takes &keygrips and fingerprints (40 or 64 hex digits), comma-separated and repeated', () => {
    expect(checkKeyEntries([`&${ALLOWED}, ${'C'.repeat(40)}`, 'd'.repeat(64)])).toEqual([`&${ALLOWED}`, 'C'.repeat(40), 'd'.repeat(64)]);
  });

  it.each([[''], ['&ABC'], ['G'.repeat(40)], ['A'.repeat(39)], ['0x' + 'A'.repeat(40)], [`&${'A'.repeat(64)}`]])('refuses %j with what it takes', (entry) => {
    expect(() => checkKeyEntries([entry])).toThrow(KeyAllowListError);
  });

  it('allows nothing before it is resolved (default deny)', () => {
    const keys = new KeyAllowList(checkKeyEntries([`&${ALLOWED}`]));
    expect(keys.allows(Buffer.from(`SIGKEY ${ALLOWED}\n`), 'SIGKEY')).toBe(false);
  });

  it('a 40-digit entry that is no fingerprint in the keyring is taken as a keygrip; a 64-digit one is an error', async () => {
    const keys = new KeyAllowList(checkKeyEntries([ALLOWED]));
    // No gpg home here: no fingerprint matches.
    await keys.resolve({ ...process.env, GNUPGHOME: '/nonexistent-apx' }, silent);
    expect([...keys.keygrips]).toEqual([ALLOWED]);
    await expect(new KeyAllowList(['E'.repeat(64)]).resolve({ ...process.env, GNUPGHOME: '/nonexistent-apx' }, silent)).rejects.toThrow(/no key with fingerprint/);
  });
});

describe('--keys: lines naming keys', () => {
  it.each([
    // Selecting the allowed key, as gpg does, and its variants the agent reads the same way.
    [`SIGKEY ${ALLOWED}\n`, undefined],
    [`SETKEY ${ALLOWED}\n`, undefined],
    [`sigkey ${ALLOWED.toLowerCase()}\r\n`, undefined],
    [`SIGKEY \t ${ALLOWED}\n`, undefined],
    [`SIGKEY ${ALLOWED} trailing words\n`, undefined],
    [`KEYINFO --data ${ALLOWED}\n`, undefined],
    [`HAVEKEY ${ALLOWED}\n`, undefined],
    [`READKEY ${ALLOWED}\n`, undefined],
    [`PASSWD --preset ${ALLOWED}\n`, undefined],
    [`PRESET_PASSPHRASE ${ALLOWED} -1 41\n`, undefined],
    // Commands that name no key pass; the key they use was selected by a SIGKEY or SETKEY that was checked.
    ['PKSIGN --hash=sha256\n', undefined],
    ['PKDECRYPT\n', undefined],
    ['SETHASH 8 0123\n', undefined],
    ['GETINFO version\n', undefined],
    ['OPTION pinentry-mode=loopback\n', undefined],
    ['NOP\n', undefined],
    // Another key, however written.
    [`SIGKEY ${OTHER}\n`, 'keys'],
    [`SETKEY ${OTHER.toLowerCase()}\n`, 'keys'],
    [`SiGkEy ${OTHER}\n`, 'keys'],
    [`SIGKEY\t${OTHER}\n`, 'keys'],
    // The allowed grip with a NUL or CR inside: the agent reads up to the NUL, a partial grip.
    [`SIGKEY ${ALLOWED.slice(0, 20)}\0${ALLOWED.slice(20)}\n`, 'keys'],
    [`SIGKEY ${ALLOWED.slice(0, 20)}\r${ALLOWED.slice(20)}\n`, 'keys'],
    // One digit too many or too few, or no grip at all.
    [`SIGKEY ${ALLOWED}0\n`, 'keys'],
    [`SIGKEY ${ALLOWED.slice(1)}\n`, 'keys'],
    ['SIGKEY\n', 'keys'],
    // HAVEKEY: every grip named must be allowed; --list lists them all.
    [`HAVEKEY ${ALLOWED} ${OTHER}\n`, 'keys'],
    ['HAVEKEY --list\n', 'keys'],
    ['HAVEKEY --list=1000\n', 'keys'],
    ['KEYINFO --list\n', 'keys'],
    ['KEYINFO --ssh-list\n', 'keys'],
    [`KEYINFO ${OTHER}\n`, 'keys'],
    ['READKEY --card OPENPGP.1\n', 'keys'],
    [`EXPORT_KEY --openpgp ${OTHER}\n`, 'keys'],
    [`DELETE_KEY --force ${OTHER}\n`, 'keys'],
    [`PRESET_PASSPHRASE ${OTHER} -1 41\n`, 'keys'],
    ['CLEAR_PASSPHRASE somecacheid\n', 'keys'],
    // A preset passphrase is cached under the keygrip; GET_PASSPHRASE would hand out any key's.
    [`GET_PASSPHRASE --no-ask ${OTHER} X X X\n`, 'keys'],
    [`GET_PASSPHRASE --data ${ALLOWED} X X X\n`, 'keys'],
    ['GET_CONFIRMATION Please+confirm\n', 'keys'],
    // Making or importing keys, and the card daemon's keys (not named by keygrip).
    ['GENKEY\n', 'keys'],
    ['IMPORT_KEY\n', 'keys'],
    ['LEARN --send\n', 'keys'],
    ['SCD PKSIGN OPENPGP.3\n', 'keys'],
    ['scd pkauth OPENPGP.3\n', 'keys'],
    [`KEYTOCARD ${OTHER} D2760001240102000005000012340000 OPENPGP.1 20200101T000000\n`, 'keys'],
    // A command the proxy does not know (a newer agent's): default deny.
    [`PUT_SOMETHING ${ALLOWED}\n`, 'keys'],
    [` SIGKEY ${ALLOWED}\n`, 'keys'],
  ])('%j → %s', async (line, expected) => {
    expect(await verdict(line)).toBe(expected);
  });
});
