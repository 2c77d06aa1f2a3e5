/**
 * Relay behaviour over real sockets against a scripted upstream: orderings, exact bytes, and agent faults a
 * real gpg-agent cannot be made to produce on demand.
 */
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { makeTempDir } from '../support/gnupg.js';
import { rejectedEvents, sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent } from '../support/scriptedAgent.js';
import { greetedSession, silentClient, until } from '../support/sessions.js';

let agent: ScriptedAgent;
let proxy: TestProxy;

beforeAll(async () => {
  agent = await createScriptedAgent();
  proxy = await startTestProxy({ upstream: agent.socket, greetingTimeoutMs: 200 });
});
afterAll(async () => {
  await proxy?.close();
  await agent?.close();
});
afterEach(() => {
  agent.journal.length = 0;
});

/** A client connected through the proxy to a fresh scripted connection, greeted. */
const connected = () => greetedSession(proxy.socket, agent, 'OK scripted greeting');

/** Percent-escapes what Assuan requires in a D line (%, CR, LF), leaving every other byte raw. */
function dLine(payload: Buffer): Buffer {
  const parts: number[] = [0x44, 0x20];
  for (const byte of payload) {
    if (byte === 0x25 || byte === 0x0d || byte === 0x0a) parts.push(0x25, ...Buffer.from(byte.toString(16).toUpperCase().padStart(2, '0')));
    else parts.push(byte);
  }
  parts.push(0x0a);
  return Buffer.from(parts);
}

describe('relay against a scripted upstream', () => {
  it('a client that closes while its command is in flight: the EOF reaches the agent, the session ends', async () => {
    const { client, upstream } = await connected();
    client.write('PKSIGN\n');
    expect(await upstream.readLine()).toBe('PKSIGN');
    upstream.holdOpenAfterEof();
    client.socket.end();
    // The EOF reaches the agent, which (like gpg-agent after its command) then closes.
    expect(await upstream.readLineBytes()).toBeUndefined();
    upstream.end();
    await upstream.closed;
    await sessionsDrained(proxy.proxy);
  });

  it('forwards no client byte before the greeting, and relays the greeting first', async () => {
    const client = await RawClient.connect(proxy.socket);
    const upstream = await agent.nextConnection();
    client.write('NOP\n');
    // The client's NOP cannot have been forwarded yet: the agent has not greeted.
    upstream.send('OK hi\n');
    expect(await client.readLine()).toBe('OK hi');
    expect(await upstream.readLine()).toBe('NOP');
    expect(agent.journal).toEqual(['send OK hi', 'recv NOP']);
    client.destroy();
  });

  it('relays binary D lines byte for byte in both directions, in one INQUIRE and across several', async () => {
    const { client, upstream } = await connected();
    const payloads = [Buffer.from([0, 1, 2, 0x80, 0xfe, 0xff, 0x25, 0x0d, 0x0a, 0x20]), Buffer.alloc(400, 0xe9), Buffer.from('END')];
    const fromClient = Buffer.concat(payloads.map(dLine));
    client.write('PKDECRYPT --flag\n');
    expect(await upstream.readLine()).toBe('PKDECRYPT --flag');
    upstream.send('S INQUIRE_MAXLEN 4096\nINQUIRE CIPHERTEXT\n');
    expect(await client.response()).toEqual(['S INQUIRE_MAXLEN 4096', 'INQUIRE CIPHERTEXT']);
    client.write(Buffer.concat([fromClient, Buffer.from('END\n')]));
    const received: Buffer[] = [];
    for (let line = await upstream.readLineBytes(); line && line.toString() !== 'END\n'; line = await upstream.readLineBytes()) received.push(line);
    expect(Buffer.concat(received).equals(fromClient)).toBe(true);
    // A second INQUIRE in the same command.
    upstream.send('INQUIRE PASSPHRASE\n');
    expect(await client.readLine()).toBe('INQUIRE PASSPHRASE');
    client.write('D pass\nEND\n');
    expect(await upstream.readLine()).toBe('D pass');
    expect(await upstream.readLine()).toBe('END');
    const fromAgent = Buffer.concat([dLine(Buffer.from([0xff, 0x00, 0x25, 0x0a, 0x7f])), dLine(Buffer.alloc(900, 0x81)), Buffer.from('OK\n')]);
    upstream.send(fromAgent);
    const got = await client.responseBytes();
    expect(Buffer.concat(got).equals(fromAgent)).toBe(true);
    client.destroy();
  });

  it('relays answer lines as they arrive: a status line reaches the client before the command ends', async () => {
    const { client, upstream } = await connected();
    client.write('PKSIGN\n');
    await upstream.readLine();
    upstream.send('S PROGRESS primegen X 1 3\n');
    // The agent sends nothing more until the client has seen the status line.
    expect(await client.readLine()).toBe('S PROGRESS primegen X 1 3');
    upstream.send('D sig\nOK\n');
    expect(await client.response()).toEqual(['D sig', 'OK']);
    client.destroy();
  });

  it('streams a large answer (16 MB of D lines) through unchanged', async () => {
    const { client, upstream } = await connected();
    client.write('EXPORT_KEY\n');
    await upstream.readLine();
    const line = Buffer.concat([Buffer.from('D '), Buffer.alloc(996, 0xa5), Buffer.from('\n')]);
    const count = 16 * 1024;
    for (let i = 0; i < count; i++) upstream.send(line);
    upstream.send('OK\n');
    const answer = await client.responseBytes();
    expect(answer).toHaveLength(count + 1);
    expect(answer.slice(0, count).every((got) => got.equals(line))).toBe(true);
    client.destroy();
  });

  it('a client that stops reading pauses the agent: a large answer piles up at the agent, not in the proxy', async () => {
    const client = await silentClient(proxy.socket);
    const upstream = await agent.nextConnection();
    upstream.send('OK scripted greeting\n');
    client.write('EXPORT_KEY\n');
    await upstream.readLine();
    const line = Buffer.concat([Buffer.from('D '), Buffer.alloc(996, 0x5a), Buffer.from('\n')]);
    const total = 16 * 1024;
    for (let i = 0; i < total; i++) upstream.send(line);
    upstream.send('OK\n');
    // Either the proxy stops reading the agent, or the answer piles up in its queue to the client (no
    // backpressure, and the test fails).
    const session = () => proxy.proxy.sessions().find((s) => s.command === 'EXPORT_KEY')!;
    await until(() => session().agentPaused || session().clientPendingBytes > 8 * 1024 * 1024);
    expect(session().agentPaused).toBe(true);
    expect(session().clientPendingBytes).toBeLessThan(1024 * 1024);
    expect(upstream.pendingBytes()).toBeGreaterThan(8 * 1024 * 1024);
    // Once the client reads, the whole answer arrives intact.
    const reader = RawClient.wrap(client);
    client.resume();
    expect(await reader.readLine()).toBe('OK scripted greeting');
    const answer = await reader.responseBytes();
    expect(answer).toHaveLength(total + 1);
    expect(answer.slice(0, total).every((got) => got.equals(line))).toBe(true);
    client.destroy();
  });

  it('holds a pipelined command until the one in flight has its OK', async () => {
    const { client, upstream } = await connected();
    client.write('ONE\nTWO\n');
    expect(await upstream.readLine()).toBe('ONE');
    upstream.send('S STEP 1\n');
    expect(await client.readLine()).toBe('S STEP 1');
    upstream.send('OK\n');
    expect(await upstream.readLine()).toBe('TWO');
    upstream.send('ERR 1 no\n');
    expect(await client.response()).toEqual(['OK']);
    expect(await client.response()).toEqual(['ERR 1 no']);
    expect(agent.journal.slice(1)).toEqual(['recv ONE', 'send S STEP 1', 'send OK', 'recv TWO', 'send ERR 1 no']);
    client.destroy();
  });

  it('pipelined input piles up to a bound (64 KiB), then the client is paused; nothing is lost', async () => {
    const { client, upstream } = await connected();
    client.write('FIRST\n');
    expect(await upstream.readLine()).toBe('FIRST');
    // The agent holds FIRST's answer while the client keeps writing, up to far more than the bound: either the
    // proxy stops reading the client, or it has taken in everything (no bound), and the test fails.
    const session = () => proxy.proxy.sessions().find((s) => s.command === 'UNKNOWN' && s.state === 'waitingForAgent')!;
    const chunk = Buffer.from('NOP\n'.repeat(4 * 1024));
    const limit = 8 * 1024 * 1024;
    let written = 0;
    while (!session().clientPaused) {
      if (written < limit) {
        client.socket.write(chunk);
        written += chunk.length;
      } else if (client.socket.writableLength === 0) {
        break;
      }
      await new Promise((r) => setImmediate(r));
    }
    expect(session().clientPaused).toBe(true);
    expect(written).toBeLessThan(limit);
    // At most the bound plus one socket read (64 KiB) is held.
    expect(session().bufferedClientBytes).toBeLessThanOrEqual(2 * 64 * 1024);
    // Every pipelined line still reaches the agent, in order, once FIRST is answered.
    upstream.send('OK\n');
    const lines = written / 4;
    for (let i = 0; i < lines; i++) {
      expect(await upstream.readLine()).toBe('NOP');
      upstream.send('OK\n');
    }
    const answers = [];
    for (let i = 0; i <= lines; i++) answers.push(await client.readLine());
    expect(answers.every((a) => a === 'OK')).toBe(true);
    client.destroy();
  });

  it('when the agent ends a command mid-INQUIRE, its reader is done: the rest of the answer reaches it as commands, one at a time, as directly', async () => {
    const { client, upstream } = await connected();
    client.write('PRESET_PASSPHRASE --inquire GRIP -1\n');
    await upstream.readLine();
    upstream.send('INQUIRE PASSPHRASE\n');
    await client.readLine();
    client.write('D part1\n');
    expect(await upstream.readLine()).toBe('D part1');
    // An agent whose inquiry reader returned early (libassuan's does not: it reads on to END) ends the command.
    upstream.send('ERR 67109137 Too much data for IPC layer <GPG Agent>\n');
    expect(await client.response()).toEqual(['ERR 67109137 Too much data for IPC layer <GPG Agent>']);
    client.write('D part2\nEND\nNOP\n');
    // Its command loop reads each line as a command, and answers it before the next is sent.
    expect(await upstream.readLine()).toBe('D part2');
    upstream.send('ERR 67108933 Not implemented <GPG Agent>\n');
    expect(await upstream.readLine()).toBe('END');
    upstream.send('ERR 67108933 Not implemented <GPG Agent>\n');
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['ERR 67108933 Not implemented <GPG Agent>']);
    expect(await client.response()).toEqual(['ERR 67108933 Not implemented <GPG Agent>']);
    expect(await client.response()).toEqual(['OK']);
    const received = agent.journal.filter((e) => e.startsWith('recv'));
    expect(received.slice(-5)).toEqual(['recv PRESET_PASSPHRASE --inquire GRIP -1', 'recv D part1', 'recv D part2', 'recv END', 'recv NOP']);
    client.destroy();
  });

  it('an agent that closes before greeting: the client gets one ERR naming the cause, then a close', async () => {
    const client = await RawClient.connect(proxy.socket);
    (await agent.nextConnection()).end();
    expect(await client.rest()).toEqual(['ERR 67125247 End of file <assuan-proxy> - gpg-agent closed the connection before its greeting (EOF)']);
  });

  it('an agent that closes mid-command: the client gets one ERR, then a close', async () => {
    const { client, upstream } = await connected();
    client.write('PKSIGN\n');
    await upstream.readLine();
    upstream.send('S PROGRESS x\n');
    upstream.destroy();
    expect(await client.rest()).toEqual(['S PROGRESS x', 'ERR 67125247 End of file <assuan-proxy> - gpg-agent closed the connection (EOF)']);
  });

  it('an agent that never greets: ERR Timeout after the greeting timeout', async () => {
    const client = await RawClient.connect(proxy.socket);
    await agent.nextConnection();
    expect(await client.rest()).toEqual(['ERR 67108926 Timeout <assuan-proxy> - gpg-agent did not greet in time']);
  });

  it('an agent that sends a non-Assuan line: ERR, close, and the line is not relayed', async () => {
    const { client, upstream } = await connected();
    client.write('NOP\n');
    await upstream.readLine();
    upstream.send('hello, I am not Assuan\n');
    expect(await client.rest()).toEqual(['ERR 67109124 Invalid IPC response <assuan-proxy> - gpg-agent sent a line that is not valid here']);
  });

  it('agent output with no command pending: ERR and close', async () => {
    const { client, upstream } = await connected();
    upstream.send('S UNASKED\n');
    expect(await client.rest()).toEqual(['ERR 67109124 Invalid IPC response <assuan-proxy> - gpg-agent sent output with no command pending']);
  });

  it('one failing session leaves the others running', async () => {
    const a = await connected();
    const b = await connected();
    a.upstream.destroy();
    expect(await a.client.rest()).toEqual(['ERR 67125247 End of file <assuan-proxy> - gpg-agent closed the connection (EOF)']);
    b.client.write('NOP\n');
    expect(await b.upstream.readLine()).toBe('NOP');
    b.upstream.send('OK\n');
    expect(await b.client.response()).toEqual(['OK']);
    b.client.destroy();
  });
});

describe('after the scripted faults', () => {
  it('every event the sockets produced was one its state handles', async () => {
    await sessionsDrained(proxy.proxy);
    expect(rejectedEvents(proxy.logs).map((r) => [r.event, r.state])).toEqual([]);
  });
});

describe('unreachable upstream', () => {
  it('each client gets one ERR naming the cause in place of the greeting; the proxy keeps serving', async () => {
    const dir = makeTempDir('none.');
    const missing = path.join(dir, 'S.gpg-agent');
    const unreachable = await startTestProxy({ upstream: missing });
    try {
      for (let i = 0; i < 3; i++) {
        const client = await RawClient.connect(unreachable.socket);
        expect(await client.rest()).toEqual([`ERR 67109123 IPC connect call failed <assuan-proxy> - cannot connect to gpg-agent at ${missing}: ENOENT`]);
      }
      await sessionsDrained(unreachable.proxy);
      expect(unreachable.logs.filter((r) => r.msg === 'session ended').map((r) => r.outcome)).toEqual(['failed', 'failed', 'failed']);
    } finally {
      await unreachable.close();
    }
  });
});
