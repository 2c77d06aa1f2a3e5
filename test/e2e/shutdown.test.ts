/**
 * Shutdown (SIGINT/SIGTERM and close() alike) over real sockets: stop accepting, let commands in flight finish
 * within the drain timeout, close the rest, remove our socket.
 */
import fs from 'node:fs';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { transitionRecorder } from '../../src/machineTools/trace.js';
import { RawClient } from '../support/assuanClient.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent, type ScriptedConnection } from '../support/scriptedAgent.js';
import { greetedSession, lingeringAfterBye, liveSocketPath, until } from '../support/sessions.js';

let agent: ScriptedAgent;
beforeAll(async () => {
  agent = await createScriptedAgent();
});
afterAll(async () => {
  await agent?.close();
});


async function proxyWithTrace(options: { drainTimeoutMs?: number; closeGraceMs?: number } = {}) {
  const taken: string[] = [];
  const proxy = await startTestProxy({ upstream: agent.socket, ...options, inspect: transitionRecorder(({ key }) => taken.push(key)) });
  return { proxy, taken };
}

const greeted = (proxy: TestProxy) => greetedSession(proxy.socket, agent);

function refused(socket: string): Promise<string> {
  return new Promise((resolve) => {
    const probe = net.connect({ path: socket });
    probe.once('connect', () => {
      probe.destroy();
      resolve('connected');
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

describe('shutdown', () => {
  it('with idle sessions: they close at once, the socket is removed, and no new client gets in', async () => {
    const { proxy, taken } = await proxyWithTrace();
    const { client } = await greeted(proxy);
    await proxy.proxy.close();
    expect(await client.rest()).toEqual([]);
    expect(fs.existsSync(proxy.socket)).toBe(false);
    expect(await refused(proxy.socket)).toBe('ENOENT');
    expect(taken).toEqual(expect.arrayContaining(['server.starting|listen done', 'server.listening|SHUTDOWN', 'session|STOP', 'server.draining|waitForSessions done']));
    await proxy.close();
  });

  it.each([
    ['waitingForAgent', async () => {}],
    ['sendingToClient', async (client: RawClient, upstream: ScriptedConnection) => {
      upstream.send('S PROGRESS x\n');
      expect(await client.readLine()).toBe('S PROGRESS x');
    }],
    ['bufferingInquire', async (client: RawClient, upstream: ScriptedConnection) => {
      upstream.send('INQUIRE CIPHERTEXT\n');
      expect(await client.readLine()).toBe('INQUIRE CIPHERTEXT');
    }],
  ] as const)('with a command in flight (%s): it finishes, its client gets the whole answer, then the session closes', async (where, arrange) => {
    const { proxy, taken } = await proxyWithTrace();
    const { client, upstream } = await greeted(proxy);
    client.write('PKDECRYPT\n');
    await upstream.readLine();
    await arrange(client, upstream);
    const closed = proxy.proxy.close();
    // A second signal (npm relays Ctrl-C) changes nothing.
    void proxy.proxy.close();
    await until(() => taken.includes('session.command|STOP'));
    expect(await refused(proxy.socket)).not.toBe('connected');
    if (where === 'bufferingInquire') {
      client.write('D 1234\nEND\n');
      expect(await upstream.readLine()).toBe('D 1234');
      expect(await upstream.readLine()).toBe('END');
    }
    upstream.send('D result\nOK\n');
    expect(await client.rest()).toEqual(['D result', 'OK']);
    await closed;
    expect(taken).toContain('server.draining|SHUTDOWN');
    expect(fs.existsSync(proxy.socket)).toBe(false);
    await proxy.close();
  });

  it('past the drain timeout the remaining sessions are closed cleanly, and close() resolves', async () => {
    const { proxy, taken } = await proxyWithTrace({ drainTimeoutMs: 50 });
    const { client, upstream } = await greeted(proxy);
    client.write('PKSIGN\n');
    await upstream.readLine();
    // The agent never answers (a pinentry nobody attends to).
    await proxy.proxy.close();
    // The session cut at the drain timeout still ended with its record before close() resolved.
    expect(proxy.logs.filter((r) => r.msg === 'session ended')).toEqual([expect.objectContaining({ outcome: 'closed' })]);
    expect(await client.rest()).toEqual([]);
    expect(taken).toEqual(expect.arrayContaining(['server.draining|after drainTimeout', 'session|STOP_NOW', 'server.closingSessions|waitForSessions done']));
    await proxy.close();
  });

  it('a session already closing stays closing through the shutdown', async () => {
    const { proxy, taken } = await proxyWithTrace({ drainTimeoutMs: 50, closeGraceMs: 60_000 });
    const { client, upstream } = await lingeringAfterBye(proxy.socket, agent);
    await until(() => proxy.proxy.sessions()[0]?.state === 'closing');
    const closed = proxy.proxy.close();
    await until(() => taken.includes('session.closing|STOP_NOW'));
    expect(taken).toContain('session.closing|STOP');
    // A second shutdown request (npm relays Ctrl-C) while the last sessions close changes nothing.
    void proxy.proxy.close();
    expect(taken).toContain('server.closingSessions|SHUTDOWN');
    // Past the drain time the server still waits for the session's own end, so that it leaves its record.
    expect(proxy.proxy.sessionCount).toBe(1);
    client.destroy();
    upstream.destroy();
    await closed;
    expect(proxy.logs.filter((r) => r.msg === 'session ended')).toHaveLength(1);
    await proxy.close();
  });

  it('a refused start (a live socket at the path) is the server machine failing to start', async () => {
    const { socket, release } = await liveSocketPath();
    const taken: string[] = [];
    try {
      const start = startTestProxy({ upstream: agent.socket, listen: socket, inspect: transitionRecorder(({ key }) => taken.push(key)) });
      await expect(start).rejects.toThrow(`something is already listening on ${socket}`);
      expect(taken).toEqual(['server.starting|listen error']);
    } finally {
      release();
    }
  });
});
