/** Argument checks: hostile variants of the lines a forwarded session sends, each read as gpg-agent 2.2.40 reads it. */
import { describe, expect, it } from 'vitest';
import { ArgumentCheckError, createArgumentCheck, hasOption, parseAllowedOptions, readOption, skipOptions, type ArgumentCheckOptions } from '../src/argumentChecks.js';
import { OPTIONS, USAGE } from '../src/commandLine.js';
import { createCommandPolicy } from '../src/policy.js';
import { classifyClientLine } from '../src/protocol/classify.js';

const GRIP = '0123456789ABCDEF0123456789abcdef01234567';
const SHA1 = 'ab'.repeat(20);
const SHA256 = 'AB'.repeat(32);
const SHA512 = 'cd'.repeat(64);

/** 'forward', or the rule that refuses the line (a whole line, its terminator given in the text). */
function verdict(text: string, options: ArgumentCheckOptions = {}): string {
  const policy = createCommandPolicy({ arguments: options })!;
  const line = Buffer.from(text, 'latin1');
  return policy(line, classifyClientLine(line).verb) ?? 'forward';
}

describe('argument checks: keygrips where the agent reads one', () => {
  it.each([
    [`SIGKEY ${GRIP}\n`, 'forward'],
    [`sigkey ${GRIP}\r\n`, 'forward'], // verb in any case; the CR before LF is stripped by libassuan
    [`SeTkEy\t \t${GRIP}\n`, 'forward'], // blanks (spaces and tabs) after the verb are skipped
    [`SIGKEY ${GRIP} trailing\n`, 'forward'], // parse_keygrip stops at the blank; the agent ignores the rest
    [`SIGKEY ${GRIP}0\n`, 'arguments'], // 41 digits
    [`SIGKEY ${GRIP.slice(1)}\n`, 'arguments'], // 39
    [`SIGKEY ${GRIP.slice(0, 38)}zz\n`, 'arguments'], // not hex
    [`SIGKEY --x ${GRIP}\n`, 'arguments'], // cmd_sigkey skips no options
    ['SIGKEY\n', 'arguments'],
    [`SIGKEY ${GRIP.slice(0, 20)}\0${GRIP.slice(20)}\n`, 'arguments'], // NUL: the agent would read half a grip
    [`SIGKEY ${GRIP}\0\n`, 'arguments'], // any NUL in a checked line
    [`SIGKEY ${GRIP}\r\r\n`, 'arguments'], // only one CR is stripped: the other ends parse_hexstring
    [`SIGKEY ${GRIP.slice(0, 20)}\r${GRIP.slice(20)}\n`, 'arguments'],
    [`HAVEKEY ${GRIP} ${GRIP}\n`, 'forward'],
    [`HAVEKEY ${GRIP}\t${GRIP.toLowerCase()}\n`, 'forward'],
    [`HAVEKEY ${GRIP} nogrip\n`, 'arguments'],
    ['HAVEKEY\n', 'arguments'],
    ['HAVEKEY --list=1000\n', 'forward'], // 2.3+: lists, names no grip (--keys and --restricted judge listing)
    [`HAVEKEY --info ${GRIP}\n`, 'forward'],
    ['HAVEKEY --info nogrip\n', 'arguments'],
    [`KEYINFO ${GRIP}\n`, 'forward'],
    [`KEYINFO --data --ssh-fpr=sha256 ${GRIP}\n`, 'forward'],
    [`KEYINFO --with-ssh -- ${GRIP}\n`, 'forward'],
    ['KEYINFO --list\n', 'forward'],
    ['KEYINFO --ssh-list --data\n', 'forward'],
    ['KEYINFO --data\n', 'arguments'],
    ['KEYINFO --listx\n', 'arguments'], // not --list: a whole word only
    [`KEYINFO ${GRIP} --list\n`, 'forward'], // --list after the grip is no option for the agent; the grip is read
    ['KEYINFO nogrip --list\n', 'arguments'],
    [`READKEY ${GRIP}\n`, 'forward'],
    ['READKEY --card OPENPGP.1\n', 'forward'], // a card key id, not a keygrip
    ['READKEY --card\n', 'arguments'],
    ['READKEY OPENPGP.1\n', 'arguments'],
    [`EXPORT_KEY --openpgp --cache-nonce=ABC ${GRIP}\n`, 'forward'],
    ['EXPORT_KEY --openpgp\n', 'arguments'],
    [`DELETE_KEY --force ${GRIP}\n`, 'forward'],
    [`DELETE_KEY ${GRIP}x\n`, 'arguments'],
    [`PASSWD --preset ${GRIP}\n`, 'forward'],
    ['PASSWD --verify somekey\n', 'arguments'],
    [`KEYTOCARD ${GRIP} D2760001240102000005000012340000 OPENPGP.1 20200101T000000\n`, 'forward'],
    [`KEYATTR ${GRIP} Confirm: yes\n`, 'forward'],
    ['KEYATTR Confirm: yes\n', 'arguments'],
    // Cache ids: any word of 1 to 50 bytes (not a keygrip: a passphrase may be cached under any id).
    ['CLEAR_PASSPHRASE --mode=normal mycacheid\n', 'forward'],
    ['CLEAR_PASSPHRASE\n', 'arguments'],
    [`CLEAR_PASSPHRASE ${'x'.repeat(51)}\n`, 'arguments'],
    [`GET_PASSPHRASE --data ${GRIP} X X X\n`, 'forward'],
    [`GET_PASSPHRASE ${'x'.repeat(51)} X X X\n`, 'arguments'],
    [`PRESET_PASSPHRASE ${GRIP} -1 41424344\n`, 'forward'],
    [`PRESET_PASSPHRASE --inquire ${GRIP} -1\n`, 'forward'],
    [`PRESET_PASSPHRASE ${GRIP} 600 414243\n`, 'arguments'], // only -1 (cmd_preset_passphrase)
    [`PRESET_PASSPHRASE ${GRIP} -1 414\n`, 'arguments'], // odd number of digits
    [`PRESET_PASSPHRASE ${GRIP}\n`, 'arguments'],
  ])('%j → %s', (line, expected) => {
    expect(verdict(line)).toBe(expected);
  });
});

describe('argument checks: SETHASH', () => {
  it.each([
    [`SETHASH 8 ${SHA256}\n`, 'forward'],
    [`sethash\t8\t${SHA256.toLowerCase()}\r\n`, 'forward'],
    [`SETHASH 2 ${SHA1}\n`, 'forward'],
    [`SETHASH 3 ${SHA1}\n`, 'forward'], // RMD160, 20 bytes
    [`SETHASH 10 ${SHA512}\n`, 'forward'],
    [`SETHASH 11 ${'00'.repeat(28)}\n`, 'forward'],
    [`SETHASH 9 ${'00'.repeat(48)}\n`, 'forward'],
    [`SETHASH 326 ${SHA256}\n`, 'forward'], // SM3
    [`SETHASH --hash=sha256 ${SHA256}\n`, 'forward'],
    [`SETHASH --hash=tls-md5sha1 ${'11'.repeat(36)}\n`, 'forward'],
    [`SETHASH 8 ${SHA256} \n`, 'forward'],
    // The agent takes any of 16, 20, 24, 28, 32, 48, 64 bytes for any algorithm; here the algorithm's own length.
    [`SETHASH 8 ${SHA1}\n`, 'arguments'], // short
    [`SETHASH 8 ${SHA512}\n`, 'arguments'], // over-long
    [`SETHASH 2 ${SHA256}\n`, 'arguments'],
    [`SETHASH 8 ${SHA256}0\n`, 'arguments'], // odd
    [`SETHASH 8 ${SHA256.slice(2)}zz\n`, 'arguments'], // not hex
    [`SETHASH 8 ${'ab'.repeat(100)}\n`, 'arguments'],
    [`SETHASH --hash=sha256 ${SHA1}\n`, 'arguments'],
    [`SETHASH --hash=tls-md5sha1 ${SHA256}\n`, 'arguments'],
    // MD5 refused (number 1 and its name), unknown algorithms, names in the wrong case (has_option is strstr).
    [`SETHASH 1 ${'00'.repeat(16)}\n`, 'arguments'],
    [`SETHASH --hash=md5 ${'00'.repeat(16)}\n`, 'arguments'],
    [`SETHASH 7 ${SHA256}\n`, 'arguments'],
    [`SETHASH 0 ${SHA256}\n`, 'arguments'],
    [`SETHASH --hash=SHA256 ${SHA256}\n`, 'arguments'],
    [`SETHASH --hash=sha3 ${SHA256}\n`, 'arguments'],
    // What strtoul also reads as 8: a sign, leading zeros, overflow, digits run into the hex.
    [`SETHASH +8 ${SHA256}\n`, 'arguments'],
    [`SETHASH -4294967288 ${SHA256}\n`, 'arguments'],
    [`SETHASH 4294967304 ${SHA256}\n`, 'arguments'],
    [`SETHASH 08 ${SHA256}\n`, 'arguments'],
    [`SETHASH 8${SHA256}\n`, 'arguments'],
    // More options: with two --hash the agent picks the first it tests (sha1), whatever the order.
    [`SETHASH --hash=sha256 --hash=sha1 ${SHA256}\n`, 'arguments'],
    [`SETHASH --pss --hash=sha256 ${SHA256}\n`, 'arguments'],
    [`SETHASH --hash=sha256 8 ${SHA256}\n`, 'arguments'],
    // 2.3+ forms; gpg-agent 2.2.40 refuses them itself.
    ['SETHASH --inquire\n', 'arguments'],
    ['SETHASH --pss --inquire\n', 'arguments'],
    [`SETHASH --hash=none ${SHA256}\n`, 'arguments'],
    [`SETHASH --hash= ${SHA256}\n`, 'arguments'],
    [`SETHASH 8 ${SHA256} trailing\n`, 'arguments'], // the agent ignores it; no client sends it
    [`SETHASH 8 ${SHA256}\0\n`, 'arguments'],
    ['SETHASH\n', 'arguments'],
  ])('%j → %s', (line, expected) => {
    expect(verdict(line)).toBe(expected);
  });
});

describe('argument checks: OPTION', () => {
  it.each([
    ['OPTION agent-awareness=2.1.0\n', 'forward'],
    ['OPTION --agent-awareness=2.1.0\n', 'forward'],
    ['OPTION agent-awareness 2.1.0\n', 'forward'],
    ['option\tagent-awareness = 2.1.0 \r\n', 'forward'],
    ['OPTION pinentry-mode=ask\n', 'forward'],
    ['OPTION pinentry-mode=default\n', 'forward'],
    ['OPTION pinentry-mode=cancel\n', 'forward'],
    ['OPTION --pinentry-mode ask\n', 'forward'],
    ['OPTION pinentry-mode = ask  \n', 'forward'], // blanks around name and value are dropped
    ['OPTION use-cache-for-signing=0\n', 'forward'],
    ['OPTION s2k-count=65536\n', 'forward'],
    ['OPTION pretend-request-origin=remote\n', 'forward'],
    // loopback: the far side would answer the user's passphrase prompts.
    ['OPTION pinentry-mode=loopback\n', 'arguments'],
    ['OPTION --pinentry-mode=loopback\n', 'arguments'],
    ['OPTION pinentry-mode loopback\n', 'arguments'],
    ['OPTION  pinentry-mode  =  loopback\n', 'arguments'],
    ['OPTION\tpinentry-mode\t=\tloopback\t\n', 'arguments'],
    ['OPTION pinentry-mode=LOOPBACK\n', 'arguments'], // the agent's strcmp refuses it; not "ask" either
    ['OPTION pinentry-mode=ask\0=loopback\n', 'arguments'],
    ['OPTION pinentry-mode=ask\r\n', 'forward'],
    ['OPTION pinentry-mode=ask\r\r\n', 'arguments'],
    ['OPTION pinentry-mode\n', 'arguments'], // empty value: not ask
    ['OPTION pinentry-mode=\n', 'arguments'], // "option argument expected"
    // The pinentry's environment (where it shows, and the passphrase typed into it): acknowledged with OK, never sent.
    ['OPTION putenv=DISPLAY=:1\n', 'environment'],
    ['OPTION display=:0\n', 'environment'],
    ['OPTION --display :0\n', 'environment'],
    ['OPTION ttyname=/dev/pts/3\n', 'environment'],
    ['OPTION ttytype=xterm\n', 'environment'],
    ['OPTION lc-ctype=C\n', 'environment'],
    ['OPTION lc-messages=C\n', 'environment'],
    ['OPTION xauthority=/tmp/x\n', 'environment'],
    ['OPTION pinentry-user-data=x\n', 'environment'],
    ['OPTION allow-pinentry-notify\n', 'forward'], // sets nothing: the agent tells the client when its pinentry starts
    ['OPTION cache-ttl-opt-preset=99999\n', 'arguments'],
    ['OPTION pretend-request-origin=local\n', 'arguments'],
    // Names are case-sensitive at the agent (strcmp): not the known option, so refused.
    ['OPTION AGENT-AWARENESS=2.1.0\n', 'arguments'],
    ['OPTION Display=:0\n', 'arguments'],
    ['OPTION -display=:0\n', 'arguments'], // one dash: a syntax error at the agent
    ['OPTION ---display=:0\n', 'arguments'],
    ['OPTION =ask\n', 'arguments'],
    ['OPTION\n', 'arguments'],
    ['OPTION frobnicate=1\n', 'arguments'],
    ['OPTION constructor\n', 'arguments'],
  ])('%j → %s', (line, expected) => {
    expect(verdict(line)).toBe(expected);
  });

  it('--allow-option widens by name (any value) or by name=value (that value only)', () => {
    const loopback = { allowOptions: ['pinentry-mode=loopback'] };
    expect(verdict('OPTION pinentry-mode=loopback\n', loopback)).toBe('forward');
    expect(verdict('OPTION --pinentry-mode  loopback\n', loopback)).toBe('forward');
    expect(verdict('OPTION pinentry-mode=ask\n', loopback)).toBe('forward'); // the defaults still hold
    expect(verdict('OPTION display=:0\n', loopback)).toBe('environment');
    const display = { allowOptions: ['DISPLAY, ttyname=/dev/pts/1', 'putenv=FOO=bar'] };
    expect(verdict('OPTION display=:7\n', display)).toBe('forward');
    expect(verdict('OPTION ttyname=/dev/pts/1\n', display)).toBe('forward');
    expect(verdict('OPTION ttyname=/dev/pts/2\n', display)).toBe('environment');
    expect(verdict('OPTION putenv=FOO=bar\n', display)).toBe('forward');
    expect(verdict('OPTION putenv=FOO=baz\n', display)).toBe('environment');
  });

  it('--allow-option refuses names gpg-agent does not know, and NAME= with no value', () => {
    expect(() => parseAllowedOptions(['displya'])).toThrow(ArgumentCheckError);
    expect(() => parseAllowedOptions(['displya'])).toThrow(/unknown option 'displya' \(gpg-agent knows: agent-awareness/);
    expect(() => parseAllowedOptions(['display='])).toThrow(/give a value/);
    expect(() => parseAllowedOptions([' , '])).toThrow(/takes option names/);
    expect(() => parseAllowedOptions(['constructor'])).toThrow(/unknown option/);
    expect(parseAllowedOptions(['--Display=:0,lc-ctype'])).toEqual([
      { name: 'display', value: ':0' },
      { name: 'lc-ctype', value: undefined },
    ]);
  });

  it.each([
    ['name=value', { name: 'name', value: 'value' }],
    ['name value', { name: 'name', value: 'value' }],
    ['  name  =  value  ', { name: 'name', value: 'value' }],
    ['--name=value', { name: 'name', value: 'value' }],
    ['name', { name: 'name', value: '' }],
    ['name=a=b', { name: 'name', value: 'a=b' }],
    // std_handler_option strips trailing blanks only from a value longer than one character.
    ['name=a  ', { name: 'name', value: 'a  ' }],
    ['--', undefined], // `--` alone keeps its dashes, and a name starting with a dash is an error
    ['-x', undefined],
    ['=x', undefined],
    ['name=', undefined],
    ['', undefined],
  ])('reads OPTION %j as libassuan does', (argument, expected) => {
    expect(readOption(argument)).toEqual(expected);
  });
});

describe('argument checks: lines they do not read', () => {
  it.each([
    ['PKSIGN\n'],
    ['PKSIGN --hash=sha256\0x\n'],
    ['D \0\r binary\n'], // inquiry data: never read
    ['END\n'],
    ['GETINFO version\n'],
    ['SCD PKSIGN OPENPGP.3\n'], // without the preset SCD is not read
    ['KEYTOCARD\0\n'.replace('\0', ` ${GRIP}`)],
  ])('%j passes', (line) => {
    expect(verdict(line)).toBe('forward');
  });
});

describe('--preset yubikey', () => {
  const yubikey = { preset: 'yubikey' } as const;
  it.each([
    ['SCD SERIALNO\n', 'forward'],
    ['SCD SERIALNO openpgp\n', 'forward'],
    ['scd  serialno --demand=D2760001240102000005000012340000\n', 'forward'],
    ['SCD GETATTR KEY-FPR\n', 'forward'],
    ['SCD GETINFO version\n', 'forward'],
    ['SCD LEARN --force\n', 'forward'], // scdaemon's LEARN --force only skips the KNOWNCARDP inquiry
    ['SCD LEARN --keypairinfo\n', 'forward'],
    ['SCD READKEY OPENPGP.3\n', 'forward'],
    ['SCD READCERT OPENPGP.3\n', 'forward'],
    ['SCD SETDATA 0011\n', 'forward'],
    ['SCD PKSIGN OPENPGP.1\n', 'forward'],
    ['scd\tpksign\tOPENPGP.1\n', 'forward'],
    ['SCD PkAuTh OPENPGP.3\n', 'forward'],
    ['SCD PKDECRYPT OPENPGP.2\n', 'forward'],
    ['SCD RESTART\n', 'forward'],
    // Changes to the card, its PINs, or scdaemon for everyone.
    ['SCD PASSWD OPENPGP.1\n', 'arguments'],
    ['scd passwd --reset OPENPGP.3\n', 'arguments'],
    ['SCD GENKEY --force 1\n', 'arguments'],
    ['SCD WRITEKEY OPENPGP.1\n', 'arguments'],
    ['SCD WRITECERT OPENPGP.3\n', 'arguments'],
    ['SCD SETATTR DISP-NAME x\n', 'arguments'],
    ['SCD CHECKPIN D2760001240102000005000012340000[CHV3]\n', 'arguments'],
    ['SCD APDU 00A4040006D27600012401\n', 'arguments'],
    ['SCD RESET\n', 'arguments'],
    ['SCD LOCK --wait\n', 'arguments'],
    ['SCD KILLSCD\n', 'arguments'],
    ['SCD DISCONNECT\n', 'arguments'],
    ['SCD OPTION event-signal=12\n', 'arguments'],
    ['SCD BYE\n', 'arguments'],
    ['SCD D 00\n', 'arguments'],
    ['SCD\n', 'arguments'],
    ['SCD PKSIGNX\n', 'arguments'],
    ['SCD PKSIGN\0PASSWD\n', 'arguments'],
    ['SCD PKSIGN\rX\n', 'arguments'],
    // Agent-level commands that write keys to the card or make keys.
    [`KEYTOCARD ${GRIP} D2760001240102000005000012340000 OPENPGP.1 20200101T000000\n`, 'arguments'],
    ['genkey\n', 'arguments'],
    // The rest of the checks still hold.
    ['OPTION pinentry-mode=loopback\n', 'arguments'],
    [`PKSIGN\n`, 'forward'],
  ])('%j → %s', (line, expected) => {
    expect(verdict(line, yubikey)).toBe(expected);
  });
});

describe('argument checks in the policy', () => {
  it('are off unless asked for: a policy without them passes any argument', () => {
    expect(createCommandPolicy({})).toBeUndefined();
    const deny = createCommandPolicy({ deny: ['KILLAGENT'] })!;
    expect(deny(Buffer.from('OPTION pinentry-mode=loopback\n'), 'OPTION')).toBeUndefined();
  });

  it('come after the verb rules: a line refused by --deny or --restricted names that rule', () => {
    const policy = createCommandPolicy({ deny: ['SETHASH'], restricted: true, arguments: {} })!;
    expect(policy(Buffer.from('SETHASH 8 00\n'), 'SETHASH')).toBe('deny');
    expect(policy(Buffer.from('OPTION pinentry-mode=loopback\n'), 'OPTION')).toBe('restricted');
    expect(policy(Buffer.from('OPTION agent-awareness=2.1.0\n'), 'OPTION')).toBeUndefined();
    expect(policy(Buffer.from(`SIGKEY ${GRIP}0\n`), 'SIGKEY')).toBe('arguments');
  });

  it('createArgumentCheck answers per line, and refuses a bad --allow-option when built', () => {
    const check = createArgumentCheck();
    expect(check(Buffer.from(`SIGKEY ${GRIP}\n`), 'SIGKEY')).toBe(true);
    expect(check(Buffer.from('SIGKEY x\n'), 'SIGKEY')).toBe(false);
    expect(() => createArgumentCheck({ allowOptions: ['nope'] })).toThrow(ArgumentCheckError);
  });
});

describe("gnupg's option helpers (common/server-help.c)", () => {
  it('skip_options skips --words and the blanks after them; a lone -- is skipped like any, ending nothing', () => {
    expect(skipOptions('--a --b  x y')).toBe(9);
    // Its comment says "--" ends the options; its loop does not: --x after it is skipped too.
    expect(skipOptions('  -- --x')).toBe(8);
    expect(skipOptions('-x')).toBe(0);
    expect(skipOptions('')).toBe(0);
  });

  it('has_option counts only the first occurrence, and only among the options', () => {
    expect(hasOption('--data --list', '--list')).toBe(true);
    expect(hasOption('--listx --list', '--list')).toBe(false); // strstr finds --listx first
    expect(hasOption('x --list', '--list')).toBe(false);
    expect(hasOption('--list=5', '--list')).toBe(false);
  });
});

describe('--help', () => {
  it('lists every option the parser takes', () => {
    for (const name of Object.keys(OPTIONS)) expect(USAGE).toMatch(new RegExp(`^ +(?:-[a-zA-Z], )?--${name}\\b`, 'm'));
  });
});
