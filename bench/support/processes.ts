/** The processes a benchmark run measures: a throw-away gpg-agent, our fast Assuan server, the proxy and socat. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');

/** A private directory (0700) for sockets and homes, with a short path (Unix socket paths are short). */
export { makeTempDir as privateDir } from '../../test/support/gnupg.js';

export interface Relay {
  name: string;
  socket: string;
  pid: number;
  stop(): void;
}

/** Resolves when `child` prints `text` on the given stream; rejects if it exits first. */
function waitForOutput(child: ChildProcess, stream: 'stdout' | 'stderr', text: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let seen = '';
    child[stream]!.on('data', (c: Buffer) => {
      seen += c.toString();
      if (seen.includes(text)) resolve();
    });
    child.once('exit', (code, signal) => reject(new Error(`${child.spawnfile} exited (${code ?? signal}) before '${text}': ${seen}`)));
  });
}

export interface GpgAgentHome {
  home: string;
  socket: string;
  env: NodeJS.ProcessEnv;
  cleanup(): void;
}

export function startGpgAgent(dir: string): GpgAgentHome {
  const home = path.join(dir, 'gnupg');
  fs.mkdirSync(home, { mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: home };
  execFileSync('gpgconf', ['--launch', 'gpg-agent'], { env });
  const socket = execFileSync('gpgconf', ['--list-dirs', 'agent-socket'], { env }).toString().trim();
  return {
    home,
    socket,
    env,
    cleanup: () => {
      try {
        execFileSync('gpgconf', ['--kill', 'gpg-agent'], { env });
      } catch {
        // already gone
      }
    },
  };
}

export async function startFastAgent(dir: string): Promise<Relay> {
  const socket = path.join(dir, 'S.fast-agent');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'bench/support/fastAgent.ts'), socket], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: root,
  });
  await waitForOutput(child, 'stdout', 'ready');
  return { name: 'fast-agent', socket, pid: child.pid!, stop: () => child.kill('SIGTERM') };
}

/** The proxy as users run it: the built CLI in its own process, logging at warn. */
/** BENCH_PROXY_ARGS: options given to every proxy of the run, to compare two settings (e.g. `--no-spare-connection`). */
const PROXY_ARGS = (process.env.BENCH_PROXY_ARGS ?? '').split(' ').filter(Boolean);

export async function startProxy(
  dir: string,
  name: string,
  upstream: string,
  extraArgs: string[] = [],
  nodeArgs: string[] = [],
  instance = '',
): Promise<Relay & { exited: Promise<void> }> {
  const socket = path.join(dir, `S.${name}${instance}-to-${path.basename(upstream)}`);
  const child = spawn(
    process.execPath,
    [...nodeArgs, path.join(root, 'dist/src/cli.js'), '--listen', socket, '--upstream', upstream, '--log-level', 'warn', '--log-format', 'json', ...extraArgs, ...PROXY_ARGS],
    { stdio: ['ignore', 'inherit', 'pipe'], cwd: dir },
  );
  await waitForOutput(child, 'stderr', 'listening on');
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { name, socket, pid: child.pid!, stop: () => child.kill('SIGTERM'), exited };
}

/** socat on PATH, installed from Debian's packages when missing (and we may); undefined if unavailable. */
export function socatBinary(): string | undefined {
  const find = () => {
    try {
      return execFileSync('sh', ['-c', 'command -v socat']).toString().trim() || undefined;
    } catch {
      return undefined;
    }
  };
  const found = find();
  if (found || process.getuid?.() !== 0) return found;
  process.stderr.write('bench: installing socat (the raw-relay baseline)\n');
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('sh', ['-c', 'apt-get install -y -qq socat || (apt-get update -qq && apt-get install -y -qq socat)'], { stdio: 'ignore', env });
  } catch {
    return undefined;
  }
  return find();
}

/** socat as the raw relay: a forked process per connection, bytes copied both ways. */
export async function startSocat(binary: string, dir: string, name: string, upstream: string, instance = ''): Promise<Relay & { exited: Promise<void> }> {
  const socket = path.join(dir, `S.${name}${instance}-to-${path.basename(upstream)}`);
  const child = spawn(binary, [`UNIX-LISTEN:${socket},fork,backlog=4096`, `UNIX-CONNECT:${upstream}`], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null) throw new Error('socat exited');
    await new Promise((r) => setTimeout(r, 5));
  }
  return { name, socket, pid: child.pid!, stop: () => child.kill('SIGTERM'), exited };
}

/** Resident memory of a process and its children (socat forks one per connection), in bytes. */
export function residentBytes(pid: number): number {
  const rss = (p: number) => {
    try {
      const status = fs.readFileSync(`/proc/${p}/status`, 'latin1');
      return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
    } catch {
      return 0;
    }
  };
  let total = rss(pid);
  try {
    const children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim();
    for (const child of children ? children.split(' ') : []) total += residentBytes(Number(child));
  } catch {
    // no children file (not Linux): the process alone
  }
  return total;
}

/**
 * Bridge mode as users run it: `assuan-proxy forward` (the built CLI), the client end (the single-file build) on
 * the other side of a child process's stdio.
 */
export async function startForwardRelay(dir: string, name: string, upstream: string): Promise<Relay & { exited: Promise<void>; farPid(): number | undefined }> {
  const socket = path.join(dir, `far-${name}`, 'S.gpg-agent');
  const child = spawn(
    process.execPath,
    [
      path.join(root, 'dist/src/cli.js'), 'forward', '--upstream', upstream, '--remote-socket', socket, '--log-level', 'warn', '--log-format', 'json',
      // The transport: the client end on the other side of a child process's stdio, as the socat pair's second
      // socat is (exec: no process in between, unlike ssh).
      '--client-end-code', path.join(root, 'dist/assuan-proxy.mjs'), '--', 'sh', '-c', 'exec "$@"', 'sh',
    ],
    { stdio: ['ignore', 'inherit', 'pipe'], cwd: dir },
  );
  await waitForOutput(child, 'stderr', 'forwarding gpg-agent');
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null) throw new Error('assuan-proxy forward exited');
    await new Promise((r) => setTimeout(r, 10));
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const childrenOf = (pid: number) => {
    try {
      return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim().split(' ').filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  // forward → the client end (sh execs it).
  const farPid = () => childrenOf(child.pid!)[0];
  return { name, socket, pid: child.pid!, stop: () => child.kill('SIGTERM'), exited, farPid };
}

/** The raw baseline for a bridge: socat, and a second socat per connection behind a pipe (its stdio). */
export async function startSocatPair(binary: string, dir: string, name: string, upstream: string): Promise<Relay & { exited: Promise<void> }> {
  const socket = path.join(dir, `S.${name}-to-${path.basename(upstream)}`);
  const child = spawn(binary, [`UNIX-LISTEN:${socket},fork,backlog=4096`, `EXEC:${binary} STDIO UNIX-CONNECT\\:${upstream}`], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  while (!fs.existsSync(socket)) {
    if (child.exitCode !== null) throw new Error('socat exited');
    await new Promise((r) => setTimeout(r, 5));
  }
  return { name, socket, pid: child.pid!, stop: () => child.kill('SIGTERM'), exited };
}

/** Resident memory of one process, without its children, in bytes. */
export function ownResidentBytes(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    return Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}
