/** takeActivatedSockets against sd_listen_fds_with_names(unset_environment=1): every branch, and the variables gone after each. */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { SD_LISTEN_FDS_START, SocketActivationError, takeActivatedSockets, type ActivatedSocket } from '../src/socketActivation.js';

const PID = 4242;
const LISTEN_VARIABLES = ['LISTEN_PID', 'LISTEN_PIDFDID', 'LISTEN_FDS', 'LISTEN_FDNAMES'];

/** An environment with the given LISTEN_* variables and one that is none of our business. */
function envWith(listen: Record<string, string>): NodeJS.ProcessEnv {
  return { GNUPGHOME: '/somewhere', LISTEN_SOMETHING_ELSE: 'kept', ...listen };
}

/** Takes the sockets, then checks that every LISTEN_* variable is gone and nothing else is. */
function take(env: NodeJS.ProcessEnv): ActivatedSocket[] | undefined {
  try {
    return takeActivatedSockets(env, PID);
  } finally {
    for (const name of LISTEN_VARIABLES) expect(env, name).not.toHaveProperty(name);
    expect(env).toMatchObject({ GNUPGHOME: '/somewhere', LISTEN_SOMETHING_ELSE: 'kept' });
  }
}

function takeError(env: NodeJS.ProcessEnv): SocketActivationError {
  let caught: unknown;
  try {
    take(env);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(SocketActivationError);
  expect(caught).toBeInstanceOf(Error);
  expect((caught as Error).name).toBe('SocketActivationError');
  return caught as SocketActivationError;
}

describe('takeActivatedSockets', () => {
  it('passes fds from 3 (SD_LISTEN_FDS_START), named "unknown" without LISTEN_FDNAMES', () => {
    expect(SD_LISTEN_FDS_START).toBe(3);
    expect(take(envWith({ LISTEN_PID: String(PID), LISTEN_FDS: '1' }))).toEqual([{ fd: 3, name: 'unknown' }]);
    expect(take(envWith({ LISTEN_PID: String(PID), LISTEN_FDS: '3' }))).toEqual([
      { fd: 3, name: 'unknown' },
      { fd: 4, name: 'unknown' },
      { fd: 5, name: 'unknown' },
    ]);
  });

  it('names each fd from LISTEN_FDNAMES, in order', () => {
    expect(take(envWith({ LISTEN_PID: String(PID), LISTEN_FDS: '2', LISTEN_FDNAMES: 'gpg-agent:dirmngr' }))).toEqual([
      { fd: 3, name: 'gpg-agent' },
      { fd: 4, name: 'dirmngr' },
    ]);
  });

  it.each([
    ['no LISTEN_PID', { LISTEN_FDS: '1', LISTEN_FDNAMES: 'gpg-agent' }],
    ['no variables at all', {}],
    ["another process's LISTEN_PID (inherited from an activated parent)", { LISTEN_PID: String(PID + 1), LISTEN_FDS: '1', LISTEN_FDNAMES: 'gpg-agent' }],
    ['our LISTEN_PID but no LISTEN_FDS', { LISTEN_PID: String(PID), LISTEN_FDNAMES: 'gpg-agent' }],
    // Not for us, so never read: as in systemd, where the pid is compared first.
    ["another process's LISTEN_PID with LISTEN_FDS and LISTEN_PIDFDID malformed", { LISTEN_PID: '1', LISTEN_FDS: 'x', LISTEN_PIDFDID: 'x' }],
    // The count is never compared with LISTEN_FDNAMES when there are no fds.
    ['our LISTEN_PID, no LISTEN_FDS, two names', { LISTEN_PID: String(PID), LISTEN_FDNAMES: 'a:b' }],
  ])('is not activated with %s, and removes the variables all the same', (_, listen) => {
    expect(take(envWith(listen))).toBeUndefined();
  });

  it.each(['', 'abc', '0', '-1', '+4242', ' 4242', '4242 ', '04242', '0x1092', '4242.0', '1e3', '2147483648', '99999999999999999999'])(
    'LISTEN_PID %j is an error naming it (systemd: parse_pid fails)',
    (value) => {
      expect(takeError(envWith({ LISTEN_PID: value, LISTEN_FDS: '1' })).message).toBe(`LISTEN_PID must be a decimal number from 1 to 2147483647, not '${value}'`);
    },
  );

  it('takes the largest pid a pid_t holds', () => {
    expect(takeActivatedSockets({ LISTEN_PID: '2147483647', LISTEN_FDS: '1' }, 2147483647)).toEqual([{ fd: 3, name: 'unknown' }]);
  });

  it.each(['', '0', '-1', '+1', ' 1', '01', '0x1', '1.5', 'one', '2147483645'])('LISTEN_FDS %j is an error naming it (systemd: -EINVAL)', (value) => {
    expect(takeError(envWith({ LISTEN_PID: String(PID), LISTEN_FDS: value })).message).toBe(`LISTEN_FDS must be a decimal number from 1 to 2147483644, not '${value}'`);
  });

  it('reads LISTEN_FDS up to INT_MAX - 3, as systemd does (then the names disagree)', () => {
    expect(takeError(envWith({ LISTEN_PID: String(PID), LISTEN_FDS: '2147483644', LISTEN_FDNAMES: 'a' })).message).toBe(
      "LISTEN_FDNAMES names 1 sockets ('a') but LISTEN_FDS passes 2147483644",
    );
  });

  it.each([
    ['fewer names than fds', '2', 'gpg-agent', "LISTEN_FDNAMES names 1 sockets ('gpg-agent') but LISTEN_FDS passes 2"],
    ['more names than fds', '1', 'gpg-agent:dirmngr', "LISTEN_FDNAMES names 2 sockets ('gpg-agent:dirmngr') but LISTEN_FDS passes 1"],
  ])('%s is an error (systemd: -EINVAL)', (_, fds, names, message) => {
    expect(takeError(envWith({ LISTEN_PID: String(PID), LISTEN_FDS: fds, LISTEN_FDNAMES: names })).message).toBe(message);
  });

  it.each([
    ['an empty value is one empty name', '1', '', ['']],
    ['empty names between colons are kept', '3', 'a::b', ['a', '', 'b']],
    ['a trailing colon ends with an empty name', '2', 'a:', ['a', '']],
    ['a lone colon is two empty names', '2', ':', ['', '']],
    ['a backslash takes the next character as it is, colon included', '2', 'a\\:b:c\\\\d', ['a:b', 'c\\d']],
  ])('splits LISTEN_FDNAMES as systemd does: %s', (_, fds, names, expected) => {
    expect(take(envWith({ LISTEN_PID: String(PID), LISTEN_FDS: fds, LISTEN_FDNAMES: names }))?.map((s) => s.name)).toEqual(expected);
  });

  it.each([
    ['for us', { LISTEN_PID: String(PID), LISTEN_FDS: '1' }],
    // systemd splits the names before it looks at LISTEN_PID.
    ["for another process's pid", { LISTEN_PID: '1', LISTEN_FDS: '1' }],
    ['with no LISTEN_PID', {}],
  ])('LISTEN_FDNAMES ending in a lone backslash is an error %s', (_, listen) => {
    expect(takeError(envWith({ ...listen, LISTEN_FDNAMES: 'gpg-agent\\' })).message).toBe("LISTEN_FDNAMES ends in an unescaped backslash: 'gpg-agent\\'");
  });

  it('checks LISTEN_PIDFDID for form only (Node cannot open a pidfd to compare it), and removes it', () => {
    for (const value of ['0', '123456', '18446744073709551615']) {
      expect(take(envWith({ LISTEN_PID: String(PID), LISTEN_PIDFDID: value, LISTEN_FDS: '1' }))).toEqual([{ fd: 3, name: 'unknown' }]);
    }
  });

  it.each(['', 'x', '-1', '01', '18446744073709551616'])('LISTEN_PIDFDID %j is an error naming it (systemd: safe_atou64 fails)', (value) => {
    expect(takeError(envWith({ LISTEN_PID: String(PID), LISTEN_PIDFDID: value, LISTEN_FDS: '1' })).message).toBe(
      `LISTEN_PIDFDID must be a decimal number from 0 to 18446744073709551615, not '${value}'`,
    );
  });
});

describe('takeActivatedSockets() with no arguments', () => {
  const saved = Object.fromEntries(LISTEN_VARIABLES.map((name) => [name, process.env[name]]));
  afterEach(() => {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it("reads this process's environment and pid, and the processes it starts afterwards see no LISTEN_* variable", () => {
    Object.assign(process.env, { LISTEN_PID: String(process.pid), LISTEN_FDS: '1', LISTEN_FDNAMES: 'gpg-agent', LISTEN_PIDFDID: '7' });
    // The check below would pass vacuously if children did not inherit process.env: show that they do.
    expect(execFileSync('env', { encoding: 'utf8' })).toMatch(/^LISTEN_FDS=1$/m);
    expect(takeActivatedSockets()).toEqual([{ fd: 3, name: 'gpg-agent' }]);
    expect(execFileSync('env', { encoding: 'utf8' })).not.toMatch(/^LISTEN_/m);
  });
});
