/** The `assuan-proxy` executable as a user runs it: defaults, messages, socket safety, signals. */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OPTIONS } from '../../src/commandLine.js';
import { RawClient } from '../support/assuanClient.js';
import { brokenPipe, listening, runCli, stdoutMatch, type RunningCli } from '../support/cli.js';
import { createScriptedAgent, type ScriptedAgent } from '../support/scriptedAgent.js';
import { greetedSession, liveSocketPath } from '../support/sessions.js';
import { createAgentHome, createClientHome, generateKey, mustRun, runTool, type AgentHome, tempDirs } from '../support/gnupg.js';

let agent: AgentHome;

beforeAll(async () => {
  agent = await createAgentHome();
});
afterAll(async () => {
  await agent?.cleanup();
  temp.removeAll();
});

const temp = tempDirs();
const tempDir = temp.make;

describe('assuan-proxy CLI', () => {
  it('--help lists every option the parser takes, each subcommand, examples and exit codes, and exits 0', async () => {
    const run = runCli(['--help'], {});
    expect(await run.exited).toBe(0);
    const help = run.stdout();
    for (const [name, option] of Object.entries(OPTIONS)) {
      expect(help).toMatch(new RegExp(`^ +${'short' in option ? `-${option.short}, ` : ''}--${name}\\b`, 'm'));
    }
    for (const subcommand of ['forward', 'doctor', 'audit', 'client-end']) expect(help).toContain(`assuan-proxy ${subcommand} `);
    expect(help).toMatch(/^Examples:\n/m);
    expect(help).toMatch(/^Exit status:\n  0 .*\n  1 .*\n  2 +bad command line/m);
  });

  it('--check FILE, or stdin: the policy over a transcript, line by line; nothing is started', async () => {
    const dir = tempDir('chk.');
    const file = path.join(dir, 'transcript');
    fs.writeFileSync(file, 'GETINFO version\nPKDECRYPT\n');
    const fromFile = runCli(['--check', file, '--deny', 'PKDECRYPT', '--listen', path.join(dir, 'S.never')], {});
    expect(await fromFile.exited).toBe(0);
    expect(fromFile.stdout()).toBe('line 1: GETINFO: relayed\nline 2: PKDECRYPT: refused, denied (--deny)\n');
    expect(fs.existsSync(path.join(dir, 'S.never'))).toBe(false);
    const child = spawn(process.execPath, ['--import', 'tsx', path.resolve('src/cli.ts'), '--check', '--restricted'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stdin.end('KILLAGENT\n');
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(0);
    expect(out).toBe("line 1: KILLAGENT: refused, forbidden on gpg-agent's extra socket (--restricted)\n");
  });

  it.each([['--version'], ['-V']])('%s prints the package version and exits 0', async (flag) => {
    const run = runCli([flag], {});
    expect(await run.exited).toBe(0);
    const { version } = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { version: string };
    expect(run.stdout()).toBe(`assuan-proxy ${version}\n`);
  });

  it.each([
    [['--bogus'], "Unknown option '--bogus'"],
    [['--log-level', 'loud'], '--log-level must be one of'],
    [['--connect-timeout', '0'], '--connect-timeout takes a positive whole number'],
    [['--ui', 'http'], "--ui takes a TCP port number, not 'http'"],
    [['--response-timeout', '9999999999'], '--response-timeout takes a positive whole number of milliseconds'],
    [['--max-sessions', '0'], "--max-sessions takes a positive whole number, not '0'"],
    [['--deny', 'PKSIGN,FROB'], '--deny: unknown command FROB'],
    // parseArgs would call these "ambiguous" and suggest --connect-timeout=-XYZ.
    [['--connect-timeout', '-5'], "--connect-timeout takes a positive whole number of milliseconds, not '-5'"],
    [['--listen'], '--listen needs a value: --listen PATH'],
    [['--listen', '--upstream', '/tmp/x'], "--listen needs a value: --listen PATH (write --listen=--upstream if '--upstream' is meant as its value)"],
  ])('rejects %j with a clear message and exit 2', async (args, message) => {
    const run = runCli(args, {});
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain(message);
  });

  it('with no flags: finds the agent with gpgconf, listens privately under XDG_RUNTIME_DIR, gpg signs through it, SIGTERM exits 0 and removes the socket', async () => {
    const runtimeDir = tempDir('xdg.');
    const key = await generateKey(agent.home, 'Cli <cli@example.org>', 'future-default', '');
    const agentSockets = () =>
      fs.readdirSync(path.dirname(agent.socket)).filter((f) => f.startsWith('S.gpg-agent')).map((f) => {
        const st = fs.statSync(path.join(path.dirname(agent.socket), f));
        return `${f} ${st.ino} ${st.mtimeMs} ${st.mode}`;
      });
    const agentSocketsBefore = agentSockets();
    expect(agentSocketsBefore.length).toBeGreaterThanOrEqual(2);
    const run = runCli([], { GNUPGHOME: agent.home, XDG_RUNTIME_DIR: runtimeDir });
    const socket = await listening(run);
    expect(socket).toBe(path.join(runtimeDir, 'assuan-proxy', 'S.gpg-agent'));
    expect(run.stderr()).toContain(`relaying to gpg-agent at ${agent.socket}`);
    expect(run.stderr()).toContain(`gpg-connect-agent -S ${socket}`);
    expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(socket)).mode & 0o777).toBe(0o700);

    // Real gpg, pointed at the proxy through a symlink at its client home's socket path.
    const client = await createClientHome(agent.home);
    temp.adopt(client.home);
    fs.symlinkSync(socket, client.socket);
    const message = Buffer.from('signed through the CLI');
    const signature = await mustRun('gpg', client.home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', '-'], message);
    fs.writeFileSync(path.join(client.home, 'm.sig'), signature);
    await mustRun('gpg', client.home, ['--batch', '--verify', path.join(client.home, 'm.sig'), '-'], message);

    // JSON log lines on stdout (not a terminal), one per session at info.
    const records = run.stdout().trim().split('\n').map((l) => JSON.parse(l) as { msg: string });
    expect(records.some((r) => r.msg === 'session ended')).toBe(true);

    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(fs.existsSync(socket)).toBe(false);
    // The agent's own sockets are untouched: same files, same inodes, times and modes.
    expect(agentSockets()).toEqual(agentSocketsBefore);
  });

  it('on exit removes only its own socket: a socket put in its place meanwhile is left alone', async () => {
    const dir = tempDir('own.');
    const socket = path.join(dir, 'S.gpg-agent');
    const run = runCli(['--listen', socket, '--upstream', agent.socket], {});
    expect(await listening(run)).toBe(socket);
    fs.unlinkSync(socket);
    const other = net.createServer((c) => c.end('OK other\n'));
    await new Promise<void>((resolve) => other.listen(socket, resolve));
    try {
      run.child.kill('SIGTERM');
      const code = await run.exited;
      expect(code, `${run.child.signalCode} ${run.stderr()} ${run.stdout()}`).toBe(0);
      expect(fs.statSync(socket).isSocket()).toBe(true);
      const client = await RawClient.connect(socket);
      expect(await client.readLine()).toBe('OK other');
      client.destroy();
    } finally {
      other.close();
    }
  });

  it('a SIGTERM sent the instant it says "listening" still exits 0 and removes the socket (handlers precede the announcement)', async () => {
    // A supervisor may signal as soon as it reads the line; before the fix most of these died by the signal.
    for (let attempt = 0; attempt < 10; attempt++) {
      const dir = tempDir('quick.');
      const socket = path.join(dir, 'S.gpg-agent');
      const run = runCli(['--listen', socket, '--upstream', agent.socket], {});
      // Signalled from the data handler itself, with no promise hops in between, to hit the narrowest window.
      const killOnAnnouncement = () => {
        if (!run.stderr().includes('listening on')) return;
        run.child.kill('SIGTERM');
        run.child.stderr!.off('data', killOnAnnouncement);
      };
      run.child.stderr!.on('data', killOnAnnouncement);
      const code = await run.exited;
      expect(run.stderr()).toContain(`listening on ${socket}`);
      expect(code, `attempt ${attempt}: ${run.child.signalCode} ${run.stderr()}`).toBe(0);
      expect(fs.existsSync(socket)).toBe(false);
    }
  });

  it('refuses to replace a live socket, and says so', async () => {
    const { socket, release } = await liveSocketPath();
    try {
      const run = runCli(['--listen', socket, '--upstream', agent.socket], {});
      expect(await run.exited).toBe(1);
      expect(run.stderr()).toContain(`something is already listening on ${socket}`);
      expect(fs.statSync(socket).isSocket()).toBe(true);
    } finally {
      release();
    }
  });

  it('removes a stale socket of its own and starts; repeated SIGINT (npm relays Ctrl-C) exits 0 and removes the socket', async () => {
    const dir = tempDir('stale.');
    const socket = path.join(dir, 'S.gpg-agent');
    // A socket file nobody listens on: what a proxy killed with SIGKILL leaves behind.
    const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    await new Promise((r) => crashed.on('exit', r));
    expect(fs.statSync(socket).isSocket()).toBe(true);
    const run = runCli(['--listen', socket, '--upstream', agent.socket], {});
    expect(await listening(run)).toBe(socket);
    const client = await RawClient.connect(socket);
    expect(await client.readLine()).toMatch(/^OK Pleased/);
    client.destroy();
    run.child.kill('SIGINT');
    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(fs.existsSync(socket)).toBe(false);
  });

  it.each([
    ['a directory others can enter', (dir: string) => fs.chmodSync(dir, 0o755), 'must be private (700)'],
    ['a path that is not a socket', (dir: string) => fs.writeFileSync(path.join(dir, 'S.gpg-agent'), 'x'), 'exists and is not a socket'],
  ])('refuses %s', async (_, arrange, message) => {
    const dir = tempDir('bad.');
    arrange(dir);
    const run = runCli(['--listen', path.join(dir, 'S.gpg-agent'), '--upstream', agent.socket], {});
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toContain(message);
  });

  it("refuses to listen in gpg-agent's own socket directory", async () => {
    const run = runCli(['--listen', path.join(path.dirname(agent.socket), 'S.proxy')], { GNUPGHOME: agent.home });
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toContain("refusing to listen in gpg-agent's own socket directory");
    expect(fs.existsSync(path.join(path.dirname(agent.socket), 'S.proxy'))).toBe(false);
  });

  it('a too-long socket path is refused with the limit named', async () => {
    const run = runCli(['--listen', `/tmp/${'x'.repeat(120)}/S.gpg-agent`, '--upstream', agent.socket], {});
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toContain('a Unix socket path holds at most 107');
  });

  it('a missing gpgconf is reported with what to do', async () => {
    const run = runCli([], { PATH: '/nonexistent', GNUPGHOME: agent.home });
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toContain('gpgconf is not installed');
    expect(run.stderr()).toContain('--upstream PATH');
    // gpgconf not found means nothing ran: the agent is untouched.
    expect((await runTool('gpg-connect-agent', agent.home, ['GETINFO version', '/bye'])).stdout.toString()).toContain('D 2.2.40');
  });
});

describe('assuan-proxy CLI: hang-ups and output nobody reads', () => {
  let scripted: ScriptedAgent;
  const started: RunningCli[] = [];
  beforeAll(async () => {
    scripted = await createScriptedAgent();
  });
  afterAll(async () => {
    await scripted?.close();
  });
  // A proxy that hangs (the failure these tests look for) must not outlive its test.
  afterEach(() => {
    for (const run of started.splice(0)) if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
  });
  const start = (args: string[], options: { stderrFd?: number } = {}) => {
    const run = runCli(args, {}, options);
    started.push(run);
    return run;
  };

  /** A session that logs ("session ended") once its client hangs up after one command. */
  async function oneSession(socket: string): Promise<void> {
    const { client, upstream } = await greetedSession(socket, scripted);
    client.write('GETINFO version\n');
    expect(await upstream.readLine()).toBe('GETINFO version');
    upstream.send('D 2.2.40\nOK\n');
    expect(await client.readLine()).toBe('D 2.2.40');
    expect(await client.readLine()).toBe('OK');
    client.destroy();
  }

  it('SIGHUP (an ssh session ending) drains like SIGTERM: the command in flight is answered, exit 0, socket removed', async () => {
    const socket = path.join(tempDir('hup.'), 'S.gpg-agent');
    const run = start(['--listen', socket, '--upstream', scripted.socket]);
    await listening(run);
    const { client, upstream } = await greetedSession(socket, scripted);
    client.write('PKSIGN\n');
    expect(await upstream.readLine()).toBe('PKSIGN');
    run.child.kill('SIGHUP');
    // Before the fix the signal killed the process here (exit 129), with the socket left behind.
    await stdoutMatch(run, /"signal":"SIGHUP"/);
    await stdoutMatch(run, /shutting down/);
    upstream.send('D signature\nOK\n');
    expect(await client.rest()).toEqual(['D signature', 'OK']);
    expect(await run.exited).toBe(0);
    expect(fs.existsSync(socket)).toBe(false);
  });

  it('exits 0 on SIGTERM after the reader of its stdout and stderr has gone (`| head -1`), socket removed', async () => {
    const socket = path.join(tempDir('gone.'), 'S.gpg-agent');
    const run = start(['--listen', socket, '--upstream', scripted.socket]);
    await listening(run);
    await oneSession(socket);
    await stdoutMatch(run, /session ended/);
    // The reader goes away; the next log lines are the shutdown's own. Before the fix pino's exit hook retried
    // its synchronous flush on EPIPE every 100 ms forever: the socket was removed but the process never exited.
    run.child.stdout!.destroy();
    run.child.stderr!.destroy();
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(fs.existsSync(socket)).toBe(false);
  });

  it('with stderr broken from the start and stdout broken once listening, serves sessions that log, then exits 0 on SIGTERM', async () => {
    const dir = tempDir('broken.');
    const socket = path.join(dir, 'S.gpg-agent');
    const stderrFd = brokenPipe(dir);
    const run = start(['--listen', socket, '--upstream', scripted.socket], { stderrFd });
    fs.closeSync(stderrFd);
    await stdoutMatch(run, /"msg":"listening"/);
    run.child.stdout!.destroy();
    // Before the fix the "listening on" message to the broken stderr was an unhandled EPIPE: exit 1, socket left.
    const died = run.exited.then((code) => Promise.reject(new Error(`assuan-proxy exited (${code}) while serving`)));
    died.catch(() => {}); // only raced below: its later rejection (the SIGTERM exit) is no failure
    for (let i = 0; i < 3; i++) await Promise.race([oneSession(socket), died]);
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(fs.existsSync(socket)).toBe(false);
  });
});
