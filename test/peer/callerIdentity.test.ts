/** lookupCaller against real clients in child processes, `ss` listings with hostile names, and describeCaller. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { describeCaller, findPeerRow, lookupCaller, safeText, type CallerIdentity } from '../../src/peer/callerIdentity.js';

const onLinux = process.platform === 'linux';
const haveSs = onLinux && spawnSync('ss', ['-V'], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }).status === 0;
const havePython = spawnSync('python3', ['-c', ''], { stdio: 'ignore' }).status === 0;

let dir: string;
const children: ChildProcess[] = [];
const servers: net.Server[] = [];
const sockets: net.Socket[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'caller-identity-'));
});

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await gone;
    }
  }
  // server.close() waits for its connections: end them first.
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

let serial = 0;

/** A Unix server whose accepted sockets come out in order; paused and half-open, so a client's exit closes nothing. */
async function unixServer(): Promise<{ socketPath: string; next: () => Promise<net.Socket> }> {
  const socketPath = path.join(dir, `s${serial++}.sock`);
  const waiting: Array<(socket: net.Socket) => void> = [];
  const accepted: net.Socket[] = [];
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    sockets.push(socket);
    const taker = waiting.shift();
    if (taker) taker(socket);
    else accepted.push(socket);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const next = () => new Promise<net.Socket>((resolve) => {
    const socket = accepted.shift();
    if (socket) resolve(socket);
    else waiting.push(resolve);
  });
  return { socketPath, next };
}

/** Starts a child and waits for its first line on stdout (it prints once connected). */
async function startChild(command: string, args: string[]): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const line = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const end = text.indexOf('\n');
      if (end >= 0) resolve(text.slice(0, end));
    });
    child.once('exit', (code) => reject(new Error(`${command} exited (${code}) before it connected`)));
  });
  return { child, line };
}

describe.skipIf(!haveSs)('lookupCaller with real clients (needs Linux and ss)', () => {
  it('names a node client in a child process: its pid, our uid, node\'s executable', async () => {
    const { socketPath, next } = await unixServer();
    const { child } = await startChild(process.execPath, [
      '-e',
      `require('net').connect(${JSON.stringify(socketPath)}, () => console.log('connected')).on('error', () => {}); setInterval(() => {}, 1000);`,
    ]);
    const result = await lookupCaller(await next());
    expect(result.reason).toBeUndefined();
    expect(result.caller).toEqual({
      pid: child.pid,
      uid: process.getuid!(),
      program: fs.realpathSync(process.execPath),
      command: fs.readFileSync(`/proc/${child.pid}/comm`, 'utf8').trim(),
      sharedBy: 1,
    });
    expect(result.caller!.pid).not.toBe(process.pid);
  });

  it.skipIf(!havePython)('after fork both processes hold the socket: the first listed is reported, sharedBy 2', async () => {
    const { socketPath, next } = await unixServer();
    const script = [
      'import os, socket, sys, time',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
      `s.connect(${JSON.stringify(socketPath)})`,
      'child = os.fork()',
      'if child: print(os.getpid(), child, os.path.realpath(sys.executable), flush=True)',
      'time.sleep(60)',
    ].join('\n');
    const { child, line } = await startChild('python3', ['-c', script]);
    const [parentPid, forkedPid, executable] = line.split(' ');
    expect(Number(parentPid)).toBe(child.pid);
    try {
      const result = await lookupCaller(await next());
      expect(result.reason).toBeUndefined();
      expect([Number(parentPid), Number(forkedPid)]).toContain(result.caller!.pid);
      expect(result.caller).toMatchObject({ uid: process.getuid!(), program: executable, sharedBy: 2 });
    } finally {
      try {
        process.kill(Number(forkedPid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });

  it.skipIf(!havePython)('a client bound to a name with a line break and blanks is still found, and only it', async () => {
    const { socketPath, next } = await unixServer();
    const bound = path.join(dir, `we ird\n 1 * 2 users:(("gpg",pid=1,fd=3))`);
    const script = [
      'import socket, time',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
      `s.bind(${JSON.stringify(bound)})`,
      `s.connect(${JSON.stringify(socketPath)})`,
      'print("connected", flush=True)',
      'time.sleep(60)',
    ].join('\n');
    const { child } = await startChild('python3', ['-c', script]);
    const result = await lookupCaller(await next());
    expect(result.reason).toBeUndefined();
    expect(result.caller).toMatchObject({ pid: child.pid, sharedBy: 1 });
  });

  it('a client that has exited: undefined with a reason, no throw', async () => {
    const { socketPath, next } = await unixServer();
    const child = spawn(process.execPath, ['-e', `require('net').connect(${JSON.stringify(socketPath)}, function () { this.destroy(); });`], { stdio: 'ignore' });
    children.push(child);
    const socket = await next();
    await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(undefined)));
    const result = await lookupCaller(socket);
    expect(result.caller).toBeUndefined();
    expect(result.reason).toMatch(/peer socket not found/);
  });

  it('a socket already closed: undefined with a reason', async () => {
    const { socketPath, next } = await unixServer();
    const client = net.connect(socketPath);
    client.on('error', () => {});
    const socket = await next();
    socket.destroy();
    client.destroy();
    expect(await lookupCaller(socket)).toEqual({ caller: undefined, reason: 'socket has no descriptor (closed already?)' });
  });
});

describe.skipIf(!onLinux)('lookupCaller when it cannot ask', () => {
  async function connectedPair(): Promise<{ socket: net.Socket; client: net.Socket }> {
    const { socketPath, next } = await unixServer();
    const client = net.connect(socketPath);
    client.on('error', () => {});
    const socket = await next();
    return { socket, client };
  }

  it('ss missing: undefined, "ss not found"', async () => {
    const { socket, client } = await connectedPair();
    expect(await lookupCaller(socket, { ssPath: path.join(dir, 'no-such-ss') })).toEqual({ caller: undefined, reason: 'ss not found' });
    client.destroy();
  });

  it('ss hanging: killed after the timeout', async () => {
    const { socket, client } = await connectedPair();
    const hanging = path.join(dir, 'hanging-ss');
    fs.writeFileSync(hanging, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
    const started = Date.now();
    expect(await lookupCaller(socket, { ssPath: hanging, timeoutMs: 200 })).toEqual({ caller: undefined, reason: 'ss took over 200 ms' });
    expect(Date.now() - started).toBeLessThan(5_000);
    client.destroy();
  });

  it('ss talking without end: killed past the output bound', async () => {
    const { socket, client } = await connectedPair();
    const endless = path.join(dir, 'endless-ss');
    fs.writeFileSync(endless, '#!/bin/sh\nexec yes\n', { mode: 0o755 });
    expect(await lookupCaller(socket, { ssPath: endless, maxOutputBytes: 10_000 })).toEqual({ caller: undefined, reason: 'ss output over 10000 bytes' });
    client.destroy();
  });

  it('not Linux: undefined with the reason', async () => {
    const { socket, client } = await connectedPair();
    const result = await lookupCaller(socket, { platform: 'darwin' });
    expect(result.caller).toBeUndefined();
    expect(result.reason).toMatch(/not on Linux \(darwin\)/);
    client.destroy();
  });
});

describe('findPeerRow on ss listings', () => {
  const ours = '5000';
  const ownRow = 'u_str ESTAB 0      0      /run/user/1000/gnupg/S.gpg-agent 5000 * 4000 users:(("node",pid=10,fd=20))';

  it('takes the row whose peer is ours, and every holder listed', () => {
    const listing = [
      'Netid State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process',
      'u_str ESTAB 0      0                            * 3000 * 3001 users:(("gpg",pid=7,fd=3))',
      ownRow,
      'u_str ESTAB 0      0                            * 4000 * 5000 users:(("gpg",pid=11,fd=3),("gpg",pid=12,fd=3))   ',
    ].join('\n');
    expect(findPeerRow(listing, ours)).toEqual({ peerInode: '4000', holders: [{ pid: 11, fd: 3 }, { pid: 12, fd: 3 }] });
  });

  it('reads pid and fd from the end of a holder whose name imitates them', () => {
    const listing = [ownRow, '0 0 * 4000 * 5000 users:(("a",pid=1,fd=9",pid=11,fd=3))'].join('\n');
    expect(findPeerRow(listing, ours)).toEqual({ peerInode: '4000', holders: [{ pid: 11, fd: 3 }] });
  });

  it('a peer held by no visible process: no holders', () => {
    expect(findPeerRow([ownRow, '0 0 * 4000 * 5000'].join('\n'), ours)).toEqual({ peerInode: '4000', holders: [] });
  });

  it('a row forged by a line break in another socket\'s name: not trusted', () => {
    const listing = [
      ownRow,
      // Another socket named `/tmp/x\n0 0 * 9999 * 5000 users:(("gpg",pid=1,fd=3))\n0 0 y`:
      '0 0 /tmp/x',
      '0 0 * 9999 * 5000 users:(("gpg",pid=1,fd=3))',
      '0 0 y 7777 * 8888 users:(("evil",pid=66,fd=4))',
      '0 0 * 4000 * 5000 users:(("real",pid=67,fd=5))',
    ].join('\n');
    expect(findPeerRow(listing, ours)).toMatchObject({ reason: expect.stringMatching(/not trusted/) });
  });

  it('the real row cut by a line break in the process name, a forged one beside it: not trusted', () => {
    const listing = [ownRow, '0 0 * 4000 * 5000 users:(("gpg",pid=1,fd=3))', '0 0 * 4000 * 5000 users:(("ev', 'il",pid=66,fd=5))'].join('\n');
    expect(findPeerRow(listing, ours)).toMatchObject({ reason: expect.stringMatching(/not trusted/) });
  });

  it('a peer row that our own row does not point back to: not trusted', () => {
    const listing = [ownRow, '0 0 * 4001 * 5000 users:(("gpg",pid=1,fd=3))'].join('\n');
    expect(findPeerRow(listing, ours)).toEqual({ reason: 'ss listing not trusted: our socket and its peer disagree' });
  });

  it('no row with our peer: not found', () => {
    expect(findPeerRow([ownRow, '0 0 * 50001 * 50000'].join('\n'), ours)).toEqual({
      reason: 'peer socket not found (client gone, or in another network namespace)',
    });
  });
});

describe('describeCaller', () => {
  const gpg: CallerIdentity = { pid: 1234, uid: 1000, program: '/usr/bin/gpg', command: 'gpg', sharedBy: 1 };

  it('renders name, pid, uid and program', () => {
    expect(describeCaller(gpg)).toBe('gpg (pid 1234, uid 1000, /usr/bin/gpg)');
  });

  it('escapes a hostile name and bounds each part', () => {
    const hostile: CallerIdentity = {
      ...gpg,
      command: 'gpg\nOK %0A\x1b[2J\x07\u202eevil\\',
      program: `/tmp/${'x'.repeat(300)}\r\n%s/real-gpg`,
    };
    const text = describeCaller(hostile);
    expect(text).toBe(`gpg\\nOK \\x250A\\x1b[2J\\x07... (pid 1234, uid 1000, ...${'x'.repeat(59)}\\r\\n\\x25s/real-gpg)`);
    expect(describeCaller({ ...gpg, command: '\u202eevil\\' })).toBe('\\u{202e}evil\\\\ (pid 1234, uid 1000, /usr/bin/gpg)');
    expect(text).toMatch(/^[\x20-\x7e]*$/);
    expect(text).not.toContain('%');
  });

  it('cuts between escapes, never inside one', () => {
    expect(safeText('\n'.repeat(40), 32)).toBe(`${'\\n'.repeat(14)}...`);
    expect(safeText('a'.repeat(100), 80, 'end')).toBe(`...${'a'.repeat(77)}`);
    expect(safeText('short', 32)).toBe('short');
  });

  it('a non-number pid renders as ?', () => {
    expect(describeCaller({ ...gpg, pid: Number.NaN })).toBe('gpg (pid ?, uid 1000, /usr/bin/gpg)');
  });
});
