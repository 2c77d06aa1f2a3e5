import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { dialUpstream, isSshAgentSocketPath, type DialOutcome } from '../../src/upstream/dial.js';
import type { HandshakeDefect, UpstreamHandshake } from '../../src/upstream/handshake.js';
import { SocketFileError } from '../../src/upstream/socketFile.js';
import { startEmulatedAgent, windowsSocketFile, type EmulatedAgent } from '../support/emulatedAgent.js';
import { createAgentHome } from '../support/gnupg.js';

// Wrapped, not replaced: the tests see when dialling looks at the file system.
vi.mock('node:fs/promises', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:fs/promises')>();
  return { ...original, stat: vi.fn(original.stat), open: vi.fn(original.open) };
});
const { open, stat } = await import('node:fs/promises');
// Likewise for connects: the tests see every address dialled.
vi.mock('node:net', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:net') & { default: typeof import('node:net') }>();
  const connect = vi.fn(original.connect as (...args: unknown[]) => net.Socket);
  return { ...original, connect, default: { ...original.default, connect } };
});
const connectCalls = () => vi.mocked(net.connect).mock.calls.map((args) => args[0]);

const GREETING = Buffer.from('OK Pleased to meet you\n');
const cleanups: Array<() => Promise<void> | void> = [];

beforeEach(() => {
  vi.mocked(net.connect).mockClear();
  vi.mocked(stat).mockClear();
  vi.mocked(open).mockClear();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  // Short: a Unix socket path has at most 107 bytes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dial.'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A Unix socket server that greets each connection with `greeting` and counts them. */
async function unixServer(socketPath: string, greeting: Buffer, onData?: (socket: net.Socket, chunk: Buffer) => void): Promise<{ accepted: () => number }> {
  let accepted = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    if (onData) socket.on('data', (chunk: Buffer) => onData(socket, chunk));
    socket.write(greeting);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { accepted: () => accepted };
}

async function emulated(options: Parameters<typeof startEmulatedAgent>[0]): Promise<EmulatedAgent> {
  const agent = await startEmulatedAgent(options);
  cleanups.push(() => agent.close());
  return agent;
}

function connected(outcome: DialOutcome): Extract<DialOutcome, { kind: 'connected' }> {
  if (outcome.kind !== 'connected') throw new Error(`dial did not connect: ${JSON.stringify(outcome)}`);
  cleanups.push(() => void outcome.socket.destroy());
  return outcome;
}

/**
 * Reads a dialled socket as the proxy would: writes the opening, feeds the handshake, then collects what follows.
 * Attached only after the dial resolved, so what it reads proves nothing was lost before.
 */
function attach(socket: net.Socket, handshake: UpstreamHandshake | undefined) {
  let received = Buffer.alloc(0);
  let handshaking = handshake?.needsReply ?? false;
  let failure: HandshakeDefect | undefined;
  let wake = () => {};
  let finished = false;
  if (handshake) socket.write(handshake.opening());
  socket.on('data', (chunk: Buffer) => {
    if (handshaking) {
      const step = handshake!.receive(chunk);
      if (step.write) socket.write(step.write);
      if (step.failed) {
        failure = step.failed;
        socket.destroy();
      }
      if (!step.done) return wake();
      handshaking = false;
      chunk = step.done.leftover;
    }
    received = Buffer.concat([received, chunk]);
    wake();
  });
  const finish = () => {
    if (handshaking && !failure) failure = handshake!.ended().failed;
    finished = true;
    wake();
  };
  socket.on('end', finish);
  socket.on('close', finish);
  // A reset counts as the end; the test looks at what arrived.
  socket.on('error', () => {});
  const waitFor = (ready: () => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => (ready() ? resolve() : (wake = check));
      check();
    });
  return {
    /** The next line, or undefined once the server closed without one. */
    async line(): Promise<Buffer | undefined> {
      await waitFor(() => received.includes(0x0a) || finished);
      const end = received.indexOf(0x0a);
      if (end < 0) return undefined;
      const line = received.subarray(0, end + 1);
      received = received.subarray(end + 1);
      return line;
    },
    async bytes(count: number): Promise<Buffer> {
      await waitFor(() => received.length >= count || finished);
      const taken = received.subarray(0, count);
      received = received.subarray(count);
      return taken;
    },
    async closed(): Promise<{ failure: HandshakeDefect | undefined; unread: Buffer }> {
      await waitFor(() => finished);
      return { failure, unread: received };
    },
    send: (bytes: Buffer | string) => socket.write(bytes),
  };
}

describe('a Unix socket', () => {
  it('is one connect: no stat, no file read, one connection', async () => {
    const socketPath = path.join(tempDir(), 'S.agent');
    const server = await unixServer(socketPath, GREETING);
    const { socket, handshake } = connected(await dialUpstream(socketPath, {}));
    expect(handshake).toBeUndefined();
    expect(vi.mocked(stat)).not.toHaveBeenCalled();
    expect(vi.mocked(open)).not.toHaveBeenCalled();
    // The greeting was sent before anyone read: it waits in the socket.
    expect(await attach(socket, undefined).line()).toEqual(GREETING);
    expect(server.accepted()).toBe(1);
    expect(connectCalls()).toEqual([{ path: socketPath }]);
  });

  it('hands over a socket with no data or error listener of its own', async () => {
    const socketPath = path.join(tempDir(), 'S.agent');
    await unixServer(socketPath, GREETING);
    const { socket } = connected(await dialUpstream(socketPath, {}));
    expect(socket.listenerCount('data')).toBe(0);
    expect(socket.listenerCount('error')).toBe(0);
    expect(socket.listenerCount('connect')).toBe(0);
    // An error from now on is the caller's: with no listener of ours, it would not be swallowed.
    const seen = new Promise<Error>((resolve) => socket.once('error', resolve));
    socket.destroy(new Error('later failure'));
    expect((await seen).message).toBe('later failure');
  });

  it('passes ENOENT through without looking at the path', async () => {
    const outcome = await dialUpstream(path.join(tempDir(), 'S.missing'), {});
    expect(outcome).toEqual({ kind: 'failed', code: 'ENOENT' });
    expect(vi.mocked(stat)).not.toHaveBeenCalled();
  });

  it('passes ECONNREFUSED through for a socket nobody listens on, without reading it', async () => {
    const dir = tempDir();
    const live = path.join(dir, 'S.live');
    const stale = path.join(dir, 'S.stale');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(live, resolve));
    // A second name for the socket outlives the listener: a socket file that refuses.
    fs.linkSync(live, stale);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(fs.statSync(stale).isSocket()).toBe(true);

    expect(await dialUpstream(stale, {})).toEqual({ kind: 'failed', code: 'ECONNREFUSED' });
    expect(vi.mocked(stat)).toHaveBeenCalledTimes(1);
    expect(vi.mocked(open)).not.toHaveBeenCalled();
  });

  it('passes ECONNREFUSED through for a directory', async () => {
    expect(await dialUpstream(tempDir(), {})).toEqual({ kind: 'failed', code: 'ECONNREFUSED' });
    expect(vi.mocked(open)).not.toHaveBeenCalled();
  });
});

describe('a redirect file', () => {
  it('leads to the socket it names', async () => {
    const dir = tempDir();
    const target = path.join(dir, 'S.target');
    const server = await unixServer(target, GREETING);
    const file = path.join(dir, 'S.gpg-agent');
    fs.writeFileSync(file, `%Assuan%\nsocket=${target}\n`);

    const { socket, handshake } = connected(await dialUpstream(file, {}));
    expect(connectCalls()).toEqual([{ path: file }, { path: target }]);
    expect(handshake).toBeUndefined();
    expect(socket.listenerCount('data')).toBe(0);
    expect(await attach(socket, undefined).line()).toEqual(GREETING);
    expect(server.accepted()).toBe(1);
  });

  it('expands ${VAR} from the environment it is given', async () => {
    const dir = tempDir();
    await unixServer(path.join(dir, 'S.target'), GREETING);
    const file = path.join(dir, 'S.gpg-agent');
    fs.writeFileSync(file, '%Assuan%\nsocket=${AGENT_DIR}/S.target\n');

    connected(await dialUpstream(file, { AGENT_DIR: dir }));
    expect(await dialUpstream(file, {})).toEqual({ kind: 'failed', code: 'ENOENT' });
  });

  it('follows one redirect only, as libassuan does', async () => {
    const dir = tempDir();
    await unixServer(path.join(dir, 'S.target'), GREETING);
    const second = path.join(dir, 'S.second');
    fs.writeFileSync(second, `%Assuan%\nsocket=${path.join(dir, 'S.target')}\n`);
    const first = path.join(dir, 'S.first');
    fs.writeFileSync(first, `%Assuan%\nsocket=${second}\n`);

    // Reached directly, the second file would lead to the server; through the first, it is not read.
    connected(await dialUpstream(second, {}));
    expect(await dialUpstream(first, {})).toEqual({ kind: 'failed', code: 'ECONNREFUSED' });
  });

  it('reports a malformed file with its defect', async () => {
    const file = path.join(tempDir(), 'S.gpg-agent');
    fs.writeFileSync(file, '%Assuan%\nsocket=/tmp/x y\n');
    const outcome = await dialUpstream(file, {});
    expect(outcome.kind).toBe('invalidFile');
    const { error } = outcome as { error: SocketFileError };
    expect(error).toBeInstanceOf(SocketFileError);
    expect(error.defect).toBe('redirectWhitespace');
    expect(error.file).toBe(file);
  });

  it('reports a redirect file far over 511 bytes as too large', async () => {
    const file = path.join(tempDir(), 'S.gpg-agent');
    fs.writeFileSync(file, `%Assuan%\nsocket=/s\${${'V'.repeat(100_000)}}\n`);
    const outcome = await dialUpstream(file, {});
    expect(outcome).toMatchObject({ kind: 'invalidFile', error: { defect: 'redirectTooLarge' } });
  });
});

describe('the Windows emulation file', () => {
  it('connects to 127.0.0.1 at its port, and the nonce opens the server', async () => {
    const agent = await emulated({ form: 'windows', directory: tempDir() });
    const { socket, handshake } = connected(await dialUpstream(agent.file, {}));
    expect(connectCalls()).toEqual([{ path: agent.file }, { host: '127.0.0.1', port: agent.port }]);
    expect(socket.remoteAddress).toBe('127.0.0.1');
    expect(socket.remotePort).toBe(agent.port);
    expect(handshake?.form).toBe('windows');
    expect(socket.listenerCount('data')).toBe(0);
    expect(socket.listenerCount('error')).toBe(0);

    const reader = attach(socket, handshake);
    expect(await reader.line()).toEqual(GREETING);
    reader.send('NOP\n');
    expect(await reader.line()).toEqual(Buffer.from('OK\n'));

    const connection = await agent.nextConnection();
    expect(connection.nonceMatched).toBe(true);
    expect(connection.handshakeBytes).toEqual(agent.nonce);
    expect(connection.lines).toEqual([Buffer.from('NOP\n')]);
  });

  it('is dropped, without a byte, by the server when the nonce is wrong', async () => {
    const agent = await emulated({ form: 'windows', directory: tempDir() });
    const wrongNonce = Buffer.from(agent.nonce);
    wrongNonce[0]! ^= 0xff;
    // A stale file: the right port, a nonce from another run.
    fs.writeFileSync(agent.file, windowsSocketFile(agent.port, wrongNonce));

    const { socket, handshake } = connected(await dialUpstream(agent.file, {}));
    const reader = attach(socket, handshake);
    expect(await reader.line()).toBeUndefined();
    expect((await reader.closed()).unread).toEqual(Buffer.alloc(0));

    const connection = await agent.nextConnection();
    await connection.checked;
    expect(connection.nonceMatched).toBe(false);
    expect(connection.handshakeBytes).toEqual(wrongNonce);
  });

  it('is read again on every dial: a restarted agent on a new port is followed', async () => {
    const agent = await emulated({ form: 'windows', directory: tempDir() });
    const first = connected(await dialUpstream(agent.file, {}));
    expect(await attach(first.socket, first.handshake).line()).toEqual(GREETING);
    const oldPort = agent.port;

    await agent.restart();
    expect(agent.port).not.toBe(oldPort);
    const second = connected(await dialUpstream(agent.file, {}));
    expect(second.socket.remotePort).toBe(agent.port);
    expect(await attach(second.socket, second.handshake).line()).toEqual(GREETING);

    const connections = [await agent.nextConnection(), await agent.nextConnection()];
    expect(connections.map((c) => c.nonceMatched)).toEqual([true, true]);
    expect(connections[1]!.handshakeBytes).toEqual(agent.nonce);
    expect(vi.mocked(open)).toHaveBeenCalledTimes(2);
  });

  it('reports a refused port as ECONNREFUSED once the agent is gone', async () => {
    const dir = tempDir();
    const agent = await startEmulatedAgent({ form: 'windows', directory: dir });
    const content = fs.readFileSync(agent.file);
    await agent.close();
    // The file of an agent that died without removing it.
    fs.writeFileSync(agent.file, content);
    expect(await dialUpstream(agent.file, {})).toEqual({ kind: 'failed', code: 'ECONNREFUSED' });
  });

  it('relays to a real gpg-agent behind it', async () => {
    const home = await createAgentHome();
    cleanups.push(() => home.cleanup());
    const agent = await emulated({ form: 'windows', directory: tempDir(), relayTo: home.socket });

    const { socket, handshake } = connected(await dialUpstream(agent.file, {}));
    const reader = attach(socket, handshake);
    expect((await reader.line())?.toString()).toMatch(/^OK Pleased to meet you/);
    reader.send('GETINFO pid\n');
    expect((await reader.line())?.toString()).toBe(`D ${await home.pid()}\n`);
    expect((await reader.line())?.toString()).toBe('OK\n');
  });
});

describe('the Cygwin emulation file', () => {
  it('runs the nonce, echo and credentials exchange, then Assuan', async () => {
    const agent = await emulated({ form: 'cygwin', directory: tempDir() });
    const { socket, handshake } = connected(await dialUpstream(agent.file, {}));
    expect(socket.remoteAddress).toBe('127.0.0.1');
    expect(handshake?.form).toBe('cygwin');
    expect(handshake?.needsReply).toBe(true);

    const reader = attach(socket, handshake);
    expect(await reader.line()).toEqual(GREETING);
    reader.send('BYE\n');
    expect(await reader.line()).toEqual(Buffer.from('OK closing connection\n'));

    const connection = await agent.nextConnection();
    const pidAndZeros = Buffer.alloc(8);
    pidAndZeros.writeInt32LE(process.pid, 0);
    expect(connection.nonceMatched).toBe(true);
    expect(connection.credentials).toEqual(pidAndZeros);
    expect(connection.handshakeBytes).toEqual(Buffer.concat([agent.nonce, pidAndZeros]));
  });

  it('fails the handshake when the server drops a wrong nonce', async () => {
    const agent = await emulated({ form: 'cygwin', directory: tempDir() });
    const stale = fs.readFileSync(agent.file);
    await agent.restart();
    // The old nonce at the new port.
    const words = stale.toString('latin1').replace(/^!<socket >\d+/, `!<socket >${agent.port}`);
    fs.writeFileSync(agent.file, Buffer.from(words, 'latin1'));

    const { socket, handshake } = connected(await dialUpstream(agent.file, {}));
    const result = await attach(socket, handshake).closed();
    expect(result).toEqual({ failure: 'closedBeforeEcho', unread: Buffer.alloc(0) });
    const connection = await agent.nextConnection();
    await connection.checked;
    expect(connection.nonceMatched).toBe(false);
    expect(connection.credentials).toBeUndefined();
  });

  it('relays every byte value both ways to a Unix socket behind it', async () => {
    const dir = tempDir();
    const behind = path.join(dir, 'S.behind');
    await unixServer(behind, GREETING, (socket, chunk) => socket.write(chunk));
    const agent = await emulated({ form: 'cygwin', directory: dir, relayTo: behind });

    const { socket, handshake } = connected(await dialUpstream(agent.file, {}));
    const reader = attach(socket, handshake);
    expect(await reader.line()).toEqual(GREETING);
    const everyByte = Buffer.from(Array.from({ length: 256 }, (_, value) => value));
    reader.send(everyByte);
    expect(await reader.bytes(256)).toEqual(everyByte);
  });
});

describe('isSshAgentSocketPath', () => {
  it('tells gpg-agent ssh socket by its name', () => {
    expect(isSshAgentSocketPath('/run/user/1000/gnupg/S.gpg-agent.ssh')).toBe(true);
    expect(isSshAgentSocketPath('S.gpg-agent.ssh')).toBe(true);
    expect(isSshAgentSocketPath('C:\\Users\\me\\AppData\\Local\\gnupg\\S.gpg-agent.ssh')).toBe(true);
    expect(isSshAgentSocketPath('/run/user/1000/gnupg/S.gpg-agent')).toBe(false);
    expect(isSshAgentSocketPath('/run/user/1000/gnupg/S.gpg-agent.extra')).toBe(false);
    expect(isSshAgentSocketPath('/run/S.gpg-agent.ssh/S.gpg-agent')).toBe(false);
    expect(isSshAgentSocketPath('/run/x.S.gpg-agent.ssh')).toBe(false);
  });
});
