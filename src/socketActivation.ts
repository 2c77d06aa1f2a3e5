/**
 * systemd socket activation: listening sockets that systemd (or systemd-socket-activate) bound for us, passed as
 * file descriptors from 3 up and described by LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES. Read as libsystemd's
 * `sd_listen_fds_with_names(1, &names)` reads them (src/libsystemd/sd-daemon/sd-daemon.c), with one difference:
 * numbers must be plain decimal, where systemd's parser also takes " 12", "+12", "0x0c" and "014" (octal). systemd
 * only ever writes plain decimal, so anything else was not written by it.
 *
 * The rest of what sd_listen_fds does is done elsewhere: Node marks every descriptor it inherits close-on-exec when
 * it starts (libuv's uv_disable_stdio_inheritance), as sd_listen_fds does with fd_cloexec(), so gpgconf and
 * gpg-agent never hold our sockets; and a descriptor that is not open fails when it is listened on.
 */

/** The first passed descriptor (sd-daemon.h); 0, 1 and 2 are stdio. */
export const SD_LISTEN_FDS_START = 3;

export interface ActivatedSocket {
  fd: number;
  /** Its FileDescriptorName= (`--fdname` of systemd-socket-activate); "unknown" when none were passed. */
  name: string;
}

/** LISTEN_* variables that are meant for us but cannot be read; the message names the variable and its value. */
export class SocketActivationError extends Error {
  override readonly name = 'SocketActivationError';
}

/** What unsetenv_listen() removes: LISTEN_PIDFDID is set by systemd 258 and later. */
const LISTEN_VARIABLES = ['LISTEN_PID', 'LISTEN_PIDFDID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

const INT_MAX = 2 ** 31 - 1;
const UINT64_MAX = 2n ** 64n - 1n;

/**
 * The sockets passed to process `pid`, or undefined when none were (no LISTEN_PID or LISTEN_FDS, or LISTEN_PID is
 * another process's: variables inherited from a parent that was activated itself). Removes the LISTEN_* variables
 * from `env` whatever the outcome, errors included, as sd_listen_fds(unset_environment=1) does: processes we start
 * must not take them as theirs. Throws SocketActivationError for values that cannot be read.
 */
export function takeActivatedSockets(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): ActivatedSocket[] | undefined {
  try {
    return readListenVariables(env, pid);
  } finally {
    for (const name of LISTEN_VARIABLES) delete env[name];
  }
}

/** sd_listen_fds_with_names, check for check and in the same order. */
function readListenVariables(env: NodeJS.ProcessEnv, pid: number): ActivatedSocket[] | undefined {
  // Names come first, as in systemd: names it cannot split are an error even when the rest is not for us.
  const names = env.LISTEN_FDNAMES === undefined ? undefined : splitNames(env.LISTEN_FDNAMES);
  if (env.LISTEN_PID === undefined) return undefined;
  if (decimal('LISTEN_PID', env.LISTEN_PID, 1, INT_MAX) !== BigInt(pid)) return undefined;
  // systemd compares it with the inode of a pidfd of our own, which Node cannot open: as systemd does where the
  // kernel has no pidfs, the value is checked for form only.
  if (env.LISTEN_PIDFDID !== undefined) decimal('LISTEN_PIDFDID', env.LISTEN_PIDFDID, 0, UINT64_MAX);
  if (env.LISTEN_FDS === undefined) return undefined;
  const count = Number(decimal('LISTEN_FDS', env.LISTEN_FDS, 1, INT_MAX - SD_LISTEN_FDS_START));
  if (names !== undefined && names.length !== count) {
    throw new SocketActivationError(`LISTEN_FDNAMES names ${names.length} sockets ('${env.LISTEN_FDNAMES}') but LISTEN_FDS passes ${count}`);
  }
  return Array.from({ length: count }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i, name: names?.[i] ?? 'unknown' }));
}

/** A plain decimal number from `min` to `max`, else an error naming the variable (0 as "0" only). */
function decimal(variable: string, text: string, min: number, max: number | bigint): bigint {
  const value = /^(0|[1-9][0-9]*)$/.test(text) ? BigInt(text) : undefined;
  if (value === undefined || value < BigInt(min) || value > BigInt(max)) {
    throw new SocketActivationError(`${variable} must be a decimal number from ${min} to ${max}, not '${text}'`);
  }
  return value;
}

/**
 * Colon-separated, as systemd's strv_split_full(…, ":", EXTRACT_DONT_COALESCE_SEPARATORS) splits it: empty names
 * are kept (so "" is one empty name), and a backslash takes the next character as it is, separator included.
 */
function splitNames(text: string): string[] {
  const names: string[] = [];
  let name = '';
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (char === '\\') {
      if (++i === text.length) throw new SocketActivationError(`LISTEN_FDNAMES ends in an unescaped backslash: '${text}'`);
      name += text[i];
    } else if (char === ':') {
      names.push(name);
      name = '';
    } else {
      name += char;
    }
  }
  names.push(name);
  return names;
}
