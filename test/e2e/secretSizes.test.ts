/**
 * Not even the length of a secret answer is published: the bytes of a client's answer to an INQUIRE whose answer
 * is secret (a passphrase) are left out of the byte counts the live view, the listing and the log show, and the
 * machine event for each of its lines carries no byte count.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectionEvent } from 'xstate';
import { sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent } from '../support/scriptedAgent.js';
import { greetedSession } from '../support/sessions.js';

let agent: ScriptedAgent;
let proxy: TestProxy;
const clientLines: Array<Record<string, unknown>> = [];
const agentLines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  agent = await createScriptedAgent();
  proxy = await startTestProxy({
    upstream: agent.socket,
    inspect: (event: InspectionEvent) => {
      if (event.type === '@xstate.event' && event.event.type.startsWith('CLIENT.')) clientLines.push({ ...event.event });
      if (event.type === '@xstate.event' && event.event.type.startsWith('AGENT.')) agentLines.push({ ...event.event });
    },
  });
});
afterAll(async () => {
  await proxy?.close();
  await agent?.close();
});

describe('the size of a secret answer', () => {
  it.each([
    ['PASSPHRASE', true],
    ['CIPHERTEXT', false],
  ] as const)('INQUIRE %s: the answer is secret = %s', async (keyword, secret) => {
    clientLines.length = 0;
    const { client, upstream } = await greetedSession(proxy.socket, agent);
    const session = () => proxy.proxy.sessions()[0]!;
    client.write('PKSIGN\n');
    await upstream.readLine();
    upstream.send(`INQUIRE ${keyword}\n`);
    await client.readLine();
    const before = session().bytesFromClient;
    // As libassuan writes it: the line, then its LF, in two writes.
    client.write('D correct horse battery');
    client.write('\n');
    expect(await upstream.readLine()).toBe('D correct horse battery');
    client.write('END\n');
    expect(await upstream.readLine()).toBe('END');
    const answerBytes = 'D correct horse battery\nEND\n'.length;
    expect(session().bytesFromClient - before).toBe(secret ? 0 : answerBytes);
    const answerEvents = clientLines.filter((e) => e.type === 'CLIENT.DATA' || e.type === 'CLIENT.END');
    expect(answerEvents.map((e) => 'bytes' in e)).toEqual([!secret, !secret]);
    upstream.send('OK\n');
    await client.response();
    client.destroy();
    await sessionsDrained(proxy.proxy);
    const summary = proxy.logs.filter((r) => r.msg === 'session ended').at(-1)!;
    expect(summary.bytesFromClient).toBe('PKSIGN\n'.length + (secret ? 0 : answerBytes));
    // The debug record of the command gives no sizes once it carried a secret (its bytes to the agent would).
    const done = proxy.logs.filter((r) => r.msg === 'command done' && r.verb === 'PKSIGN').at(-1)!;
    if (secret) {
      expect(done.sizes).toBe('withheld');
      expect(done).not.toHaveProperty('toAgent');
    } else {
      expect(done.toAgent).toBe('PKSIGN\n'.length + answerBytes);
    }
  });

  it.each([
    ['GET_PASSPHRASE', true],
    ['GETINFO', false],
  ] as const)('the answer of %s: secret = %s', async (verb, secret) => {
    agentLines.length = 0;
    const { client, upstream } = await greetedSession(proxy.socket, agent);
    client.write(`${verb} x\n`);
    await upstream.readLine();
    // GET_PASSPHRASE without --data answers with the passphrase in hex in its OK line.
    const answer = 'OK 636F727265637420686F727365\n';
    upstream.send(answer);
    expect(await client.response()).toEqual([answer.trimEnd()]);
    expect(proxy.proxy.sessions()[0]!.bytesToClient).toBe('OK hi\n'.length + (secret ? 0 : answer.length));
    expect(agentLines.filter((e) => e.type === 'AGENT.OK').map((e) => 'bytes' in e)).toEqual([true, !secret]); // greeting, answer
    client.destroy();
    await sessionsDrained(proxy.proxy);
    const done = proxy.logs.filter((r) => r.msg === 'command done' && r.verb === verb).at(-1)!;
    expect(done.sizes === 'withheld').toBe(secret);
  });
});
