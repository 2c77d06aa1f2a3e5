/** Relay behaviour over real sockets in front of a real gpg-agent in a throw-away GNUPGHOME. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { createAgentHome, mustRun, type AgentHome } from '../support/gnupg.js';
import { rejectedEvents, sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';

let agent: AgentHome;
let proxy: TestProxy;

beforeAll(async () => {
  agent = await createAgentHome();
  proxy = await startTestProxy({ upstream: agent.socket, spareConnection: true });
});

afterAll(async () => {
  await proxy?.close();
  await agent?.cleanup();
});

async function session(): Promise<RawClient> {
  const client = await RawClient.connect(proxy.socket);
  expect(await client.readLine()).toMatch(/^OK Pleased to meet you/);
  return client;
}

/** The agent answers on a fresh connection through the proxy: it is not wedged. */
async function agentStillAnswers(): Promise<void> {
  const other = await session();
  expect(await other.request('GETINFO version')).toEqual(['D 2.2.40', 'OK']);
  other.destroy();
}

describe('relay in front of gpg-agent', () => {
  it('relays the greeting first, naming the proxy as the agent\'s peer', async () => {
    const client = await RawClient.connect(proxy.socket);
    // Written before the greeting arrives: it must not be read, let alone answered, before it.
    client.write('GETINFO pid\n');
    const greeting = await client.readLine();
    expect(greeting).toBe(`OK Pleased to meet you, process ${process.pid}`);
    expect(await client.response()).toEqual([`D ${await agent.pid()}`, 'OK']);
    client.destroy();
  });

  it('a comment and an empty line get no reply: the command behind them in the same chunk is answered', async () => {
    const client = await session();
    client.write('# hello agent\n\nGETINFO version\n');
    expect(await client.response()).toEqual(['D 2.2.40', 'OK']);
    client.destroy();
  });

  it('handles lines split across many writes, and CR LF', async () => {
    const client = await session();
    for (const byte of Buffer.from('GETINFO version\r\n')) {
      client.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    expect(await client.response()).toEqual(['D 2.2.40', 'OK']);
    client.destroy();
  });

  it('keeps pipelined lines in order and answers each, nothing lost or interleaved', async () => {
    const client = await session();
    client.write('NOP\nGETINFO version\n# between\nHELP NOP\nBOGUS\nGETINFO pid\nNOP\n');
    const pid = await agent.pid();
    expect(await client.response()).toEqual(['OK']);
    expect(await client.response()).toEqual(['D 2.2.40', 'OK']);
    expect(await client.response()).toEqual(['ERR 67108891 Not found <GPG Agent>']);
    expect(await client.response()).toEqual(['ERR 67109139 Unknown IPC command <GPG Agent>']);
    expect(await client.response()).toEqual([`D ${pid}`, 'OK']);
    expect(await client.response()).toEqual(['OK']);
    client.destroy();
  });

  it('an INQUIRE answer ends at END, not at the bytes END inside a D line', async () => {
    const client = await session();
    expect(await client.request('PKDECRYPT')).toEqual(['S INQUIRE_MAXLEN 4096', 'INQUIRE CIPHERTEXT']);
    // Had the proxy ended the answer at "END" at the end of a D line, the agent would see a stray D command.
    client.write('D abcEND\nD END\n');
    client.write('END\n');
    // No key was set, so the whole answer read, the agent says so (direct: the same single line).
    expect(await client.response()).toEqual(['ERR 67108881 No secret key <GPG Agent>']);
    expect(await client.request('GETINFO version')).toEqual(['D 2.2.40', 'OK']);
    client.destroy();
  });

  it('CANCEL inside an INQUIRE cancels it (any line starting with CAN)', async () => {
    const client = await session();
    expect((await client.request('PKDECRYPT')).at(-1)).toBe('INQUIRE CIPHERTEXT');
    expect(await client.request('CANCEL')).toEqual(['ERR 67109141 IPC call has been cancelled <GPG Agent>']);
    expect(await client.request('NOP')).toEqual(['OK']);
    client.destroy();
  });

  it('refuses a D line with a lone % (it wedges gpg-agent) and the agent keeps answering everyone', async () => {
    const client = await session();
    expect((await client.request('PKDECRYPT')).at(-1)).toBe('INQUIRE CIPHERTEXT');
    client.write('D abc%\nEND\n');
    expect(await client.response()).toEqual([
      "ERR 67109140 IPC syntax error <assuan-proxy> - D line has a '%' not followed by two hex digits",
    ]);
    expect(await client.request('GETINFO version')).toEqual(['D 2.2.40', 'OK']);
    await agentStillAnswers();
    client.destroy();
  });

  it('answers an over-long line with ERR 67109127 instead of forwarding it, and the connection lives on', async () => {
    const client = await session();
    client.write(`NOP ${'x'.repeat(2000)}\nGETINFO version\n`);
    expect(await client.response()).toEqual(['ERR 67109127 Line passed to IPC too long <assuan-proxy> - lines are limited to 1000 bytes']);
    expect(await client.response()).toEqual(['D 2.2.40', 'OK']);
    client.destroy();
  });

  it('an over-long D line inside an INQUIRE ends that command with ERR 67109127 and no desync', async () => {
    const client = await session();
    expect((await client.request('PKDECRYPT')).at(-1)).toBe('INQUIRE CIPHERTEXT');
    client.write(`D ${'a'.repeat(1500)}\nD more\nEND\nNOP\n`);
    expect(await client.response()).toEqual(['ERR 67109127 Line passed to IPC too long <assuan-proxy> - lines are limited to 1000 bytes']);
    expect(await client.response()).toEqual(['OK']);
    client.destroy();
  });

  it('BYE relays OK closing connection and ends both sides cleanly', async () => {
    const client = await session();
    expect(await client.request('BYE')).toEqual(['OK closing connection']);
    expect(await client.rest()).toEqual([]);
    await client.closed;
    await sessionsDrained(proxy.proxy);
    const ended = proxy.logs.filter((r) => r.msg === 'session ended');
    expect(ended.at(-1)).toMatchObject({ outcome: 'closed', failure: null });
  });

  it('a client that writes BYE and closes without reading is normal (EPIPE is not a crash)', async () => {
    for (let i = 0; i < 5; i++) {
      const client = await session();
      client.write('BYE\n');
      client.destroy();
    }
    await sessionsDrained(proxy.proxy);
    await agentStillAnswers();
  });

  it('a client that shuts down its write side after a command still gets the answer', async () => {
    const client = await session();
    client.socket.end('GETINFO version\n');
    expect(await client.rest()).toEqual(['D 2.2.40', 'OK']);
  });

  it('a client vanishing mid-INQUIRE ends its session only', async () => {
    const client = await session();
    expect((await client.request('PKDECRYPT')).at(-1)).toBe('INQUIRE CIPHERTEXT');
    client.write('D 1234\n');
    client.destroy();
    await sessionsDrained(proxy.proxy);
    await agentStillAnswers();
  });

  it('a gpg-connect-agent -S session reads the same through the proxy as direct', async () => {
    const script = '# a comment line\nHELP GETINFO\nNO_SUCH_COMMAND\nGETINFO version\nBYE\n';
    const direct = await mustRun('gpg-connect-agent', agent.home, ['-S', agent.socket], script);
    const proxied = await mustRun('gpg-connect-agent', agent.home, ['-S', proxy.socket], script);
    expect(proxied.toString()).toBe(direct.toString());
    expect(proxied.toString()).toContain('ERR 67109139 Unknown IPC command');
    expect(proxied.toString()).toContain('# GETINFO');
  });

  it('--trace-transitions logs each transition as {session, from, event, to}, and nothing else', async () => {
    const traced = await startTestProxy({ upstream: agent.socket, traceTransitions: true });
    try {
      const client = await RawClient.connect(traced.socket);
      await client.readLine();
      client.write('# note\nGETINFO version\n');
      await client.response();
      client.write(`NOP ${'x'.repeat(1100)}\n`);
      await client.response();
      client.destroy();
      await sessionsDrained(traced.proxy);
      const all = traced.logs.filter((r) => r.msg === 'transition');
      expect(all.filter((r) => r.actor === 'server').map((r) => `${r.from} -${r.event}-> ${r.to}`)).toEqual([
        'starting -listen done-> listening',
      ]);
      const trace = all.filter((r) => r.actor === undefined);
      expect(trace.map((r) => Object.keys(r).filter((k) => !['level', 'time', 'pid', 'hostname', 'msg'].includes(k)).sort())).toEqual(
        trace.map(() => ['event', 'from', 'session', 'to']),
      );
      expect(trace.map((r) => `${r.from} -${r.event}-> ${r.to}`)).toEqual([
        'connecting.reaching.dialing -AGENT_CONNECTED-> connecting.awaitingGreeting',
        'connecting.awaitingGreeting -AGENT.OK-> awaitingCommand.ready',
        'awaitingCommand.ready -CLIENT.COMMENT-> awaitingCommand.ready',
        'awaitingCommand.ready -CLIENT.COMMAND-> command.waitingForAgent',
        'command.waitingForAgent -AGENT.DATA-> command.sendingToClient',
        'command.sendingToClient -AGENT.OK-> awaitingCommand.ready',
        'awaitingCommand.ready -CLIENT.TOO_LONG-> error',
        'error -always-> awaitingCommand.ready',
        'awaitingCommand.ready -CLIENT_EOF-> closing',
        'closing -SOCKETS_CLOSED-> closed',
      ]);
      expect(new Set(trace.map((r) => r.session))).toEqual(new Set(['1']));
    } finally {
      await traced.close();
    }
  });

  it('every event real traffic produced was one its state handles', async () => {
    await sessionsDrained(proxy.proxy);
    expect(proxy.logs.filter((r) => r.msg === 'session ended').length).toBeGreaterThan(10);
    expect(rejectedEvents(proxy.logs)).toEqual([]);
  });
});
