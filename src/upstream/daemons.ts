/**
 * Finding the daemon to relay to. `--upstream` names one of GnuPG's daemons (agent, agent-extra, dirmngr, keyboxd,
 * scdaemon) or gives a path. A name is resolved with gpgconf, exactly as gpg does, so the proxy follows GNUPGHOME
 * and the per-user socket directory; a daemon found by name is started with `gpgconf --launch` when it is not
 * running, at start (where asked to) and again whenever a session finds it gone.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { ProxyStartError } from '../listenSocket.js';
import { listeningLoopbackPorts, listeningUnixPaths, realOrAsIs } from '../procNet.js';
import { dialUpstream, isSshAgentSocketPath } from './dial.js';
import { describeDefect, parseSocketFile, SocketFileError, SOCKET_FILE_READ_LIMIT } from './socketFile.js';

const run = promisify(execFile);

/** The daemon a session is relayed to, as the session needs it. */
export interface UpstreamTarget {
  /**
   * What is dialed for each session: a socket, or a socket file (redirect, Windows or Cygwin form). For a daemon
   * found by name, looked up again after each launch (gpgconf's answer moves when /run/user/UID appears).
   */
  path: string;
  /** What it is called in messages: gpg-agent, dirmngr, keyboxd, scdaemon. */
  readonly daemon: string;
  /** Where the `${VAR}`s of a redirect file are looked up. */
  readonly env: NodeJS.ProcessEnv;
  /** Starts the daemon (one launch at a time, shared); absent for a path given explicitly, or when not asked to. */
  launch?: (() => Promise<void>) | undefined;
}

/** The daemons `--upstream` can name. */
export const UPSTREAM_NAMES = ['agent', 'agent-extra', 'dirmngr', 'keyboxd', 'scdaemon'] as const;
export type UpstreamName = (typeof UPSTREAM_NAMES)[number];

interface Daemon {
  /** What `gpgconf --list-dirs` calls its socket; undefined: `<socketdir>/<socketName>`. */
  readonly gpgconfDir: string | undefined;
  /** Its name for gpgconf --launch and in messages. */
  readonly daemon: string;
  /** Whether `gpgconf --launch` can start it. */
  readonly launchable: boolean;
  /** The socket's file name where its clients look for it: what the proxy listens as by default. */
  readonly socketName: string;
}

const DAEMONS: Readonly<Record<UpstreamName, Daemon>> = {
  agent: { gpgconfDir: 'agent-socket', daemon: 'gpg-agent', launchable: true, socketName: 'S.gpg-agent' },
  // A forwarded extra socket is the far side's main socket: its clients look for S.gpg-agent.
  'agent-extra': { gpgconfDir: 'agent-extra-socket', daemon: 'gpg-agent', launchable: true, socketName: 'S.gpg-agent' },
  dirmngr: { gpgconfDir: 'dirmngr-socket', daemon: 'dirmngr', launchable: true, socketName: 'S.dirmngr' },
  // GnuPG >= 2.3 only; gpgconf 2.2 names no keyboxd-socket.
  keyboxd: { gpgconfDir: 'keyboxd-socket', daemon: 'keyboxd', launchable: true, socketName: 'S.keyboxd' },
  // gpgconf names no scdaemon socket and cannot launch it ("Component not suitable for launching"): gpg-agent runs
  // it over a pipe. A socket exists only where scdaemon was started as a daemon of its own in the socket dir.
  scdaemon: { gpgconfDir: undefined, daemon: 'scdaemon', launchable: false, socketName: 'S.scdaemon' },
};

export function isUpstreamName(spec: string): spec is UpstreamName {
  return (UPSTREAM_NAMES as readonly string[]).includes(spec);
}

/**
 * Whether `spec` is a path rather than a name: it has a slash. A bare word that is no daemon's name is an error,
 * not a file in the working directory (`./S.gpg-agent` says that).
 */
export function isUpstreamPath(spec: string): boolean {
  return spec.includes('/');
}

/** The file name the proxy listens as by default in front of `spec` (clients look for it in their socket dir). */
export function listenNameFor(spec: string | undefined): string {
  return spec !== undefined && isUpstreamName(spec) ? DAEMONS[spec].socketName : 'S.gpg-agent';
}

/** What `--upstream` takes, for messages. */
export const UPSTREAM_FORMS = `${UPSTREAM_NAMES.join(', ')}, or a path (with a '/', e.g. ./S.gpg-agent)`;

/** Checks the form of an `--upstream` value, before anything is started. */
export function checkUpstreamSpec(spec: string): string | undefined {
  if (isUpstreamPath(spec)) {
    if (isSshAgentSocketPath(spec)) {
      return `${spec} is gpg-agent's ssh socket, which speaks the ssh-agent protocol, not Assuan: give its agent socket (S.gpg-agent) or extra socket`;
    }
    return undefined;
  }
  return isUpstreamName(spec) ? undefined : `takes ${UPSTREAM_FORMS}; '${spec}' is none of these`;
}

/**
 * The daemon behind `spec` (default: agent). By name: its socket from gpgconf; with `options.launch`, started now
 * and again whenever a session finds it gone. By path: as given (a socket or a socket file), never started by us.
 */
export async function resolveUpstream(spec: string | undefined, env: NodeJS.ProcessEnv, options: { launch: boolean }): Promise<UpstreamTarget> {
  const name = spec ?? 'agent';
  if (isUpstreamPath(name) || !isUpstreamName(name)) return { path: name, daemon: daemonOfPath(name), env };
  const daemon = DAEMONS[name];
  const target: UpstreamTarget = { path: await daemonSocketPath(name, env), daemon: daemon.daemon, env };
  if (!options.launch || !daemon.launchable) return target;
  const launchOnce = sharedLaunch(daemon.daemon, env);
  target.launch = async () => {
    await launchOnce();
    target.path = await daemonSocketPath(name, env);
  };
  await target.launch();
  return target;
}

/** A daemon's socket path for the GNUPGHOME of `env`, as gpgconf names it. */
export async function daemonSocketPath(name: UpstreamName, env: NodeJS.ProcessEnv): Promise<string> {
  const daemon = DAEMONS[name];
  if (daemon.gpgconfDir) {
    const found = await gpgconfDir(daemon.gpgconfDir, env);
    if (found) return found;
    const version = await gpgconfVersion(env);
    const since = name === 'keyboxd' ? ' (keyboxd came with GnuPG 2.3)' : '';
    throw new ProxyStartError(`this GnuPG (${version}) has no ${daemon.daemon}: 'gpgconf --list-dirs ${daemon.gpgconfDir}' names no socket${since}`);
  }
  const socketDir = await gpgconfDir('socketdir', env);
  if (!socketDir) throw new ProxyStartError(`'gpgconf --list-dirs socketdir' printed nothing; pass --upstream PATH`);
  return path.join(socketDir, daemon.socketName);
}

/** For messages about a path given explicitly: what its file name says it is. */
function daemonOfPath(socketPath: string): string {
  const base = path.basename(socketPath);
  for (const daemon of Object.values(DAEMONS)) if (base === daemon.socketName) return daemon.daemon;
  return 'gpg-agent';
}

/** One launch at a time: sessions that find the daemon gone together wait for the same `gpgconf --launch`. */
function sharedLaunch(daemon: string, env: NodeJS.ProcessEnv): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => {
    running ??= launchDaemon(daemon, env).finally(() => (running = undefined));
    return running;
  };
}

/**
 * Why nothing will answer at `target` (for a warning at start), or undefined when something listens there (or this
 * system cannot tell). Looked up without connecting: a connection is not free for every upstream (a scripted one
 * counts them; a qrexec-style forward starts a process, or asks the user, for each).
 */
export async function upstreamAbsence(target: UpstreamTarget): Promise<string | undefined> {
  let content: Buffer;
  try {
    const stat = await fs.promises.stat(target.path);
    if (stat.isSocket()) return (await listeningUnixPaths())?.has(realOrAsIs(target.path)) === false ? 'a socket nobody listens on' : undefined;
    if (!stat.isFile()) return 'not a socket or a socket file';
    content = await readStart(target.path);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'nothing there' : String((err as NodeJS.ErrnoException).code ?? err);
  }
  let parsed;
  try {
    parsed = parseSocketFile(target.path, content, target.env);
  } catch (err) {
    return err instanceof SocketFileError ? describeDefect(err.defect) : String(err);
  }
  if (parsed.form === 'redirect') {
    const listening = await listeningUnixPaths();
    return listening?.has(realOrAsIs(parsed.path)) === false ? `its redirect names ${parsed.path}, where nobody listens` : undefined;
  }
  const ports = await listeningLoopbackPorts();
  return ports?.has(parsed.port) === false ? `nothing listens on 127.0.0.1:${parsed.port}, the port it names` : undefined;
}

async function readStart(file: string): Promise<Buffer> {
  const handle = await fs.promises.open(file, 'r');
  try {
    const buffer = Buffer.alloc(SOCKET_FILE_READ_LIMIT);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Whether an upstream answers with an OK greeting, through any form of socket file (for warnings at start). */
export async function upstreamGreets(target: UpstreamTarget): Promise<boolean> {
  const outcome = await dialUpstream(target.path, target.env);
  if (outcome.kind !== 'connected') return false;
  const { socket, handshake } = outcome;
  if (handshake) {
    socket.write(handshake.opening());
    // The Cygwin form answers the nonce with an echo before any greeting: a server that takes the connection is there.
    if (handshake.needsReply) {
      socket.destroy();
      return true;
    }
  }
  return (await firstLine(socket))?.startsWith('OK') ?? false;
}

/** How long `gpgconf --launch` may take before we stop waiting for it. */
const LAUNCH_TIMEOUT_MS = 15_000;

/** Starts gpg-agent in the GNUPGHOME of `env` if it is not running (gpgconf does nothing if it is). */
export async function launchAgent(env: NodeJS.ProcessEnv): Promise<void> {
  await launchDaemon('gpg-agent', env);
}

/**
 * `gpgconf --launch DAEMON`, bounded: GnuPG 2.2.40's gpg-connect-agent, which gpgconf runs, was seen (strace) to
 * spin forever when the agent it started was slow to come up, writing its diagnostics into the agent's socket and
 * each ERR back as a command. Past the bound its whole process group is killed, and a daemon that answers at its
 * socket is all that counts.
 */
async function launchDaemon(daemon: string, env: NodeJS.ProcessEnv): Promise<void> {
  let failure: string | undefined;
  try {
    await runBounded('gpgconf', ['--launch', daemon], env, LAUNCH_TIMEOUT_MS);
    return;
  } catch (err) {
    failure = commandFailure(err);
  }
  const socketPath = await gpgconfDir(`${daemon === 'gpg-agent' ? 'agent' : daemon}-socket`, env).catch(() => '');
  if (socketPath && (await greets(socketPath))) return;
  throw new ProxyStartError(`could not start ${daemon} with 'gpgconf --launch ${daemon}': ${failure}${await missingHomeHint(env)}`);
}

/** With no GNUPGHOME directory gpgconf only says "error running gpg-connect-agent": say what to create. */
async function missingHomeHint(env: NodeJS.ProcessEnv): Promise<string> {
  const home = await gpgconfDir('homedir', env).catch(() => env.GNUPGHOME);
  if (!home) return '';
  try {
    await fs.promises.stat(home);
    return '';
  } catch {
    return `; its home directory ${home} does not exist: create it with 'mkdir -m 700 ${home}'`;
  }
}

/** Runs a command in a process group of its own; past `timeoutMs` the whole group is killed and this rejects. */
function runBounded(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2_000)));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone already
      }
      reject(Object.assign(new Error(`${command} did not finish within ${timeoutMs / 1000} s`), { stderr: '' }));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(Object.assign(new Error(`${command} exited with code ${code}`), { stderr }));
    });
  });
}

/** Whether an Assuan server answers at `socketPath` with an OK greeting. */
export async function greets(socketPath: string): Promise<boolean> {
  return (await greetingAt(socketPath))?.startsWith('OK') ?? false;
}

/** The first line a server at `socketPath` sends (within 2 s; '' if none), or undefined if nobody listens there. */
export function greetingAt(socketPath: string): Promise<string | undefined> {
  return firstLine(net.connect({ path: socketPath }));
}

/** The first line a server sends that is not a `#` comment (dirmngr sends `# Home: …` before its OK). */
function firstLine(probe: net.Socket): Promise<string | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const done = (value: string | undefined) => {
      probe.destroy();
      resolve(value);
    };
    probe.setTimeout(2_000, () => done(text));
    probe.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      while (text.startsWith('#') && text.includes('\n')) text = text.slice(text.indexOf('\n') + 1);
      if (text.includes('\n')) done(text);
    });
    probe.on('end', () => done(text));
    probe.once('error', () => done(undefined));
  });
}

/** One of gpg-agent's sockets, as gpgconf names it for the GNUPGHOME of `env`. */
export async function agentSocketPath(env: NodeJS.ProcessEnv = process.env, which: 'agent-socket' | 'agent-extra-socket' = 'agent-socket'): Promise<string> {
  const found = await gpgconfDir(which, env);
  if (!found) throw new ProxyStartError(`'gpgconf --list-dirs ${which}' printed nothing; pass --upstream PATH`);
  return found;
}

/** `gpgconf --list-dirs NAME`: the path, or '' when this GnuPG has no such directory. */
export async function gpgconfDir(name: string, env: NodeJS.ProcessEnv): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await run('gpgconf', ['--list-dirs', name], { env, timeout: 10_000 }));
  } catch (err) {
    throw new ProxyStartError(`cannot find ${name} with 'gpgconf --list-dirs ${name}': ${commandFailure(err)}; install GnuPG or pass --upstream PATH`);
  }
  return unescapeGpgconf(stdout.split('\n')[0]?.trim() ?? '');
}

/**
 * Which of gpg-agent's restricted sockets `socketPath` is, as gpgconf names them for `env` (`agent-extra-socket`,
 * `agent-browser-socket`), or undefined: connections there run restricted, and SCD, for one, is forbidden.
 */
export async function restrictedAgentSocket(socketPath: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const name of ['agent-extra-socket', 'agent-browser-socket']) {
    const socket = await gpgconfDir(name, env).catch(() => '');
    // A link to the extra socket is the extra socket.
    if (socket !== '' && realOrAsIs(path.resolve(socket)) === realOrAsIs(path.resolve(socketPath))) return name;
  }
  return undefined;
}

async function gpgconfVersion(env: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await run('gpgconf', ['--version'], { env, timeout: 10_000 });
    return stdout.split('\n')[0]?.trim() || 'gpgconf';
  } catch {
    return 'gpgconf';
  }
}

/** gpgconf percent-escapes some characters of the paths it prints (e.g. `:` as %3a). */
function unescapeGpgconf(text: string): string {
  return text.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function commandFailure(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { stderr?: string };
  if (e.code === 'ENOENT') return 'gpgconf is not installed';
  return (e.stderr?.trim() || e.message).split('\n')[0] ?? String(err);
}
