/** Ways into a session that several test files need: greeted, lingering after BYE, and a wait without timers. */
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { RawClient } from './assuanClient.js';
import { makeTempDir } from './gnupg.js';
import type { ScriptedAgent, ScriptedConnection } from './scriptedAgent.js';

/** Resolves once `condition` holds, re-checking after each turn of the event loop (no timers). */
export async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setImmediate(r));
}

/**
 * A client sending `text` one byte per simulated second (`clock` drives the proxy's timers) for as long as its
 * session waits for a command. Returns how many bytes it sent before the session stopped waiting.
 */
export async function sendSlowly(
  client: RawClient,
  text: string,
  proxy: { sessions(): Array<{ state: string; bytesFromClient: number }> },
  clock: { increment(ms: number): void },
): Promise<number> {
  const session = () => proxy.sessions()[0];
  const waiting = () => ['ready', 'bufferingCommand'].includes(session()?.state ?? '');
  let sent = 0;
  for (const byte of text) {
    if (!waiting()) break;
    client.write(byte);
    sent++;
    await until(() => !waiting() || session()!.bytesFromClient === sent);
    clock.increment(1_000);
  }
  return sent;
}

/**
 * Awaits `pending` while `clock` (the proxy's simulated clock) moves 10 ms per turn of the event loop, but only
 * while `timeShouldPass()`: e.g. while a session waits to dial a busy agent again, whose retry runs on that clock.
 */
export async function whileTimePasses<T>(
  clock: { increment(ms: number): void },
  timeShouldPass: () => boolean,
  pending: Promise<T>,
): Promise<T> {
  let settled = false;
  const result = pending.finally(() => {
    settled = true;
  });
  while (!settled) {
    await new Promise((r) => setImmediate(r));
    if (!settled && timeShouldPass()) clock.increment(10);
  }
  return result;
}

/** Runs `during` with the process stopped (SIGSTOP), and lets it run on (SIGCONT) afterwards, whatever happens. */
export async function whileStopped<T>(pid: number, during: () => Promise<T>): Promise<T> {
  process.kill(pid, 'SIGSTOP');
  try {
    return await during();
  } finally {
    process.kill(pid, 'SIGCONT');
  }
}

/** A client connected through the proxy and greeted by a fresh scripted connection. */
export async function greetedSession(
  proxySocket: string,
  agent: ScriptedAgent,
  greeting = 'OK hi',
): Promise<{ client: RawClient; upstream: ScriptedConnection }> {
  const client = await RawClient.connect(proxySocket);
  const upstream = await agent.nextConnection();
  upstream.send(`${greeting}\n`);
  const line = await client.readLine();
  if (line !== greeting) throw new Error(`expected the greeting, got ${line}`);
  return { client, upstream };
}

/**
 * A session after BYE whose client and agent both keep their side open: it can only wait in `closing`
 * (until its close grace, or a shutdown).
 */
export async function lingeringAfterBye(proxySocket: string, agent: ScriptedAgent): Promise<{ client: net.Socket; upstream: ScriptedConnection }> {
  const client = net.connect({ path: proxySocket, allowHalfOpen: true });
  client.on('error', () => {});
  const upstream = await agent.nextConnection();
  upstream.holdOpenAfterEof();
  upstream.send('OK hi\n');
  client.write('BYE\n');
  await upstream.readLine();
  upstream.send('OK closing connection\n');
  return { client, upstream };
}

/** A client socket that never reads: what the proxy sends it stays unread, so its close is a reset. */
export async function silentClient(proxySocket: string): Promise<net.Socket> {
  const socket = net.connect({ path: proxySocket });
  socket.pause();
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  return socket;
}

/** A socket path where something is already listening (another proxy, say); `release()` frees and removes it. */
export async function liveSocketPath(): Promise<{ socket: string; release(): void }> {
  const dir = makeTempDir('live.');
  const socket = path.join(dir, 'S.gpg-agent');
  const server = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(socket, r));
  return {
    socket,
    release() {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
