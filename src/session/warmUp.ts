/**
 * Warms the whole session path at start. gpg runs seconds apart, so a fresh proxy meets its first sessions with
 * its code not yet compiled by V8: the machine, and as much the endpoints, the intake, the effects and Node's
 * socket code under them. Before the proxy's socket accepts anyone, throwaway sessions run a gpg-like exchange
 * over real Unix sockets: a client of our own, a Session, and a stand-in agent of a few lines, all inside a
 * private temporary directory removed afterwards. The user's agent is never contacted.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { LineFramer } from '../protocol/framer.js';
import type { SessionTimeouts } from './effects.js';
import { Session, type SessionSummary } from './session.js';

/** One gpg operation's worth of lines: options, queries with status and data, a data INQUIRE, a no-data INQUIRE. */
const CLIENT_SCRIPT = [
  'RESET\n',
  'OPTION ttyname=/dev/pts/0\n',
  'OPTION lc-ctype=C.UTF-8\n',
  'GETINFO version\n',
  'OPTION allow-pinentry-notify\n',
  'HAVEKEY 0000000000000000000000000000000000000000\n',
  'KEYINFO 0000000000000000000000000000000000000000\n',
  'PKDECRYPT\n',
  'D (7:enc-val(3:ecc(1:e4:abcd)))\nEND\n',
  'GET_PASSPHRASE --data X X X X\n',
  'END\n',
  '# done\nBYE\n',
].map((line) => Buffer.from(line, 'latin1'));

/** The stand-in agent: greets, answers a data INQUIRE, a no-data INQUIRE, and everything else with S, D and OK. */
function answer(line: string): string {
  if (line.startsWith('PKDECRYPT')) return 'INQUIRE CIPHERTEXT\n';
  if (line.startsWith('GET_PASSPHRASE')) return 'INQUIRE PINENTRY_LAUNCHED 1 curses 1.2 -\n';
  if (line === 'END' || line.startsWith('D ') || line.startsWith('#')) return line === 'END' ? 'D x\nOK\n' : '';
  if (line === 'BYE') return 'OK closing connection\n';
  return 'S PROGRESS x\nD y\nOK\n';
}

function standInAgent(socketPath: string): Promise<net.Server> {
  const server = net.createServer((socket) => {
    const framer = new LineFramer();
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      framer.push(chunk);
      for (let item = framer.next(); item !== undefined; item = framer.next()) {
        if (item.kind !== 'line') continue;
        const line = item.bytes.toString('latin1').replace(/\r?\n$/, '');
        const reply = answer(line);
        if (reply) socket.write(reply);
        if (line === 'BYE') socket.end();
      }
    });
    socket.write('OK warm-up agent\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve(server));
  });
}

/** One client: sends each step once the answer to the one before has arrived, and waits for the close. */
function runClient(socketPath: string): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    const framer = new LineFramer();
    let step = 0;
    socket.on('error', () => socket.destroy());
    socket.on('close', () => resolve());
    socket.on('data', (chunk: Buffer) => {
      framer.push(chunk);
      for (let item = framer.next(); item !== undefined; item = framer.next()) {
        if (item.kind !== 'line') continue;
        const first = item.bytes.subarray(0, 3).toString('latin1');
        // A final answer or an INQUIRE hands the turn to us.
        if ((first.startsWith('OK') || first === 'ERR' || first === 'INQ') && step < CLIENT_SCRIPT.length) socket.write(CLIENT_SCRIPT[step++]!);
      }
    });
  });
}

/** sun_path holds 108 bytes, its terminating NUL included. */
const MAX_SOCKET_PATH_BYTES = 107;

let warmed = false;

/** Warms once per process: compiled code is the process's, so a second proxy in it gains nothing. */
export async function warmUpSessionsOnce(timeouts: SessionTimeouts, sessions: number): Promise<void> {
  if (warmed || sessions === 0) return;
  warmed = true;
  await warmUpSessions(timeouts, sessions);
}

/**
 * Runs `sessions` throwaway sessions one after the other and returns how each ended. Never fails the start: a
 * warm-up that cannot run (no temp dir) leaves the proxy only as cold as it was.
 */
export async function warmUpSessions(timeouts: SessionTimeouts, sessions: number): Promise<SessionSummary[]> {
  const ended: SessionSummary[] = [];
  let dir: string | undefined;
  let agent: net.Server | undefined;
  let listener: net.Server | undefined;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'assuan-proxy-warm-'));
    const agentPath = path.join(dir, 'agent');
    const proxyPath = path.join(dir, 'proxy');
    // Node cuts a longer socket path short without a word, and the cut one would lie outside the private directory.
    if (Buffer.byteLength(agentPath) > MAX_SOCKET_PATH_BYTES) return ended;
    const logger = pino({ level: 'silent' });
    agent = await standInAgent(agentPath);
    let nextId = 1;
    let lastEnded: () => void = () => {};
    const allEnded = new Promise<void>((resolve) => (lastEnded = resolve));
    const onEnd = (summary: SessionSummary) => {
      ended.push(summary);
      if (ended.length === sessions) lastEnded();
    };
    listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
      const sessionId = `warm-up-${nextId++}`;
      new Session({ sessionId, client, upstream: { path: agentPath, daemon: 'gpg-agent', env: {} }, timeouts, logger, maxBufferedClientBytes: 64 * 1024, onEnd }).start();
    });
    await new Promise<void>((resolve, reject) => {
      listener!.once('error', reject);
      listener!.listen(proxyPath, resolve);
    });
    for (let i = 0; i < sessions; i++) await runClient(proxyPath);
    // The last session ends once the stand-in agent's side has closed too; a start never waits past the close grace.
    await Promise.race([allEnded, new Promise((resolve) => setTimeout(resolve, timeouts.closeGraceMs).unref())]);
  } catch {
    // Nothing to warm with; the proxy works the same, only colder.
  } finally {
    await Promise.all([agent, listener].map((server) => (server?.listening ? new Promise((r) => server.close(r)) : undefined)));
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
  return ended;
}
