/**
 * systemd socket activation, end to end: the CLI started exactly as systemd starts a service (a listening socket as
 * fd 3, LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID naming the process itself), a real gpg-agent behind it; then
 * through systemd-socket-activate; and the shipped units in contrib/systemd, checked so that they cannot rot.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/commandLine.js';
import { resolveConfig } from '../../src/config.js';
import { defaultListenPath } from '../../src/listenSocket.js';
import { RawClient } from '../support/assuanClient.js';
import { listening, stderrMatch, stopCli, type RunningCli } from '../support/cli.js';
import { createAgentHome, type AgentHome, tempDirs } from '../support/gnupg.js';

const CLI = path.resolve('src/cli.ts');
const UNITS = path.resolve('contrib/systemd');

let agent: AgentHome;
const runs: RunningCli[] = [];
const clients: RawClient[] = [];

beforeAll(async () => {
  agent = await createAgentHome();
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  for (const run of runs.splice(0)) {
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
    await run.exited;
  }
});
afterAll(async () => {
  await agent?.cleanup();
  temp.removeAll();
});

const temp = tempDirs();
const tempDir = temp.make;

async function connect(socketPath: string): Promise<RawClient> {
  const client = await RawClient.connect(socketPath);
  clients.push(client);
  return client;
}

/** A unit file's settings: section, then key, then every value given (a key may repeat). */
type UnitFile = Record<string, Record<string, string[]>>;

function readUnit(name: string): UnitFile {
  const unit: UnitFile = {};
  let section: Record<string, string[]> | undefined;
  for (const line of fs.readFileSync(path.join(UNITS, name), 'utf8').split('\n')) {
    const text = line.trim();
    if (text === '' || text.startsWith('#') || text.startsWith(';')) continue;
    // This reader knows no continuation lines: a unit that uses them fails here rather than being misread.
    if (text.endsWith('\\')) throw new Error(`${name}: continuation line: ${line}`);
    const header = /^\[(.+)\]$/.exec(text);
    if (header) {
      section = unit[header[1]!] ??= {};
      continue;
    }
    const setting = /^([A-Za-z]+)=(.*)$/.exec(text);
    if (!setting || !section) throw new Error(`${name}: not a setting in a section: ${line}`);
    (section[setting[1]!] ??= []).push(setting[2]!.trim());
  }
  return unit;
}

const socketUnit = readUnit('assuan-proxy.socket');
const serviceUnit = readUnit('assuan-proxy.service');
const [execStart] = serviceUnit.Service?.ExecStart ?? [];
/** The service's command line after the command, as the proxy gets it from systemd. */
const UNIT_ARGS = execStart?.split(/\s+/).slice(1) ?? [];
const FD_NAME = socketUnit.Socket?.FileDescriptorName?.[0] ?? 'gpg-agent';

/** What systemd does for a socket unit: binds and listens, the socket 0600 in a 0700 directory. */
function systemdSocket(mode = 0o600): { server: net.Server; path: string; dir: string; fd: number; ino: number; kernelSocket: string } {
  const dir = tempDir('sd.');
  const socketPath = path.join(dir, 'S.gpg-agent');
  const server = net.createServer();
  // For a pipe path Node binds and listens inside listen(), synchronously: the fd below is listening.
  server.listen(socketPath);
  fs.chmodSync(socketPath, mode);
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  return { server, path: socketPath, dir, fd, ino: fs.statSync(socketPath).ino, kernelSocket: fs.readlinkSync(`/proc/self/fd/${fd}`) };
}

/**
 * Closes the test's copy of the listening socket, in the same tick as the spawn that passed it on, so that this
 * process never accepts a connection meant for the proxy. libuv unlinks a Unix socket's path when its server
 * closes: the file is moved aside meanwhile, as systemd's socket file must stay where it is.
 */
function releaseOurCopy(socket: { server: net.Server; path: string }): void {
  const aside = `${socket.path}.aside`;
  fs.renameSync(socket.path, aside);
  socket.server.close();
  fs.renameSync(aside, socket.path);
}

function tracked(child: ChildProcess): RunningCli {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const run = { child, stderr: () => stderr, stdout: () => stdout, exited };
  runs.push(run);
  return run;
}

/**
 * Starts the CLI as systemd starts a socket-activated service: the socket as fd 3, and LISTEN_PID set to the pid of
 * the process that reads it (`exec` keeps the shell's pid), unless `listenPid` names another. With `gated`, the
 * shell waits on fd 4 until `openGate()`, so that the test can act before the proxy exists.
 */
function startActivated(
  args: string[],
  socket: ReturnType<typeof systemdSocket>,
  options: { env?: NodeJS.ProcessEnv; listenPid?: number; gated?: boolean } = {},
): RunningCli & { openGate(): void } {
  const script = `${options.gated ? 'read _ <&4; exec 4<&-; ' : ''}${options.listenPid === undefined ? 'LISTEN_PID=$$ ' : ''}exec "$0" "$@"`;
  const child = spawn('sh', ['-c', script, process.execPath, '--import', 'tsx', CLI, ...args], {
    env: {
      ...process.env,
      // Should the proxy make a socket of its own, it is made in a throw-away directory.
      XDG_RUNTIME_DIR: tempDir('xdg.'),
      LISTEN_FDS: '1',
      LISTEN_FDNAMES: FD_NAME,
      ...(options.listenPid === undefined ? {} : { LISTEN_PID: String(options.listenPid) }),
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe', socket.fd, options.gated ? 'pipe' : 'ignore'],
  });
  releaseOurCopy(socket);
  const gate = child.stdio[4] as NodeJS.WritableStream | null;
  return { ...tracked(child), openGate: () => gate?.end('go\n') };
}

/** Waits for the startup message, and checks that it says the proxy listens on the socket it was given. */
async function listeningActivated(run: RunningCli, socketPath?: string): Promise<void> {
  const [line] = await stderrMatch(run, /listening on .*\n/);
  expect(line).toContain('(socket-activated)');
  // The path is found from the descriptor (/proc), not taken from the command line: there is none there.
  if (socketPath) expect(line).toBe(`listening on ${socketPath} (socket-activated)\n`);
}

/** The agent's answer to GETINFO version, asked directly: what the proxy must relay unchanged. */
async function agentVersion(): Promise<string[]> {
  const direct = await connect(agent.socket);
  expect(await direct.readLine()).toBe(`OK Pleased to meet you, process ${process.pid}`);
  const version = await direct.request('GETINFO version');
  expect(version).toEqual([expect.stringMatching(/^D 2\.\d+\.\d+$/), 'OK']);
  return version;
}

describe('socket activation: the CLI started as systemd starts it', () => {
  it('serves the socket passed as fd 3, relays the agent unchanged, creates no socket, and leaves systemd\'s in place on SIGTERM', async () => {
    const socket = systemdSocket();
    const runtimeDir = tempDir('xdg.');
    const run = startActivated([...UNIT_ARGS, '--upstream', agent.socket], socket, { env: { XDG_RUNTIME_DIR: runtimeDir } });
    await listeningActivated(run, socket.path);
    const pid = run.child.pid!;
    // The proxy holds the very socket the test bound, as fd 3.
    expect(fs.readlinkSync(`/proc/${pid}/fd/3`)).toBe(socket.kernelSocket);

    const version = await agentVersion();
    const client = await connect(socket.path);
    // gpg-agent greets with its client's pid: the proxy's, so the session went through the activated proxy.
    expect(await client.readLine()).toBe(`OK Pleased to meet you, process ${pid}`);
    expect(await client.request('GETINFO version')).toEqual(version);

    // No socket of its own: not in the default directory under XDG_RUNTIME_DIR, nothing new beside systemd's.
    expect(fs.readdirSync(runtimeDir)).toEqual([]);
    expect(fs.readdirSync(socket.dir)).toEqual(['S.gpg-agent']);

    expect(await stopCli(run)).toBe(0);
    const after = fs.lstatSync(socket.path);
    expect(after.isSocket()).toBe(true);
    expect(after.ino).toBe(socket.ino);
    expect(after.mode & 0o777).toBe(0o600);
  });

  it('serves a connection that was queued on the socket before the proxy started', async () => {
    const socket = systemdSocket();
    const run = startActivated([...UNIT_ARGS, '--upstream', agent.socket], socket, { gated: true });
    // The kernel completes the connection: the socket listens, though nothing accepts yet.
    const client = await connect(socket.path);
    client.write('GETINFO version\n');
    expect(run.stderr()).toBe('');
    run.openGate();
    await listeningActivated(run);
    expect(await client.readLine()).toBe(`OK Pleased to meet you, process ${run.child.pid}`);
    expect(await client.response()).toEqual([expect.stringMatching(/^D 2\./), 'OK']);
    expect(await stopCli(run)).toBe(0);
  });

  it('passes no LISTEN_* variable to the gpg-agent it starts through gpgconf', async () => {
    const socket = systemdSocket();
    const home = tempDir('gpgh.');
    try {
      const run = startActivated(UNIT_ARGS, socket, { env: { GNUPGHOME: home, ASSUAN_TEST_PROBE: 'inherited' } });
      await listeningActivated(run);
      const client = await connect(socket.path);
      expect(await client.readLine()).toMatch(/^OK Pleased to meet you/);
      const [pidLine] = await client.request('GETINFO pid');
      const agentPid = Number(/^D (\d+)$/.exec(pidLine!)?.[1]);
      const environ = fs.readFileSync(`/proc/${agentPid}/environ`, 'latin1').split('\0');
      // The proxy's environment reaches the agent (gpgconf, gpg-connect-agent, gpg-agent)...
      expect(environ).toContain(`GNUPGHOME=${home}`);
      expect(environ).toContain('ASSUAN_TEST_PROBE=inherited');
      // ...and the variables meant for the proxy alone are not in it.
      expect(environ.filter((variable) => variable.startsWith('LISTEN_'))).toEqual([]);
      expect(await stopCli(run)).toBe(0);
    } finally {
      execFileSync('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: home } });
    }
  });

  it("ignores sockets whose LISTEN_PID is another process's and binds its own --listen path as usual", async () => {
    const socket = systemdSocket();
    const own = path.join(tempDir('own.'), 'S.gpg-agent');
    const run = startActivated([...UNIT_ARGS, '--upstream', agent.socket, '--listen', own], socket, { listenPid: process.pid });
    expect(await listening(run)).toBe(own);
    expect(run.stderr()).not.toContain('socket-activated');
    expect(fs.statSync(own).mode & 0o777).toBe(0o600);
    const client = await connect(own);
    expect(await client.readLine()).toBe(`OK Pleased to meet you, process ${run.child.pid}`);
    expect(await client.request('GETINFO version')).toEqual([expect.stringMatching(/^D 2\./), 'OK']);

    // Nobody accepts on the passed socket: a connection there is closed unanswered once its last holder exits.
    const unanswered = await connect(socket.path);
    expect(await stopCli(run)).toBe(0);
    expect(fs.existsSync(own)).toBe(false);
    expect(await unanswered.rest()).toEqual([]);
  });

  it('refuses --listen together with socket activation (exit 2)', async () => {
    const socket = systemdSocket();
    const run = startActivated([...UNIT_ARGS, '--upstream', agent.socket, '--listen', path.join(tempDir('own.'), 'S.gpg-agent')], socket);
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain('--listen');
    expect(fs.lstatSync(socket.path).isSocket()).toBe(true);
  });

  it("refuses a socket others can connect to (systemd's default SocketMode=0666), and a TCP socket", async () => {
    const open = systemdSocket(0o666);
    const run = startActivated([...UNIT_ARGS, '--upstream', agent.socket], open);
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toContain(`${open.path}, has mode 666 (set SocketMode=0600): anyone who reaches it can use the keys`);

    const tcp = net.createServer();
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    const fd = (tcp as unknown as { _handle: { fd: number } })._handle.fd;
    const child = spawn('sh', ['-c', 'LISTEN_PID=$$ exec "$0" "$@"', process.execPath, '--import', 'tsx', CLI, ...UNIT_ARGS, '--upstream', agent.socket], {
      env: { ...process.env, XDG_RUNTIME_DIR: tempDir('xdg.'), LISTEN_FDS: '1', LISTEN_FDNAMES: FD_NAME },
      stdio: ['ignore', 'pipe', 'pipe', fd],
    });
    tcp.close();
    const viaTcp = tracked(child);
    expect(await viaTcp.exited).toBe(1);
    expect(viaTcp.stderr()).toMatch(/is a TCP socket \(127\.0\.0\.1:\d+\); the proxy serves only a Unix socket/);
  });

  it('refuses to start when the socket passed is the upstream itself (a unit listening on the agent\'s own path)', async () => {
    const socket = systemdSocket();
    const run = startActivated([...UNIT_ARGS, '--upstream', socket.path], socket);
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toContain(`the socket systemd passed is the upstream's own socket ${socket.path}`);
  });
});

const SOCKET_ACTIVATE = (process.env.PATH ?? '')
  .split(':')
  .map((dir) => path.join(dir, 'systemd-socket-activate'))
  .find((file) => fs.existsSync(file));
if (!SOCKET_ACTIVATE) console.log('socketActivation.test.ts: systemd-socket-activate is not on PATH; its test is skipped');

describe('socket activation through systemd-socket-activate', () => {
  it.skipIf(!SOCKET_ACTIVATE)('starts the proxy on the first connection and serves it', async () => {
    const socketPath = path.join(tempDir('ssa.'), 'S.gpg-agent');
    const runtimeDir = tempDir('xdg.');
    // It passes its children only PATH, HOME, TERM, USER and what -E names, plus LISTEN_*.
    const run = tracked(
      spawn(
        SOCKET_ACTIVATE!,
        ['-l', socketPath, `--fdname=${FD_NAME}`, '-E', `XDG_RUNTIME_DIR=${runtimeDir}`, process.execPath, '--import', 'tsx', CLI, ...UNIT_ARGS, '--upstream', agent.socket],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    await stderrMatch(run, /Listening on/);
    const version = await agentVersion();
    // Without --accept it waits for this connection, then execs the proxy in its own place (same pid).
    const client = await connect(socketPath);
    await listeningActivated(run, socketPath);
    expect(await client.readLine()).toBe(`OK Pleased to meet you, process ${run.child.pid}`);
    expect(await client.request('GETINFO version')).toEqual(version);
    expect(fs.readdirSync(runtimeDir)).toEqual([]);
    expect(await stopCli(run)).toBe(0);
    expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
  });
});

describe('contrib/systemd units', () => {
  it('the socket listens privately on the proxy\'s default path, named and tied to the service', () => {
    expect(socketUnit.Socket).toEqual({
      ListenStream: ['%t/assuan-proxy/S.gpg-agent'],
      FileDescriptorName: ['gpg-agent'],
      Service: ['assuan-proxy.service'],
      SocketMode: ['0600'],
      DirectoryMode: ['0700'],
    });
    expect(socketUnit.Install?.WantedBy).toEqual(['sockets.target']);
    // %t is $XDG_RUNTIME_DIR in a user unit: the same path a proxy started by hand listens on.
    expect(socketUnit.Socket!.ListenStream![0]!.replace('%t', '/run/user/1000')).toBe(defaultListenPath({ XDG_RUNTIME_DIR: '/run/user/1000' }));
    expect(fs.existsSync(path.join(UNITS, socketUnit.Socket!.Service![0]!))).toBe(true);
  });

  it('the service needs the socket and runs the installed command with flags the CLI accepts: no warm-up, no --listen', () => {
    expect(serviceUnit.Unit?.Requires).toEqual(['assuan-proxy.socket']);
    expect(serviceUnit.Service?.ExecStart).toHaveLength(1);
    // Nothing systemd would unquote, expand or treat specially: splitting on spaces is exactly its reading.
    expect(execStart).toMatch(/^[A-Za-z0-9 ./_-]+$/);
    const [command, ...args] = execStart!.split(/\s+/);
    const { bin } = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { bin: Record<string, string> };
    expect(Object.keys(bin)).toContain(command);
    const commandLine = parseCommandLine(args);
    expect(commandLine.help || commandLine.version).toBe(false);
    expect(commandLine.proxy.warmUpSessions).toBe(0);
    expect(commandLine.pairs.every((pair) => pair.listen === undefined)).toBe(true);
    expect(() => resolveConfig({ ...commandLine.proxy, listen: undefined, listenFd: 3, logger: pino({ level: 'silent' }) })).not.toThrow();
  });

  const ANALYZE = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((file) => fs.existsSync(file));
  if (!ANALYZE) console.log('socketActivation.test.ts: systemd-analyze is not installed; the units are not verified with it');
  it.skipIf(!ANALYZE)('systemd-analyze verify finds nothing wrong in them (but that assuan-proxy is not installed here)', () => {
    const result = spawnSync(ANALYZE!, ['--user', 'verify', path.join(UNITS, 'assuan-proxy.socket'), path.join(UNITS, 'assuan-proxy.service')], {
      env: { ...process.env, XDG_RUNTIME_DIR: tempDir('xdg.') },
      encoding: 'utf8',
    });
    expect(result.error).toBeUndefined();
    const output = `${result.stdout}${result.stderr}`;
    const problems = output.split('\n').filter((line) => line !== '' && !/Command assuan-proxy is not executable/.test(line));
    expect(problems).toEqual([]);
  });
});
