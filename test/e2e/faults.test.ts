/**
 * Fault injection over real sockets: each case drives one session, through a scripted upstream and a real
 * client socket, into a transition that ordinary traffic does not take, and asserts the live actor took it.
 * A client that never reads leaves the proxy's bytes unread in its socket; closing it then resets the
 * connection, which is how a client vanishing (CLIENT_GONE) shows up on a Unix socket.
 */
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { transitionRecorder } from '../../src/machineTools/trace.js';
import { RawClient } from '../support/assuanClient.js';
import { startBusyListener } from '../support/busyListener.js';
import { sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent, type ScriptedConnection } from '../support/scriptedAgent.js';
import { greetedSession, lingeringAfterBye, silentClient as silentSocket, until } from '../support/sessions.js';

let agent: ScriptedAgent;
let proxy: TestProxy;
let taken: string[] = [];

beforeAll(async () => {
  agent = await createScriptedAgent();
  proxy = await startTestProxy({
    upstream: agent.socket,
    closeGraceMs: 50,
    drainTimeoutMs: 100,
    inspect: transitionRecorder(({ key }) => taken.push(key)),
  });
});
afterAll(async () => {
  await proxy?.close();
  await agent?.close();
});
afterEach(async () => {
  await sessionsDrained(proxy.proxy);
  taken = [];
});

const state = () => proxy.proxy.sessions()[0]?.state;

const silentClient = () => silentSocket(proxy.socket);
const greeted = () => greetedSession(proxy.socket, agent);

/** A session in an INQUIRE, the agent waiting for the client's answer. */
async function inInquire(): Promise<{ client: RawClient; upstream: ScriptedConnection }> {
  const session = await greeted();
  session.client.write('PKDECRYPT\n');
  await session.upstream.readLine();
  session.upstream.send('INQUIRE CIPHERTEXT\n');
  await session.client.readLine();
  return session;
}

/** A session in an INQUIRE that takes no data (PINENTRY_LAUNCHED), the agent running its pinentry. */
async function inAcknowledging(): Promise<{ client: RawClient; upstream: ScriptedConnection }> {
  const session = await greeted();
  session.client.write('GET_PASSPHRASE X\n');
  await session.upstream.readLine();
  session.upstream.send('INQUIRE PINENTRY_LAUNCHED 1 curses 1.2 -\n');
  await session.client.readLine();
  return session;
}

/** A session whose INQUIRE answer the proxy has refused (a lone %), so it owes the client its own ERR. */
async function inDiscarding(): Promise<{ client: RawClient; upstream: ScriptedConnection }> {
  const session = await inInquire();
  session.client.write('D 50%\n');
  await until(() => state() === 'bufferingInquire' && taken.includes('session.command.bufferingInquire.answering|CLIENT.MALFORMED_DATA'));
  return session;
}

const OWED = "ERR 67109140 IPC syntax error <assuan-proxy> - D line has a '%' not followed by two hex digits";
const INVALID = 'ERR 67109124 Invalid IPC response <assuan-proxy> - gpg-agent sent a line that is not valid here';

describe('client faults', () => {
  it('vanishing before the greeting (seen when a comment the agent sends first cannot be written)', async () => {
    const client = await silentClient();
    const upstream = await agent.nextConnection();
    client.destroy();
    upstream.send('# a comment before the greeting\n');
    await upstream.closed;
    expect(taken).toContain('session.connecting.awaitingGreeting|AGENT.COMMENT');
    expect(taken).toContain('session|CLIENT_GONE');
  });

  it.each([
    ['ready', async () => {}],
    ['bufferingCommand', async (c: net.Socket) => void c.write('NO')],
    ['waitingForAgent', async (c: net.Socket, u: ScriptedConnection) => {
      c.write('PKSIGN\n');
      await u.readLine();
    }],
    ['sendingToClient', async (c: net.Socket, u: ScriptedConnection) => {
      c.write('PKSIGN\n');
      await u.readLine();
      u.send('S PROGRESS x\n');
    }],
    ['bufferingInquire', async (c: net.Socket, u: ScriptedConnection) => {
      c.write('PKDECRYPT\n');
      await u.readLine();
      u.send('INQUIRE CIPHERTEXT\n');
    }],
  ] as const)('vanishing (reset) in %s closes its upstream', async (where, arrange) => {
    const client = await silentClient();
    const upstream = await agent.nextConnection();
    upstream.send('OK hi\n');
    await until(() => state() === 'ready');
    await arrange(client, upstream);
    await until(() => state() === where);
    client.destroy();
    await upstream.closed;
    expect(taken).toContain('session|CLIENT_GONE');
  });

  it('a comment line completing a partial line in bufferingCommand', async () => {
    const { client, upstream } = await greeted();
    client.write('# par');
    await until(() => state() === 'bufferingCommand');
    client.write('tial comment\nNOP\n');
    expect(await upstream.readLine()).toBe('# partial comment');
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    expect(taken).toContain('session.awaitingCommand|CLIENT.COMMENT');
    client.destroy();
  });

  it('a line that grows too long while buffered is answered with ERR 67109127', async () => {
    const { client } = await greeted();
    client.write(`NOP ${'x'.repeat(600)}`);
    await until(() => state() === 'bufferingCommand');
    client.write(`${'y'.repeat(600)}\n`);
    expect(await client.response()).toEqual(['ERR 67109127 Line passed to IPC too long <assuan-proxy> - lines are limited to 1000 bytes']);
    expect(taken).toContain('session.awaitingCommand|CLIENT.TOO_LONG');
    client.destroy();
  });

  it('EOF in the middle of a command line: the partial line is dropped, the session closes', async () => {
    const { client, upstream } = await greeted();
    client.write('GETINF');
    await until(() => state() === 'bufferingCommand');
    client.socket.end();
    expect(await upstream.readLineBytes()).toBeUndefined();
    expect(taken).toContain('session.awaitingCommand|CLIENT_EOF');
  });

  it('EOF while the answer streams: the answer is still relayed, then the session closes', async () => {
    const { client, upstream } = await greeted();
    upstream.holdOpenAfterEof();
    client.write('PKSIGN\n');
    await upstream.readLine();
    upstream.send('S PROGRESS x\n');
    expect(await client.readLine()).toBe('S PROGRESS x');
    client.socket.end();
    expect(await upstream.readLineBytes()).toBeUndefined();
    upstream.send('OK\n');
    expect(await client.rest()).toEqual(['OK']);
    expect(taken).toContain('session.command|CLIENT_EOF');
  });

  it('an INQUIRE after the client has gone (EOF): the agent, which has the EOF, answers it, and that answer is relayed', async () => {
    const { client, upstream } = await greeted();
    upstream.holdOpenAfterEof();
    client.write('PKDECRYPT\n');
    await upstream.readLine();
    client.socket.end();
    expect(await upstream.readLineBytes()).toBeUndefined();
    // gpg-agent's inquiry reader reads the EOF at once and fails the command.
    upstream.send('INQUIRE CIPHERTEXT\nERR 67125247 End of file <GPG Agent>\n');
    upstream.end();
    expect(await client.rest()).toEqual(['INQUIRE CIPHERTEXT', 'ERR 67125247 End of file <GPG Agent>']);
    expect(taken).toContain('session.command.bufferingInquire|always[clientEnded]');
  });

  it('an agent line after OK closing connection is dropped while the session closes', async () => {
    const { client, upstream } = await lingeringAfterBye(proxy.socket, agent);
    await until(() => state() === 'closing');
    upstream.send('S LATE\n');
    await until(() => taken.includes('session.closing|AGENT.*'));
    client.destroy();
    upstream.destroy();
  });

  it('a client that never closes after BYE is cut after the close grace', async () => {
    const { client } = await lingeringAfterBye(proxy.socket, agent);
    // Neither peer closes: only the close grace can end the session.
    await until(() => proxy.proxy.sessionCount === 0);
    expect(taken).toContain('session.closing|after closeGrace');
    client.destroy();
  });
});

describe('agent faults while the client is busy', () => {
  it.each([
    ['an unsolicited line', (u: ScriptedConnection) => u.send('S UNASKED\n'), 'session.awaitingCommand|AGENT.*'],
    ['a close', (u: ScriptedConnection) => u.destroy(), 'session|AGENT_CLOSED'],
  ] as const)('%s while a command line is half typed ends the session', async (_, act, key) => {
    const { client, upstream } = await greeted();
    client.write('NO');
    await until(() => state() === 'bufferingCommand');
    act(upstream);
    expect((await client.rest())[0]).toMatch(/^ERR /);
    expect(taken).toContain(key);
  });

  it.each([
    ['ERR', 'ERR 67108881 No secret key\n', ['S PROGRESS x', 'ERR 67108881 No secret key'], 'session.command|AGENT.ERR'],
    ['OK closing connection', 'OK closing connection\n', ['S PROGRESS x', 'OK closing connection'], 'session.command|AGENT.OK_CLOSING'],
    ['a non-Assuan line', 'garbage\n', ['S PROGRESS x', INVALID], 'session.command|AGENT.*'],
  ] as const)('after a status line, %s ends the answer', async (_, final, expected, key) => {
    const { client, upstream } = await greeted();
    client.write('PKSIGN\n');
    await upstream.readLine();
    upstream.send('S PROGRESS x\n');
    upstream.send(final);
    const got = [await client.readLine(), await client.readLine()];
    expect(got).toEqual(expected);
    expect(taken).toContain(key);
    client.destroy();
  });
});

describe('END lines in an answer', () => {
  it('an END as the first line of an answer, and one after its D lines, are relayed as part of it', async () => {
    const { client, upstream } = await greeted();
    client.write('GETINFO x\n');
    await upstream.readLine();
    upstream.send('END\n');
    expect(await client.readLine()).toBe('END');
    upstream.send('D x\nEND\nOK\n');
    expect(await client.response()).toEqual(['D x', 'END', 'OK']);
    expect(taken).toContain('session.command.waitingForAgent|AGENT.END');
    expect(taken).toContain('session.command|AGENT.END');
    client.destroy();
  });
});

describe('an INQUIRE that takes no data', () => {
  it('after a status line: the client\'s D line ends it, and the line behind waits for the command to end', async () => {
    const { client, upstream } = await greeted();
    client.write('GET_PASSPHRASE X\n');
    await upstream.readLine();
    upstream.send('S PROGRESS x\n');
    expect(await client.readLine()).toBe('S PROGRESS x');
    upstream.send('INQUIRE PINENTRY_LAUNCHED 1 curses 1.2 -\n');
    expect(await client.readLine()).toMatch(/^INQUIRE PINENTRY_LAUNCHED/);
    client.write('D x\nNOP\n');
    expect(await upstream.readLine()).toBe('D x');
    upstream.send('OK 41\n');
    expect(await client.response()).toEqual(['OK 41']);
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    expect(taken).toContain('session.command|AGENT.INQUIRE[inquiryTakesNoData]');
    expect(taken).toContain('session.command.bufferingInquire.acknowledging|CLIENT.DATA');
    client.destroy();
  });

  it.each([
    ['a status line is relayed, and the answer goes on', 'S PROGRESS x\n', ['S PROGRESS x'], 'session.command|AGENT.STATUS'],
    ['OK ends the command: the agent reads commands again', 'OK 41\n', ['OK 41'], 'session.command|AGENT.OK'],
    ['ERR ends the command: the agent reads commands again', 'ERR 83886179 Operation cancelled <Pinentry>\n', ['ERR 83886179 Operation cancelled <Pinentry>'], 'session.command|AGENT.ERR'],
  ] as const)('from the agent while it is open: %s', async (_, line, expected, key) => {
    const { client, upstream } = await inAcknowledging();
    upstream.send(line);
    expect(await client.readLine()).toBe(expected[0]);
    expect(taken).toContain(key);
    client.destroy();
  });

  it.each([
    ['OK closing connection', 'OK closing connection\n', 'OK closing connection', 'session.command|AGENT.OK_CLOSING'],
    ['a nested INQUIRE', 'INQUIRE NESTED\n', 'ERR 67109124 Invalid IPC response <assuan-proxy> - gpg-agent sent a line that is not valid here', 'session.command.bufferingInquire|AGENT.INQUIRE'],
  ] as const)('%s from the agent while it is open ends the session', async (_, line, expected, key) => {
    const { client, upstream } = await inAcknowledging();
    upstream.send(line);
    expect(await client.rest()).toEqual([expected]);
    expect(taken).toContain(key);
  });
});

describe('agent lines during an INQUIRE answer', () => {
  it('status lines are relayed; an OK before the answer ends the command, and the agent reads the rest as commands', async () => {
    const { client, upstream } = await inInquire();
    upstream.send('S PROGRESS x\nOK done early\n');
    expect(await client.readLine()).toBe('S PROGRESS x');
    expect(await client.readLine()).toBe('OK done early');
    client.write('D late data\nNOP\n');
    expect(await upstream.readLine()).toBe('D late data');
    upstream.send('ERR 67108933 Not implemented <GPG Agent>\n');
    expect(await upstream.readLine()).toBe('NOP');
    expect(taken).toEqual(expect.arrayContaining([
      'session.command|AGENT.STATUS',
      'session.command|AGENT.OK',
    ]));
    client.destroy();
  });


  it('an agent line after the command ended mid-answer is unsolicited', async () => {
    const { client, upstream } = await inInquire();
    upstream.send('ERR 67109137 Too much data for IPC layer\n');
    expect(await client.readLine()).toMatch(/^ERR 67109137/);
    upstream.send('S UNASKED\n');
    expect(await client.rest()).toEqual(['ERR 67109124 Invalid IPC response <assuan-proxy> - gpg-agent sent output with no command pending']);
    expect(taken).toContain('session.command|AGENT.ERR');
    expect(taken).toContain('session.awaitingCommand|AGENT.*');
  });

  it('a malformed D line ends an INQUIRE that takes no data, as any D line does (the agent reads no data there)', async () => {
    const { client, upstream } = await inAcknowledging();
    client.write('D 50%\nNOP\n');
    expect(await upstream.readLine()).toBe('D 50%');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    expect(taken).toContain('session.command.bufferingInquire.acknowledging|CLIENT.MALFORMED_DATA');
    client.destroy();
  });

  it('an over-long line for an INQUIRE that takes no data: the agent gets CAN in its place, the client the proxy\'s ERR', async () => {
    const { client, upstream } = await greeted();
    client.write('GET_PASSPHRASE X\n');
    await upstream.readLine();
    upstream.send('INQUIRE PINENTRY_LAUNCHED 1 curses 1.2 -\n');
    await client.readLine();
    client.write(`D ${'z'.repeat(1200)}\nNOP\n`);
    expect(await upstream.readLine()).toBe('CAN');
    upstream.send('OK 7878\n');
    expect(await client.response()).toEqual(['ERR 67109127 Line passed to IPC too long <assuan-proxy> - lines are limited to 1000 bytes']);
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    expect(taken).toContain('session.command.bufferingInquire.acknowledging|CLIENT.TOO_LONG');
    client.destroy();
  });
});

describe('after the proxy refused part of an INQUIRE answer', () => {
  it('a further malformed D line is dropped as well; the END that follows becomes the agent\'s CAN', async () => {
    const { client, upstream } = await inDiscarding();
    client.write('D 7%\nEND\n');
    expect(await upstream.readLine()).toBe('CAN');
    upstream.send('ERR 67109141 IPC call has been cancelled\n');
    expect(await client.response()).toEqual([OWED]);
    expect(taken).toContain('session.command.bufferingInquire.discarding|CLIENT.MALFORMED_DATA');
    expect(taken).toContain('session.command.bufferingInquire.discarding|CLIENT.*');
    client.destroy();
  });

  it('comment lines of the rest of the answer are dropped too', async () => {
    const { client, upstream } = await inDiscarding();
    client.write('# more\nD 1\nEND\n');
    expect(await upstream.readLine()).toBe('CAN');
    upstream.send('ERR 67109141 IPC call has been cancelled\n');
    expect(await client.response()).toEqual([OWED]);
    expect(taken).toContain('session.command.bufferingInquire.discarding|CLIENT.COMMENT');
    expect(taken).toContain('session.command.bufferingInquire.discarding|CLIENT.DATA');
    client.destroy();
  });

  it('a half-close: the agent gets CAN and the EOF, the client the owed ERR in place of the agent\'s answer', async () => {
    const { client, upstream } = await inDiscarding();
    upstream.holdOpenAfterEof();
    client.socket.end();
    expect(await upstream.readLine()).toBe('CAN');
    expect(await upstream.readLineBytes()).toBeUndefined();
    upstream.send('ERR 67109141 IPC call has been cancelled\n');
    upstream.end();
    expect(await client.rest()).toEqual([OWED]);
    expect(taken).toContain('session.command.bufferingInquire.discarding|CLIENT_EOF');
  });

  it('a further over-long line is dropped as well', async () => {
    const { client, upstream } = await inDiscarding();
    client.write(`D ${'q'.repeat(1200)}\nEND\n`);
    expect(await upstream.readLine()).toBe('CAN');
    upstream.send('ERR 67109141 IPC call has been cancelled\n');
    expect(await client.response()).toEqual([OWED]);
    expect(taken).toContain('session.command.bufferingInquire.discarding|CLIENT.TOO_LONG');
    client.destroy();
  });

  it('status lines are relayed; the agent ending the command on its own yields the owed ERR in place of its answer', async () => {
    const { client, upstream } = await inDiscarding();
    upstream.send('S PROGRESS x\nERR 67109137 Too much data for IPC layer\n');
    expect(await client.readLine()).toBe('S PROGRESS x');
    expect(await client.response()).toEqual([OWED]);
    expect(taken).toEqual(expect.arrayContaining([
      'session.command|AGENT.STATUS',
      'session.command|AGENT.ERR[owesAnswer]',
    ]));
    client.destroy();
  });


  it.each([
    ['waitingForAgent', ''],
    ['sendingToClient', 'S PROGRESS x\n'],
  ] as const)('in %s, a further INQUIRE is cancelled for the client and the agent\'s final answer swapped for the owed ERR', async (where, before) => {
    const { client, upstream } = await inDiscarding();
    client.write('END\n');
    expect(await upstream.readLine()).toBe('CAN');
    upstream.send(`${before}INQUIRE AGAIN\n`);
    expect(await upstream.readLine()).toBe('CAN');
    upstream.send('ERR 67109141 IPC call has been cancelled\n');
    const expected = before ? ['S PROGRESS x', OWED] : [OWED];
    expect(await client.response()).toEqual(expected);
    expect(taken).toContain('session.command|AGENT.INQUIRE[owesAnswer]');
    if (where === 'sendingToClient') expect(taken).toContain('session.command.waitingForAgent|AGENT.STATUS');
    expect(taken).toContain('session.command|AGENT.ERR[owesAnswer]');
    client.destroy();
  });
});

describe('agent lines that end a session during an INQUIRE answer', () => {
  it.each([
    ['answering', inInquire, 'OK closing connection\n', 'OK closing connection', 'session.command|AGENT.OK_CLOSING'],
    ['answering', inInquire, 'INQUIRE NESTED\n', INVALID, 'session.command.bufferingInquire|AGENT.INQUIRE'],
    ['discarding', inDiscarding, 'OK closing connection\n', 'OK closing connection', 'session.command|AGENT.OK_CLOSING'],
    ['discarding', inDiscarding, 'garbage\n', INVALID, 'session.command|AGENT.*'],
  ] as const)('%s: %j ends the session', async (_where, arrange, line, expected, key) => {
    const { client, upstream } = await arrange();
    upstream.send(line);
    expect(await client.rest()).toEqual([expected]);
    expect(taken).toContain(key);
  });
});

describe('bad greetings', () => {
  it('an ERR in place of the greeting: the client gets the proxy\'s ERR and a close', async () => {
    const client = await RawClient.connect(proxy.socket);
    const upstream = await agent.nextConnection();
    upstream.send('ERR 67108865 General error\n');
    expect(await client.rest()).toEqual(['ERR 67109123 IPC connect call failed <assuan-proxy> - gpg-agent did not greet with OK']);
    expect(taken).toContain('session.connecting.awaitingGreeting|AGENT.*');
  });
});

describe('events while the agent has not taken a request yet (sendingToAgent under backpressure)', () => {
  const highWaterMark = new net.Socket().writableHighWaterMark;
  const newest = () => proxy.proxy.sessions().sort((a, b) => Number(b.sessionId) - Number(a.sessionId))[0]!;

  /**
   * Drives a session into sendingToAgent with the write not taken: the agent stops reading during an INQUIRE,
   * the client sends small D lines until the bytes the agent has not taken sit just under the upstream's
   * high-water mark, then `finish` (a line that ends the INQUIRE) pushes them over it.
   */
  async function blocked(options: { owing?: boolean; silentClient?: boolean } = {}) {
    let client: RawClient | undefined;
    let socket: net.Socket | undefined;
    let write: (line: string) => void;
    let upstream: ScriptedConnection;
    if (options.silentClient) {
      // A client that reads nothing: its close will be a reset.
      socket = await silentClient();
      upstream = await agent.nextConnection();
      upstream.send('OK hi\n');
      socket.write('PKDECRYPT\n');
      await upstream.readLine();
      upstream.send('INQUIRE CIPHERTEXT\n');
      write = (line) => socket!.write(line);
      await until(() => newest().state === 'bufferingInquire');
    } else {
      ({ client, upstream } = await inInquire());
      write = (line) => client!.write(line);
    }
    upstream.stopReading();
    let sent = newest().bytesFromClient;
    const sendLine = async (line: string) => {
      write(line);
      sent += line.length;
      await until(() => newest().bytesFromClient === sent && newest().bufferedClientBytes === 0);
    };
    // With no reader the agent's socket buffer fills; after that, each forwarded line stays pending with us.
    const target = options.owing ? highWaterMark - 2 : highWaterMark - 600;
    while (newest().upstreamPendingBytes < target - 200) await sendLine(`D ${'d'.repeat(97)}\n`);
    if (options.owing) {
      // Exactly 2 bytes under the mark; the proxy's CAN (4 bytes) then crosses it.
      await sendLine(`D ${'e'.repeat(target - newest().upstreamPendingBytes - 3)}\n`);
      expect(newest().upstreamPendingBytes).toBe(target);
      await sendLine('D 50%\n');
      await sendLine('END\n');
    } else {
      await sendLine(`NOP ${'n'.repeat(995)}\n`);
    }
    await until(() => newest().state === 'sendingToAgent');
    return { client: client!, socket, upstream };
  }

  it.each([
    ['a status line', 'S PROGRESS x\n', 'session.command.sendingToAgent|AGENT.STATUS', 'sendingToClient'],
    ['a comment line', '# x\n', 'session.command.sendingToAgent|AGENT.COMMENT', 'sendingToClient'],
    ['a D line', 'D x\n', 'session.command.sendingToAgent|AGENT.DATA', 'sendingToClient'],
    ['an END line', 'END\n', 'session.command.sendingToAgent|AGENT.END', 'sendingToClient'],
    ['an INQUIRE that takes no data', 'INQUIRE PINENTRY_LAUNCHED 1 curses 1.2 -\n', 'session.command|AGENT.INQUIRE[inquiryTakesNoData]', 'bufferingInquire'],
    ['an INQUIRE', 'INQUIRE MORE\n', 'session.command|AGENT.INQUIRE', 'bufferingInquire'],
    ['OK', 'OK\n', 'session.command|AGENT.OK', 'ready'],
    ['ERR', 'ERR 67109138 Unexpected IPC command\n', 'session.command|AGENT.ERR', 'ready'],
  ] as const)('%s from the agent counts as its answer', async (_, line, key, after) => {
    const { client, upstream } = await blocked();
    upstream.send(line);
    await until(() => proxy.proxy.sessions()[0]?.state === after);
    expect(taken).toContain(key);
    client.destroy();
  });

  it.each([
    ['OK closing connection', (u: ScriptedConnection) => u.send('OK closing connection\n'), 'session.command|AGENT.OK_CLOSING'],
    ['a non-Assuan line', (u: ScriptedConnection) => u.send('garbage\n'), 'session.command|AGENT.*'],
    ['a close', (u: ScriptedConnection) => u.destroy(), 'session|AGENT_CLOSED'],
  ] as const)('%s from the agent ends the session', async (_, act, key) => {
    const { client, upstream } = await blocked();
    act(upstream);
    await client.rest();
    expect(taken).toContain(key);
  });

  it('the agent reading again: the request reaches it and its answer is relayed', async () => {
    const { client, upstream } = await blocked();
    upstream.resumeReading();
    await until(() => taken.includes('session.command.sendingToAgent|AGENT_DRAINED'));
    expect(newest().state).toBe('waitingForAgent');
    // What the agent reads: the rest of the data answer, then the line that ended it.
    for (let line = await upstream.readLine(); !line.startsWith('NOP'); line = await upstream.readLine()) expect(line).toMatch(/^D d+$/);
    upstream.send('ERR 67109138 Unexpected IPC command\n');
    expect(await client.readLine()).toBe('ERR 67109138 Unexpected IPC command');
    client.destroy();
  });

  it('an agent that stops reading in the middle of a data answer pauses the client; the whole answer arrives once it reads again', async () => {
    const { client, upstream } = await inInquire();
    upstream.stopReading();
    const block = `D ${'b'.repeat(997)}\n`;
    // More than the socket buffers between us and the agent hold: the proxy's own writes must pile up.
    const lines = Math.ceil((2 * 1024 * 1024) / block.length);
    client.write(block.repeat(lines));
    await until(() => taken.includes('session|AGENT_BLOCKED'));
    expect(newest().state).toBe('bufferingInquire');
    upstream.resumeReading();
    for (let i = 0; i < lines; i++) expect(await upstream.readLine()).toBe(block.slice(0, -1));
    expect(taken).toContain('session|AGENT_DRAINED');
    client.write('END\n');
    expect(await upstream.readLine()).toBe('END');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    client.destroy();
  });

  it('the client finishing (EOF) while the request is pending: the EOF is passed on', async () => {
    const { client, upstream } = await blocked();
    client.socket.end();
    await until(() => taken.includes('session.command|CLIENT_EOF'));
    upstream.destroy();
  });

  it('the client vanishing (reset) while the request is pending closes the session', async () => {
    const { socket, upstream } = await blocked({ silentClient: true });
    socket!.destroy();
    await until(() => taken.includes('session|CLIENT_GONE'));
    upstream.destroy();
  });

  it('owing the client an ERR: a further INQUIRE is cancelled, the final answer swapped', async () => {
    const { client, upstream } = await blocked({ owing: true });
    upstream.send('INQUIRE MORE\n');
    await until(() => taken.includes('session.command|AGENT.INQUIRE[owesAnswer]'));
    upstream.send('ERR 67109141 IPC call has been cancelled\n');
    expect(await client.response()).toEqual([OWED]);
    expect(taken).toContain('session.command|AGENT.ERR[owesAnswer]');
    client.destroy();
  });

  it('a shutdown waits for the pending request, then past the drain timeout closes the session (runs last)', async () => {
    const { client } = await blocked();
    await proxy.proxy.close();
    expect(taken).toEqual(expect.arrayContaining(['session.command|STOP', 'session|STOP_NOW']));
    client.destroy();
  });
});

describe('an agent whose listen queue is full (EAGAIN)', () => {
  it('is retried with backoff until it accepts; the session then works', async () => {
    const busy = await startBusyListener();
    const keys: string[] = [];
    const retrying = await startTestProxy({ upstream: busy.socket, inspect: transitionRecorder(({ key }) => keys.push(key)) });
    try {
      await busy.fillQueue();
      const client = await RawClient.connect(retrying.socket);
      await until(() => keys.includes('session.connecting.reaching.backingOff|after retryBackoff'));
      expect(keys).toContain('session.connecting.reaching.dialing|AGENT_CONNECT_FAILED[agentBusy]');
      busy.startAccepting();
      expect(await client.readLine()).toBe('OK busy listener');
      expect(retrying.proxy.sessions()[0]!.state).toBe('ready');
      client.destroy();
      await sessionsDrained(retrying.proxy);
    } finally {
      await retrying.close();
      busy.close();
    }
  });

  it('gives up at the connect timeout with one ERR naming the cause', async () => {
    const busy = await startBusyListener();
    const keys: string[] = [];
    const impatient = await startTestProxy({ upstream: busy.socket, connectTimeoutMs: 150, inspect: transitionRecorder(({ key }) => keys.push(key)) });
    try {
      await busy.fillQueue();
      const client = await RawClient.connect(impatient.socket);
      const [line, ...rest] = await client.rest();
      expect(rest).toEqual([]);
      expect(line).toMatch(/^ERR 67108926 Timeout <assuan-proxy> - gpg-agent did not accept the connection in time \(\d+ attempts; its listen queue stayed full\)$/);
      expect(keys).toContain('session.connecting.reaching|after connectTimeout');
    } finally {
      await impatient.close();
      busy.close();
    }
  });
});
