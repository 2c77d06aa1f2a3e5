/**
 * The hostile input corpus, one table: each case ends in a clear ERR or a clean, logged close, and after each
 * one a separate connection's `GETINFO version` through the proxy still gets the real agent's answer: nothing
 * a client (or a misbehaving upstream) sends can wedge the agent or the proxy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { RawClient } from '../support/assuanClient.js';
import { createAgentHome, type AgentHome } from '../support/gnupg.js';
import { sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent } from '../support/scriptedAgent.js';
import { greetedSession, sendSlowly } from '../support/sessions.js';
import { seededBytes } from '../support/random.js';

let agent: AgentHome;
let scripted: ScriptedAgent;
/** In front of the real gpg-agent. */
let proxy: TestProxy;
/** In front of the scripted upstream, for what only a misbehaving agent sends. */
let scriptedProxy: TestProxy;
/** In front of the real agent, on a simulated clock (the one-byte-a-second client). */
let clockProxy: TestProxy;
const clock = new SimulatedClock();

beforeAll(async () => {
  agent = await createAgentHome();
  scripted = await createScriptedAgent();
  proxy = await startTestProxy({ upstream: agent.socket });
  scriptedProxy = await startTestProxy({ upstream: scripted.socket });
  clockProxy = await startTestProxy({ upstream: agent.socket, clock, idleTimeoutMs: 10_000 });
});
afterAll(async () => {
  for (const p of [proxy, scriptedProxy, clockProxy]) await p?.close();
  await scripted?.close();
  await agent?.cleanup();
});

/** How a case ended, as the client saw it. */
interface Outcome {
  /** Lines received after the greeting (several clients' lines are concatenated for the 2,000-connection case). */
  lines: string[];
  /** The proxy closed the connection. */
  closed: boolean;
}

async function greeted(socket: string): Promise<RawClient> {
  const client = await RawClient.connect(socket);
  expect(await client.readLine()).toMatch(/^OK /);
  return client;
}

/** Sends `bytes`, then reads `responses` responses and returns them, leaving the connection open. */
async function exchange(client: RawClient, bytes: string | Buffer, responses: number): Promise<string[]> {
  client.write(bytes);
  const lines: string[] = [];
  for (let i = 0; i < responses; i++) lines.push(...(await client.response()));
  return lines;
}

/** Opens gpg-agent's INQUIRE KEYDATA (IMPORT_KEY after KEYWRAP_KEY), returning the INQUIRE line. */
async function inKeydataInquire(client: RawClient): Promise<string[]> {
  const wrap = await exchange(client, 'KEYWRAP_KEY --import\n', 1);
  expect(wrap.at(-1)).toBe('OK');
  return exchange(client, 'IMPORT_KEY\n', 1);
}

async function finish(client: RawClient, lines: string[]): Promise<Outcome> {
  client.socket.end();
  const rest = await client.rest();
  await client.closed;
  return { lines: [...lines, ...rest], closed: true };
}

const TOO_LONG = /^ERR 67109127 Line passed to IPC too long <assuan-proxy>/;
const BAD_ESCAPE = /^ERR 67109140 IPC syntax error <assuan-proxy> - D line has a '%'/;
const INVALID_RESPONSE = /^ERR 67109124 Invalid IPC response <assuan-proxy>/;

interface Case {
  name: string;
  run: () => Promise<Outcome>;
  check: (outcome: Outcome) => void;
}

const CASES: Case[] = [
  {
    name: 'a command line over the 1000-byte limit',
    run: async () => {
      const c = await greeted(proxy.socket);
      return finish(c, await exchange(c, `GETINFO ${'x'.repeat(1500)}\n`, 1));
    },
    check: (o) => expect(o.lines[0]).toMatch(TOO_LONG),
  },
  {
    name: 'a D line over the limit inside an INQUIRE',
    run: async () => {
      const c = await greeted(proxy.socket);
      const lines = await inKeydataInquire(c);
      return finish(c, [...lines, ...(await exchange(c, `D ${'A'.repeat(2000)}\nD more\nEND\n`, 1))]);
    },
    check: (o) => expect(o.lines).toEqual(['INQUIRE KEYDATA', expect.stringMatching(TOO_LONG)]),
  },
  ...['D 50%\n', 'D %\n', 'D %4\n', 'D %zz\n'].map(
    (line): Case => ({
      name: `'%' without two hex digits in an INQUIRE answer: ${JSON.stringify(line)}`,
      run: async () => {
        const c = await greeted(proxy.socket);
        const lines = await inKeydataInquire(c);
        return finish(c, [...lines, ...(await exchange(c, `${line}END\n`, 1))]);
      },
      check: (o) => expect(o.lines).toEqual(['INQUIRE KEYDATA', expect.stringMatching(BAD_ESCAPE)]),
    }),
  ),
  {
    name: 'NUL and 0x80-0xFF bytes in D lines (relayed; the agent rejects the key data)',
    run: async () => {
      const c = await greeted(proxy.socket);
      const lines = await inKeydataInquire(c);
      const binary = Buffer.concat([Buffer.from('D '), Buffer.from([0, 0x80, 0xff, 0xfe, 0x00, 0x9f, 0x41]), Buffer.from('\nEND\n')]);
      return finish(c, [...lines, ...(await exchange(c, binary, 1))]);
    },
    check: (o) => expect(o.lines).toEqual(['INQUIRE KEYDATA', expect.stringMatching(/^ERR \d+ .*<GPG Agent>/)]),
  },
  {
    name: 'a bare CR inside a command line',
    run: async () => {
      const c = await greeted(proxy.socket);
      return finish(c, await exchange(c, 'GETINFO version\rNOP\n', 1));
    },
    check: (o) => expect(o.lines).toEqual([expect.stringMatching(/^ERR 67109144 /)]),
  },
  {
    name: 'a NUL inside a command line',
    run: async () => {
      const c = await greeted(proxy.socket);
      return finish(c, await exchange(c, 'GETINFO\0version\n', 1));
    },
    check: (o) => expect(o.lines[0]).toMatch(/^ERR \d+ /),
  },
  {
    name: 'END, CAN and D outside an INQUIRE',
    run: async () => {
      const c = await greeted(proxy.socket);
      return finish(c, await exchange(c, 'END\nCAN\nD stray\n', 3));
    },
    check: (o) => expect(o.lines).toEqual([expect.stringMatching(/^ERR /), expect.stringMatching(/^ERR /), expect.stringMatching(/^ERR /)]),
  },
  {
    name: 'pipelining commands into an INQUIRE',
    run: async () => {
      const c = await greeted(proxy.socket);
      expect(await exchange(c, 'KEYWRAP_KEY --import\n', 1)).toContain('OK');
      return finish(c, await exchange(c, 'IMPORT_KEY\nNOP\nNOP\n', 3));
    },
    // The first NOP ends the INQUIRE at the agent (ERR 274, unexecuted); the second one runs.
    check: (o) => expect(o.lines).toEqual(['INQUIRE KEYDATA', expect.stringMatching(/^ERR 67109138 /), 'OK']),
  },
  {
    name: 'data after BYE',
    run: async () => {
      const c = await greeted(proxy.socket);
      c.write('BYE\nNOP\nGETINFO version\nD junk\n');
      const lines = await c.rest();
      await c.closed;
      return { lines, closed: true };
    },
    check: (o) => expect(o.lines).toEqual(['OK closing connection']),
  },
  {
    name: 'a partial line, then EOF',
    run: async () => {
      const c = await greeted(proxy.socket);
      c.write('GETINF');
      return finish(c, []);
    },
    check: (o) => expect(o.lines).toEqual([]),
  },
  {
    name: 'a client vanishing in the middle of an INQUIRE',
    run: async () => {
      const c = await greeted(proxy.socket);
      const lines = await inKeydataInquire(c);
      c.write('D abc\n');
      c.destroy();
      await c.closed;
      return { lines, closed: true };
    },
    check: (o) => expect(o.lines).toEqual(['INQUIRE KEYDATA']),
  },
  {
    name: '64 KiB of random binary',
    run: async () => {
      const c = await greeted(proxy.socket);
      c.write(seededBytes(20261120, 64 * 1024));
      return finish(c, []);
    },
    check: (o) => {
      expect(o.lines.length).toBeGreaterThan(0);
      for (const line of o.lines) expect(line).toMatch(/^(OK|ERR \d+|D |S |INQUIRE |#)/);
    },
  },
  {
    name: 'a non-Assuan line from the agent',
    run: async () => {
      const { client, upstream } = await greetedSession(scriptedProxy.socket, scripted);
      client.write('NOP\n');
      await upstream.readLine();
      upstream.send('HELLO, I AM NOT AN AGENT\n');
      const lines = await client.rest();
      await upstream.closed;
      return { lines, closed: true };
    },
    check: (o) => expect(o.lines).toEqual([expect.stringMatching(INVALID_RESPONSE)]),
  },
  {
    name: 'agent output while no command is pending',
    run: async () => {
      const { client, upstream } = await greetedSession(scriptedProxy.socket, scripted);
      upstream.send('S PROGRESS nothing asked\n');
      const lines = await client.rest();
      await upstream.closed;
      return { lines, closed: true };
    },
    check: (o) => expect(o.lines).toEqual([expect.stringMatching(/^ERR 67109124 .* - gpg-agent sent output with no command pending$/)]),
  },
  {
    name: 'a client sending one byte per second (simulated clock, idle timeout 10 s)',
    run: async () => {
      const c = await greeted(clockProxy.socket);
      const sent = await sendSlowly(c, 'GETINFO version\n', clockProxy.proxy, clock);
      // Ten bytes in ten seconds, then the idle timeout: the command never completes.
      expect(sent).toBe(10);
      const lines = await c.rest();
      await c.closed;
      await sessionsDrained(clockProxy.proxy);
      expect(clockProxy.logs).toContainEqual(expect.objectContaining({ msg: 'session ended', failure: { reason: 'idleTimeout' } }));
      return { lines, closed: true };
    },
    // The client is told why, before the close.
    check: (o) => expect(o).toEqual({ lines: ['ERR 67108926 Timeout <assuan-proxy> - no command for 10 s (the idle limit); closing'], closed: true }),
  },
  {
    name: '2,000 connections opened at once and held (past the 256-session limit: one ERR each)',
    run: async () => {
      const clients = await Promise.all(Array.from({ length: 2000 }, () => RawClient.connect(proxy.socket)));
      const firstLines = await Promise.all(clients.map((c) => c.readLine()));
      const served = clients.filter((_, i) => firstLines[i]!.startsWith('OK '));
      const refused = clients.filter((_, i) => firstLines[i]!.startsWith('ERR 67109047 Limit reached <assuan-proxy>'));
      expect(served.length + refused.length).toBe(2000);
      // Nobody has left yet: exactly the limit is served, and every other connection got the ERR and a close.
      expect(served.length).toBe(256);
      for (const c of refused) expect(await c.rest()).toEqual([]);
      const answers = await Promise.all(served.map((c) => c.request('GETINFO version')));
      for (const answer of answers) expect(answer).toEqual([expect.stringMatching(/^D 2\./), 'OK']);
      for (const c of served) c.write('BYE\n');
      await Promise.all(served.map((c) => c.closed));
      // Logged, but not once per connection: the first ten, then every hundredth, with the running count.
      const refusals = proxy.logs.filter((r) => r.msg === 'session limit reached: connection refused');
      expect(refusals.length).toBeLessThan(40);
      expect(refusals).toContainEqual(expect.objectContaining({ refusedConnections: 1700, maxSessions: 256 }));
      return { lines: [`${served.length} served`, `${refused.length} refused`], closed: true };
    },
    check: (o) => expect(o.lines).toEqual(['256 served', '1744 refused']),
  },
];

describe('hostile input corpus', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s: a clear ERR or a logged close; the agent still answers', async (_, testCase) => {
    const endedBefore = [proxy, scriptedProxy, clockProxy].map((p) => p.logs.filter((r) => r.msg === 'session ended').length);
    const outcome = await testCase.run();
    testCase.check(outcome);
    expect(outcome.closed || outcome.lines.some((l) => l.startsWith('ERR '))).toBe(true);
    for (const p of [proxy, scriptedProxy, clockProxy]) await sessionsDrained(p.proxy);
    const endedAfter = [proxy, scriptedProxy, clockProxy].map((p) => p.logs.filter((r) => r.msg === 'session ended').length);
    expect(endedAfter.some((n, i) => n > endedBefore[i]!), 'the close was logged').toBe(true);

    // A separate connection: the real agent still answers through the proxy.
    const probe = await greeted(proxy.socket);
    expect(await probe.request('GETINFO version')).toEqual([expect.stringMatching(/^D 2\.\d+\.\d+$/), 'OK']);
    probe.destroy();
  });
});
