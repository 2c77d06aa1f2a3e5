/**
 * `--max-crypto N` against a scripted agent that holds each key operation until the test answers it: at most N
 * reach the agent at once, the rest wait (in awaitingCryptoSlot) in arrival order, and a slot is given back when the
 * answer ends, or when its session ends (a client that leaves while waiting, or while holding one).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent, type ScriptedConnection } from '../support/scriptedAgent.js';
import { greetedSession, until } from '../support/sessions.js';
import type { RawClient } from '../support/assuanClient.js';

let agent: ScriptedAgent;
let proxy: TestProxy;

beforeEach(async () => {
  agent = await createScriptedAgent();
  // Tests leave sessions open: closing the proxy then waits its drain time, kept short here.
  proxy = await startTestProxy({ upstream: agent.socket, maxCrypto: 1, warmUpSessions: 0, drainTimeoutMs: 2_000 });
});
afterEach(async () => {
  await proxy?.close();
  await agent?.close();
});

const statesNow = () => proxy.proxy.sessions().map((s) => `${s.sessionId}:${s.state}`).sort();
const received = () => agent.journal.filter((entry) => entry.startsWith('recv PK'));
type Greeted = { client: RawClient; upstream: ScriptedConnection };

/** One session whose key operation holds the slot (the agent has read it), then `waiting` more queued behind it. */
async function holderAndWaiting<W extends string[]>(waiting: [...W]): Promise<[Greeted, ...{ [K in keyof W]: Greeted }]> {
  const holder = await greetedSession(proxy.socket, agent);
  holder.client.write('PKSIGN\n');
  expect(await holder.upstream.readLine()).toBe('PKSIGN');
  const queued: Greeted[] = [];
  for (const command of waiting) {
    const session = await greetedSession(proxy.socket, agent);
    session.client.write(`${command}\n`);
    queued.push(session);
    await until(() => statesNow().filter((s) => s.endsWith(':awaitingCryptoSlot')).length === queued.length);
  }
  return [holder, ...queued] as [Greeted, ...{ [K in keyof W]: Greeted }];
}

describe('--max-crypto 1', () => {
  it('lets one key operation reach the agent at a time, the others wait in arrival order', async () => {
    const sessions: Array<{ client: RawClient; upstream: ScriptedConnection }> = [];
    for (let i = 0; i < 3; i++) sessions.push(await greetedSession(proxy.socket, agent));
    sessions[0]!.client.write('PKSIGN\n');
    expect(await sessions[0]!.upstream.readLine()).toBe('PKSIGN');
    sessions[1]!.client.write('PKDECRYPT\n');
    sessions[2]!.client.write('PKSIGN\n');
    await until(() => statesNow().filter((s) => s.endsWith(':awaitingCryptoSlot')).length === 2);
    // Other commands are not held.
    sessions[2]!.client.write('NOP\n');
    expect(received()).toEqual(['recv PKSIGN']);
    sessions[0]!.upstream.send('D sig\nOK\n');
    expect(await sessions[0]!.client.readLine()).toBe('D sig');
    expect(await sessions[0]!.client.readLine()).toBe('OK');
    // The slot goes to the one that asked first.
    expect(await sessions[1]!.upstream.readLine()).toBe('PKDECRYPT');
    expect(statesNow()).toContain(`${proxy.proxy.sessions()[2]!.sessionId}:awaitingCryptoSlot`);
    sessions[1]!.upstream.send('ERR 67108881 No secret key\n');
    expect(await sessions[1]!.client.readLine()).toMatch(/^ERR 67108881/);
    expect(await sessions[2]!.upstream.readLine()).toBe('PKSIGN');
    sessions[2]!.upstream.send('OK\n');
    expect(await sessions[2]!.client.readLine()).toBe('OK');
    // Its pipelined NOP follows only then.
    expect(await sessions[2]!.upstream.readLine()).toBe('NOP');
  });

  it('a session that ends holding the slot, or waiting for it, gives it back', async () => {
    const [first, second, third] = await holderAndWaiting(['PKSIGN', 'PKSIGN']);
    // The second's agent connection is lost while it waits: that session fails, and leaves the queue. (A client's
    // close reads as a half-close on a Unix socket: its command would still go, as it would directly.)
    second.upstream.destroy();
    expect(await second.client.readLine()).toMatch(/^ERR \d+ End of file/);
    await until(() => proxy.proxy.sessions().length === 2);
    // The first's is lost while its command holds the slot: the slot comes back, and the third goes on.
    first.upstream.destroy();
    expect(await third.upstream.readLine()).toBe('PKSIGN');
    expect(received()).toEqual(['recv PKSIGN', 'recv PKSIGN']);
  });

  it('a client that half-closes while waiting still has its command sent, then its EOF', async () => {
    const [first, second] = await holderAndWaiting(['PKDECRYPT']);
    second.client.socket.end();
    first.upstream.send('OK\n');
    expect(await second.upstream.readLine()).toBe('PKDECRYPT');
    second.upstream.send('OK\n');
    expect(await second.client.readLine()).toBe('OK');
    await second.upstream.closed;
  });
});

describe('--max-crypto 1, with the server draining or the agent speaking unasked', () => {
  it('a command waiting for a slot when the server drains still runs, then its session closes', async () => {
    const [first, second] = await holderAndWaiting(['PKSIGN']);
    const closing = proxy.proxy.close();
    first.upstream.send('OK\n');
    expect(await first.client.readLine()).toBe('OK');
    expect(await second.upstream.readLine()).toBe('PKSIGN');
    second.upstream.send('OK\n');
    expect(await second.client.readLine()).toBe('OK');
    await closing;
  });

  it('an agent line while the command waits for a slot fails that session only', async () => {
    const [first, second] = await holderAndWaiting(['PKSIGN']);
    second.upstream.send('S PROGRESS x\n');
    expect(await second.client.readLine()).toMatch(/^ERR \d+ Invalid IPC response/);
    first.upstream.send('OK\n');
    expect(await first.client.readLine()).toBe('OK');
    expect(received()).toEqual(['recv PKSIGN']);
  });
});

describe('--max-crypto with --confirm', () => {
  it('an approved use queues for a slot only once approved: no slot is held while the person decides', async () => {
    await proxy.close();
    const answers: Array<(verdict: 'approved') => void> = [];
    proxy = await startTestProxy({
      upstream: agent.socket,
      maxCrypto: 1,
      drainTimeoutMs: 2_000,
      confirm: ['sign'],
      confirmPrompt: () => new Promise((resolve) => answers.push(resolve)),
      warmUpSessions: 0,
    });
    const asking = await greetedSession(proxy.socket, agent);
    const decrypting = await greetedSession(proxy.socket, agent);
    asking.client.write('PKSIGN\n');
    await until(() => answers.length === 1);
    // Nothing is asked about decryption here: it takes the free slot while the person thinks.
    decrypting.client.write('PKDECRYPT\n');
    expect(await decrypting.upstream.readLine()).toBe('PKDECRYPT');
    answers[0]!('approved');
    await until(() => statesNow().some((s) => s.endsWith(':awaitingCryptoSlot')));
    decrypting.upstream.send('OK\n');
    expect(await decrypting.client.readLine()).toBe('OK');
    expect(await asking.upstream.readLine()).toBe('PKSIGN');
  });
});
