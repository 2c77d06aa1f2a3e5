/**
 * Runs of D lines: D lines that arrive back to back in one chunk go through the machine as one event (every state
 * treats a D line as the one before it left it), while the bytes relayed stay exactly the lines sent, and a D line
 * outside an INQUIRE is still a command of its own. One small write on a Unix socket arrives as one chunk.
 */
import type { AnyActorRef, InspectionEvent } from 'xstate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rejectedEvents, sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent } from '../support/scriptedAgent.js';
import { greetedSession } from '../support/sessions.js';

let agent: ScriptedAgent;
let proxy: TestProxy;
/** Line events each session's machine received: type, kind and byte count. */
const lineEvents = new Map<string, string[]>();

beforeAll(async () => {
  agent = await createScriptedAgent();
  proxy = await startTestProxy({
    upstream: agent.socket,
    inspect: (e: InspectionEvent) => {
      const actorId = (e.actorRef as AnyActorRef).id;
      if (e.type !== '@xstate.event' || !actorId.startsWith('session-')) return;
      const event = e.event as { type: string; bytes?: number };
      if (!event.type.startsWith('AGENT.') && !event.type.startsWith('CLIENT.')) return;
      const list = lineEvents.get(actorId) ?? [];
      list.push(`${event.type} ${event.bytes}`);
      lineEvents.set(actorId, list);
    },
  });
});
afterAll(async () => {
  await proxy?.close();
  await agent?.close();
});

/** The line events the session's machine has received so far. */
const events = (id: string) => lineEvents.get(`session-${id}`) ?? [];

async function session() {
  const before = new Set(proxy.proxy.sessions().map((s) => s.sessionId));
  const connected = await greetedSession(proxy.socket, agent);
  const id = proxy.proxy.sessions().find((s) => !before.has(s.sessionId))!.sessionId;
  return { ...connected, id };
}

describe('runs of D lines', () => {
  it("an answer's D lines in one chunk are one AGENT.DATA event, relayed byte for byte", async () => {
    const { client, upstream, id } = await session();
    client.write('GETINFO bench\n');
    expect(await upstream.readLine()).toBe('GETINFO bench');
    const answer = Buffer.concat([
      Buffer.from('D \x00\x01\xff%25\n', 'latin1'),
      Buffer.from('D second\n'),
      Buffer.from(`D ${'\xe9'.repeat(500)}\n`, 'latin1'),
      Buffer.from('S PROGRESS 1\nD after status\nOK\n'),
    ]);
    upstream.send(answer);
    expect(Buffer.concat(await client.responseBytes()).equals(answer)).toBe(true);
    expect(events(id).slice(-4)).toEqual([
      `AGENT.DATA ${9 + 9 + 503}`, // the three D lines, one run
      'AGENT.STATUS 13',
      'AGENT.DATA 15',
      'AGENT.OK 3',
    ]);
    client.destroy();
  });

  it("an INQUIRE answer's D lines in one chunk are one CLIENT.DATA event; END is its own", async () => {
    const { client, upstream, id } = await session();
    client.write('PKDECRYPT\n');
    expect(await upstream.readLine()).toBe('PKDECRYPT');
    upstream.send('INQUIRE CIPHERTEXT\n');
    expect(await client.readLine()).toBe('INQUIRE CIPHERTEXT');
    const data = Buffer.from('D \x80\x81\n# a comment\nD 1\nD 2\nD 3\n', 'latin1');
    client.write(Buffer.concat([data, Buffer.from('END\n')]));
    const received: Buffer[] = [];
    for (let line = await upstream.readLineBytes(); line && line.toString() !== 'END\n'; line = await upstream.readLineBytes()) received.push(line);
    expect(Buffer.concat(received).equals(data)).toBe(true);
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    expect(events(id).filter((e) => e.startsWith('CLIENT.'))).toEqual([
      'CLIENT.COMMAND 10', // PKDECRYPT
      'CLIENT.DATA 5', // D \x80\x81 (a comment follows: the run ends)
      'CLIENT.COMMENT 12',
      'CLIENT.DATA 12', // D 1, D 2, D 3
      'CLIENT.END 4',
    ]);
    client.destroy();
  });

  it('a run stops before a malformed D line: the lines before it reach the agent, the rest do not', async () => {
    const { client, upstream } = await session();
    client.write('PKDECRYPT\n');
    expect(await upstream.readLine()).toBe('PKDECRYPT');
    upstream.send('INQUIRE CIPHERTEXT\n');
    expect(await client.readLine()).toBe('INQUIRE CIPHERTEXT');
    client.write('D good\nD also good\nD bad %zz\nD after\nEND\n');
    expect(await upstream.readLine()).toBe('D good');
    expect(await upstream.readLine()).toBe('D also good');
    expect(await upstream.readLine()).toBe('CAN');
    upstream.send('ERR 99 cancelled\n');
    expect(await client.response()).toEqual([expect.stringMatching(/^ERR \d+ .*'%' not followed by two hex digits/)]);
    client.destroy();
  });

  it('outside an INQUIRE, pipelined D lines stay separate commands, each answered before the next is sent', async () => {
    const { client, upstream, id } = await session();
    client.write('D 1\nD 2\n');
    expect(await upstream.readLine()).toBe('D 1');
    upstream.send('ERR 67109139 Unknown IPC command\n');
    expect(await client.response()).toEqual(['ERR 67109139 Unknown IPC command']);
    expect(await upstream.readLine()).toBe('D 2');
    upstream.send('ERR 67109139 Unknown IPC command\n');
    expect(await client.response()).toEqual(['ERR 67109139 Unknown IPC command']);
    expect(events(id).filter((e) => e.startsWith('CLIENT.'))).toEqual(['CLIENT.DATA 4', 'CLIENT.DATA 4']);
    client.destroy();
    await sessionsDrained(proxy.proxy);
    expect(rejectedEvents(proxy.logs)).toEqual([]);
  });
});
