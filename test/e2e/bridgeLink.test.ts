/**
 * The link machine, every transition, with real transport processes and XState's SimulatedClock for its timers:
 * transports that cannot start, exit early, never greet, stop answering PINGs or stop during a shutdown.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { RawClient } from '../support/assuanClient.js';
import { NOISY_TRANSPORT, startTestForward, type TestForward } from '../support/forward.js';
import { createAgentHome, generateKey, makeTempDir, type AgentHome, type KeyInfo } from '../support/gnupg.js';
import { until } from '../support/sessions.js';

const TIMEOUTS = { handshakeMs: 30_000, pingIntervalMs: 15_000, pingTimeoutMs: 10_000, closeGraceMs: 1_000 };
let agent: AgentHome;
let key: KeyInfo;
let dir: string;
let links = 0;
const open: TestForward[] = [];

beforeAll(async () => {
  agent = await createAgentHome();
  key = await generateKey(agent.home, 'Link <link@example.org>', 'future-default', '');
  dir = makeTempDir('link.');
});
afterAll(async () => {
  for (const link of open) await link.close();
  await agent?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function linkWith(options: { transport?: readonly string[]; maxAttempts?: number; clock?: SimulatedClock }) {
  const remoteSocket = path.join(dir, `far-${++links}`, 'S.gpg-agent');
  const clock = options.clock ?? new SimulatedClock();
  const link = await startTestForward({
    upstream: agent.socket,
    remoteSocket,
    timeouts: TIMEOUTS,
    ...(options.transport ? { transport: options.transport } : {}),
    ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
    proxy: { clock },
  });
  open.push(link);
  const state = () => link.forward.state();
  return { link, clock, remoteSocket, state, reach: (wanted: string) => until(() => state() === wanted) };
}

describe('the link machine', () => {
  it('a transport command that cannot be started: the link fails at once, without retrying', async () => {
    const { link } = await linkWith({ transport: [path.join(dir, 'no-such-transport')] });
    expect(await link.forward.done).toBe('failed');
    expect(link.forward.failure()).toEqual({ reason: 'spawnFailed', code: 'ENOENT' });
  });

  it('a transport that exits before the link is up is started again after a delay, and given up after the last attempt', async () => {
    const { link, clock, reach } = await linkWith({ transport: ['sh', '-c', 'exit 3'], maxAttempts: 2 });
    await reach('reconnecting');
    expect(link.forward.failure()).toEqual({ reason: 'linkDown', cause: 'the transport exited with code 3' });
    clock.increment(499);
    expect(link.forward.state()).toBe('reconnecting');
    clock.increment(1);
    expect(await link.forward.done).toBe('failed');
    expect(link.logs.filter((r) => r.msg === 'link spawning')).toHaveLength(2);
  });

  it('no banner within the handshake timeout: the transport is dropped; a shutdown while waiting to retry ends the link', async () => {
    const { link, clock, state, reach } = await linkWith({ transport: ['sh', '-c', 'exec cat > /dev/null'] });
    await reach('handshaking');
    const first = link.forward.transportPid()!;
    clock.increment(TIMEOUTS.handshakeMs - 1);
    expect(state()).toBe('handshaking');
    clock.increment(1);
    expect(state()).toBe('reconnecting');
    expect(link.forward.failure()).toEqual({ reason: 'handshakeTimeout' });
    await until(() => !isRunning(first));
    expect(await link.close()).toBe('closed');
  });

  it('a shutdown while handshaking ends the transport politely: its input is closed, and it exits', async () => {
    const { link, reach } = await linkWith({ transport: ['sh', '-c', 'exec cat > /dev/null'] });
    await reach('handshaking');
    const closing = link.close();
    // A second request changes nothing.
    expect(link.forward.state()).toBe('closing');
    void link.forward.close();
    expect(await closing).toBe('closed');
    expect(link.logs.filter((r) => r.msg === 'link closed')).toHaveLength(1);
  });

  it('a shutdown before the transport has started ends the link as soon as it has', async () => {
    const { link } = await linkWith({});
    expect(link.forward.state()).toBe('spawning');
    expect(await link.close()).toBe('closed');
  });

  it('PINGs keep the link up; an unanswered one drops it, and it is started again; a shutdown with no session closes it', async () => {
    const { link, clock, state, remoteSocket } = await linkWith({ transport: NOISY_TRANSPORT });
    await until(() => state() === 'up.quiet');
    clock.increment(TIMEOUTS.pingIntervalMs);
    await until(() => state() === 'up.quiet');
    expect(link.logs).toContainEqual(expect.objectContaining({ msg: 'link', state: 'up.pinging' }));
    // The far side stops: the transport passes nothing on.
    const stopped = link.forward.transportPid()!;
    process.kill(stopped, 'SIGSTOP');
    clock.increment(TIMEOUTS.pingIntervalMs);
    expect(state()).toBe('up.pinging');
    clock.increment(TIMEOUTS.pingTimeoutMs);
    expect(state()).toBe('reconnecting');
    expect(link.forward.failure()).toEqual({ reason: 'pingTimeout' });
    process.kill(stopped, 'SIGCONT');
    clock.increment(500);
    await until(() => state() === 'up.quiet');
    await until(() => fs.existsSync(remoteSocket));
    const client = await RawClient.connect(remoteSocket);
    expect(await client.readLine()).toMatch(/^OK /);
    expect(await client.request('NOP')).toEqual(['OK']);
    client.write('BYE\n');
    expect(await client.rest()).toEqual(['OK closing connection']);
    await until(() => link.forward.sessionCount === 0);
    expect(await link.close()).toBe('closed');
  });

  it('a shutdown with a command in flight drains: the session is closed at the drain timeout, then the transport ends', async () => {
    const { link, clock, state, remoteSocket } = await linkWith({ transport: NOISY_TRANSPORT });
    await until(() => state() === 'up.quiet');
    await until(() => fs.existsSync(remoteSocket));
    const client = await pkdecryptWaiting(remoteSocket);
    const closing = link.close();
    expect(state()).toBe('draining');
    void link.forward.close();
    clock.increment(10_000);
    expect(await client.rest()).toEqual([expect.stringMatching(/^ERR /)]);
    expect(await closing).toBe('closed');
  });

  it('the transport ends while draining: the link is closed', async () => {
    const { link, state, remoteSocket } = await linkWith({ transport: NOISY_TRANSPORT });
    await until(() => state() === 'up.quiet');
    await until(() => fs.existsSync(remoteSocket));
    const client = await pkdecryptWaiting(remoteSocket);
    const closing = link.close();
    expect(state()).toBe('draining');
    process.kill(link.forward.transportPid()!, 'SIGKILL');
    expect(await closing).toBe('closed');
    expect(await client.rest()).toEqual([expect.stringMatching(/^ERR 67109123 .* the link to the agent/)]);
  });

  it('a far side that stops answering during a shutdown: the transport is ended at the close grace', async () => {
    const { link, clock, state, remoteSocket } = await linkWith({ transport: NOISY_TRANSPORT });
    await until(() => state() === 'up.quiet');
    await until(() => fs.existsSync(remoteSocket));
    const client = await pkdecryptWaiting(remoteSocket);
    const transport = link.forward.transportPid()!;
    process.kill(transport, 'SIGSTOP');
    const closing = link.close();
    clock.increment(10_000);
    expect(state()).toBe('closing');
    clock.increment(TIMEOUTS.closeGraceMs);
    expect(await closing).toBe('closed');
    process.kill(transport, 'SIGCONT');
    client.destroy();
  });
});

async function pkdecryptWaiting(socket: string): Promise<RawClient> {
  const client = await RawClient.connect(socket);
  expect(await client.readLine()).toMatch(/^OK /);
  expect((await client.request(`SETKEY ${key.keygrip}`)).at(-1)).toBe('OK');
  expect(await client.request('PKDECRYPT')).toEqual(['S INQUIRE_MAXLEN 4096', 'INQUIRE CIPHERTEXT']);
  return client;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
