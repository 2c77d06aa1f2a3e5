/** Session limit, the idle and response timeouts (on a simulated clock), and 200 clients arriving at once. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { RawClient } from '../support/assuanClient.js';
import { createAgentHome, type AgentHome } from '../support/gnupg.js';
import { sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent } from '../support/scriptedAgent.js';
import { greetedSession, sendSlowly, until, whileStopped, whileTimePasses } from '../support/sessions.js';
import { transitionRecorder } from '../../src/machineTools/trace.js';

let scripted: ScriptedAgent;
const proxies: TestProxy[] = [];

beforeAll(async () => {
  scripted = await createScriptedAgent();
});
afterAll(async () => {
  for (const proxy of proxies) await proxy.close();
  await scripted?.close();
});

async function proxyWith(options: Omit<Parameters<typeof startTestProxy>[0], 'upstream'> & { upstream?: string }): Promise<TestProxy> {
  const proxy = await startTestProxy({ upstream: scripted.socket, ...options });
  proxies.push(proxy);
  return proxy;
}

describe('session limit', () => {
  it('past --max-sessions a connection gets one ERR and a close, is logged, and a freed slot is used again', async () => {
    const proxy = await proxyWith({ maxSessions: 2 });
    const first = await greetedSession(proxy.socket, scripted);
    const second = await greetedSession(proxy.socket, scripted);
    const refused = await RawClient.connect(proxy.socket);
    expect(await refused.rest()).toEqual(['ERR 67109047 Limit reached <assuan-proxy> - the proxy serves at most 2 sessions at once']);
    expect(proxy.logs).toContainEqual(expect.objectContaining({ msg: 'session limit reached: connection refused', maxSessions: 2, openSessions: 2 }));
    expect(proxy.proxy.sessionCount).toBe(2);

    first.client.write('BYE\n');
    expect(await first.upstream.readLine()).toBe('BYE');
    first.upstream.send('OK closing connection\n');
    await first.client.closed;
    await until(() => proxy.proxy.sessionCount === 1);
    const third = await greetedSession(proxy.socket, scripted);
    third.client.write('NOP\n');
    expect(await third.upstream.readLine()).toBe('NOP');
    third.upstream.send('OK\n');
    expect(await third.client.response()).toEqual(['OK']);
    second.client.destroy();
    third.client.destroy();
    await sessionsDrained(proxy.proxy);
  });
});

describe('idle sessions hold no slot forever (simulated clock, real gpg-agent)', () => {
  let agent: AgentHome;
  beforeAll(async () => {
    // A listen queue of one: most of 256 sessions dialling at once find the agent busy and retry, as on a loaded
    // machine (where CI once waited forever for a greeting: the retry's delay ran on the simulated clock).
    agent = await createAgentHome({ agentConf: 'listen-backlog 1\n' });
  });
  afterAll(async () => {
    await agent?.cleanup();
  });

  it('300 clients that each sent a NOP and then nothing: the 256 served are reclaimed at the idle limit, each told why; then new clients are served', async () => {
    const clock = new SimulatedClock();
    // A busy agent (its listen queue full) is dialled again after a delay on this clock: time passes while any
    // session waits for that, or its client would wait for a greeting forever.
    let backingOff = 0;
    const proxy = await proxyWith({
      upstream: agent.socket,
      clock,
      idleTimeoutMs: 60_000,
      inspect: transitionRecorder(({ key }) => {
        if (key === 'session.connecting.reaching.dialing|AGENT_CONNECT_FAILED[agentBusy]') backingOff++;
        if (key === 'session.connecting.reaching.backingOff|after retryBackoff') backingOff--;
      }),
    });
    const clients = await Promise.all(Array.from({ length: 300 }, () => RawClient.connect(proxy.socket)));
    const greetings = await whileTimePasses(clock, () => backingOff > 0, Promise.all(clients.map((c) => c.readLine())));
    const served = clients.filter((_, i) => greetings[i]!.startsWith('OK Pleased'));
    expect(served).toHaveLength(256);
    for (const c of served) c.write('NOP\n');
    expect(await Promise.all(served.map((c) => c.readLine()))).toEqual(served.map(() => 'OK'));
    // Past the first command, the old idle timer no longer ran: these sessions were open for good.
    clock.increment(59_999);
    expect(proxy.proxy.sessionCount).toBe(256);
    const refused = await RawClient.connect(proxy.socket);
    expect(await refused.rest()).toEqual(['ERR 67109047 Limit reached <assuan-proxy> - the proxy serves at most 256 sessions at once']);
    clock.increment(1);
    const told = await Promise.all(served.map((c) => c.rest()));
    expect(new Set(told.map((lines) => lines.join('|')))).toEqual(new Set(['ERR 67108926 Timeout <assuan-proxy> - no command for 60 s (the idle limit); closing']));
    await sessionsDrained(proxy.proxy);
    const fresh = await RawClient.connect(proxy.socket);
    expect(await fresh.readLine()).toMatch(/^OK Pleased/);
    expect(await fresh.request('GETINFO version')).toEqual(['D 2.2.40', 'OK']);
    fresh.destroy();
    for (const c of clients) c.destroy();
    await sessionsDrained(proxy.proxy);
  });

  it('an INQUIRE left unanswered past --inquiry-timeout: the client is told, the session closes, the agent answers others', async () => {
    const clock = new SimulatedClock();
    const proxy = await proxyWith({ upstream: agent.socket, clock, inquiryTimeoutMs: 300_000 });
    const client = await RawClient.connect(proxy.socket);
    expect(await client.readLine()).toMatch(/^OK Pleased/);
    expect(await client.request('PKDECRYPT')).toEqual(['S INQUIRE_MAXLEN 4096', 'INQUIRE CIPHERTEXT']);
    // A person typing: minutes pass, and the idle limit (60 s) does not apply inside an INQUIRE.
    clock.increment(299_999);
    expect(proxy.proxy.sessions()[0]?.state).toBe('bufferingInquire');
    clock.increment(1);
    expect(await client.rest()).toEqual(['ERR 67108926 Timeout <assuan-proxy> - the INQUIRE was not answered within 300 s; closing']);
    await sessionsDrained(proxy.proxy);
    expect(proxy.logs).toContainEqual(expect.objectContaining({ msg: 'session ended', failure: { reason: 'inquiryTimeout' } }));
    const other = await RawClient.connect(proxy.socket);
    expect(await other.readLine()).toMatch(/^OK Pleased/);
    expect(await other.request('GETINFO version')).toEqual(['D 2.2.40', 'OK']);
    other.destroy();
  });
});

describe('a client that stops reading (simulated clock)', () => {
  /** A session whose client reads nothing while an answer far larger than the socket buffers is sent: the agent is paused. */
  async function stalledOnAnswer(options: { maxSessions?: number }, answer: string) {
    const clock = new SimulatedClock();
    const proxy = await proxyWith({ clock, idleTimeoutMs: 10_000, ...options });
    const { client, upstream } = await greetedSession(proxy.socket, scripted);
    client.socket.pause();
    client.write('EXPORT_KEY 00\n');
    await upstream.readLine();
    upstream.send(answer);
    await until(() => proxy.proxy.sessions()[0]?.agentPaused === true);
    return { clock, proxy, client };
  }

  it('holds its slot no longer than the idle limit: the session ends with the reason logged, and the slot is free again', async () => {
    const { clock, proxy, client } = await stalledOnAnswer({ maxSessions: 1 }, `D ${'x'.repeat(990)}\n`.repeat(4000));
    clock.increment(9_999);
    expect(proxy.proxy.sessionCount).toBe(1);
    clock.increment(1);
    await sessionsDrained(proxy.proxy);
    expect(proxy.logs).toContainEqual(expect.objectContaining({ msg: 'session ended', outcome: 'failed', failure: { reason: 'clientStalled' } }));
    client.destroy();
    const next = await greetedSession(proxy.socket, scripted);
    next.client.write('NOP\n');
    expect(await next.upstream.readLine()).toBe('NOP');
    next.upstream.send('OK\n');
    expect(await next.client.response()).toEqual(['OK']);
    next.client.destroy();
    await sessionsDrained(proxy.proxy);
  });

  it('reading again in time keeps the session: the rest of the answer arrives', async () => {
    const lines = 4000;
    const { clock, proxy, client } = await stalledOnAnswer({}, `${`D ${'y'.repeat(990)}\n`.repeat(lines)}OK\n`);
    clock.increment(9_000);
    client.socket.resume();
    const answer = await client.response();
    expect(answer).toHaveLength(lines + 1);
    // Well past the first stall's limit: reading again cancelled it.
    clock.increment(9_000);
    expect(proxy.proxy.sessions()[0]?.state).toBe('ready');
    client.destroy();
    await sessionsDrained(proxy.proxy);
  });
});

describe('timeouts (simulated clock)', () => {
  it('idle: a client that sends no command is told, then closed after --idle-timeout, with a logged reason', async () => {
    const clock = new SimulatedClock();
    const proxy = await proxyWith({ clock, idleTimeoutMs: 30_000 });
    const { client, upstream } = await greetedSession(proxy.socket, scripted);
    clock.increment(29_999);
    expect(proxy.proxy.sessions()[0]?.state).toBe('ready');
    clock.increment(1);
    expect(await client.rest()).toEqual(['ERR 67108926 Timeout <assuan-proxy> - no command for 30 s (the idle limit); closing']);
    await upstream.closed;
    await sessionsDrained(proxy.proxy);
    expect(proxy.logs).toContainEqual(expect.objectContaining({ msg: 'session ended', outcome: 'failed', failure: { reason: 'idleTimeout' } }));
  });

  it('idle: a client sending one byte per second never completes a command and is closed the same way', async () => {
    const clock = new SimulatedClock();
    const proxy = await proxyWith({ clock, idleTimeoutMs: 10_000 });
    const { client, upstream } = await greetedSession(proxy.socket, scripted);
    const sent = await sendSlowly(client, 'GETINFO version', proxy.proxy, clock);
    // Ten bytes in ten seconds, then the idle timeout (entering bufferingCommand restarts it once, at most).
    expect(sent).toBe(10);
    expect(await client.rest()).toEqual(['ERR 67108926 Timeout <assuan-proxy> - no command for 10 s (the idle limit); closing']);
    await upstream.closed;
    await sessionsDrained(proxy.proxy);
    expect(proxy.logs).toContainEqual(expect.objectContaining({ msg: 'session ended', failure: { reason: 'idleTimeout' } }));
    expect(scripted.journal).not.toContain('recv GETINFO version');
  });

  it('response: off by default, an agent may take a day to answer', async () => {
    const clock = new SimulatedClock();
    const proxy = await proxyWith({ clock });
    const { client, upstream } = await greetedSession(proxy.socket, scripted);
    client.write('PKSIGN\n');
    expect(await upstream.readLine()).toBe('PKSIGN');
    await until(() => proxy.proxy.sessions()[0]?.state === 'waitingForAgent');
    clock.increment(24 * 3600 * 1000);
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    client.destroy();
    await sessionsDrained(proxy.proxy);
  });

  it('response: with --response-timeout, a silent agent gets the client ERR Timeout and the session ends', async () => {
    const clock = new SimulatedClock();
    const proxy = await proxyWith({ clock, responseTimeoutMs: 5_000 });
    const { client, upstream } = await greetedSession(proxy.socket, scripted);
    client.write('NOP\n');
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    client.write('PKSIGN\n');
    expect(await upstream.readLine()).toBe('PKSIGN');
    await until(() => proxy.proxy.sessions()[0]?.state === 'waitingForAgent');
    clock.increment(4_999);
    expect(proxy.proxy.sessions()[0]?.state).toBe('waitingForAgent');
    clock.increment(1);
    expect(await client.rest()).toEqual(['ERR 67108926 Timeout <assuan-proxy> - gpg-agent did not answer in time']);
    await upstream.closed;
    await sessionsDrained(proxy.proxy);
  });
});

describe('many clients at once', () => {
  let agent: AgentHome;
  beforeAll(async () => {
    agent = await createAgentHome();
  });
  afterAll(async () => {
    await agent?.cleanup();
  });

  it('200 clients connecting in the same instant are all served by a real gpg-agent, its full listen queue retried', async () => {
    let retries = 0;
    const proxy = await proxyWith({
      upstream: agent.socket,
      inspect: transitionRecorder(({ key }) => {
        if (key === 'session.connecting.reaching.dialing|AGENT_CONNECT_FAILED[agentBusy]') retries++;
      }),
    });
    // A stopped agent accepts nothing: its listen queue (64) fills and further connects fail with EAGAIN.
    const clients = await whileStopped(await agent.pid(), async () => {
      const connected = await Promise.all(Array.from({ length: 200 }, () => RawClient.connect(proxy.socket)));
      for (const client of connected) client.write('GETINFO version\nBYE\n');
      await until(() => retries > 0);
      return connected;
    });
    const answers = await Promise.all(clients.map((client) => client.rest()));
    for (const lines of answers) {
      expect(lines[0]).toMatch(/^OK /);
      expect(lines.slice(1)).toEqual([expect.stringMatching(/^D 2\.\d+\.\d+$/), 'OK', 'OK closing connection']);
    }
    await sessionsDrained(proxy.proxy);
    const ended = proxy.logs.filter((r) => r.msg === 'session ended');
    expect(ended).toHaveLength(200);
    expect(ended.filter((r) => r.outcome !== 'closed')).toEqual([]);
    expect(ended.filter((r) => (r.connectAttempts as number) > 1).length).toBeGreaterThan(0);
  });
});
