/**
 * The client end owns the path where gpg on the far side looks for its agent: it refuses a live gpg-agent there
 * (the link gives up at once, saying why), replaces a stale socket, and takes the path back when something
 * replaces its socket while it runs.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { clientEndCode, startTestForward } from '../support/forward.js';
import { spawn } from 'node:child_process';
import { createAgentHome, makeTempDir, type AgentHome } from '../support/gnupg.js';
import { until } from '../support/sessions.js';

let agent: AgentHome;
let dir: string;

beforeAll(async () => {
  agent = await createAgentHome();
  dir = makeTempDir('far.');
});
afterAll(async () => {
  await agent?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('bridge: the far side path', () => {
  it('a gpg-agent running at the path: the client end refuses, saying how to stop it, and the link gives up without retrying', async () => {
    const farAgent = await createAgentHome();
    try {
      const link = await startTestForward({ upstream: agent.socket, remoteSocket: farAgent.socket });
      expect(await link.forward.done).toBe('failed');
      expect(link.forward.failure()).toEqual({ reason: 'refused', message: expect.stringMatching(/a gpg-agent is running at .*: stop it \(gpgconf --kill gpg-agent\) and keep it from starting again \(no-autostart/) });
      expect(link.logs.filter((r) => r.msg === 'link spawning')).toHaveLength(1);
      // Its socket was not touched: the agent there still answers.
      const direct = await RawClient.connect(farAgent.socket);
      expect(await direct.readLine()).toMatch(/^OK Pleased/);
      direct.destroy();
    } finally {
      await farAgent.cleanup();
    }
  });

  it('a stale socket at the path is replaced', async () => {
    const remoteSocket = path.join(dir, 'stale', 'S.gpg-agent');
    fs.mkdirSync(path.dirname(remoteSocket), { mode: 0o700 });
    const stale = net.createServer();
    await new Promise<void>((resolve) => stale.listen(remoteSocket, resolve));
    // A server that is gone leaves its socket file behind (closing it through a renamed path keeps the file).
    fs.renameSync(remoteSocket, `${remoteSocket}.tmp`);
    await new Promise<void>((resolve) => stale.close(() => resolve()));
    fs.renameSync(`${remoteSocket}.tmp`, remoteSocket);
    expect(fs.lstatSync(remoteSocket).isSocket()).toBe(true);
    const link = await startTestForward({ upstream: agent.socket, remoteSocket });
    try {
      await until(() => link.forward.state().startsWith('up.'));
      const client = await RawClient.connect(remoteSocket);
      expect(await client.readLine()).toMatch(/^OK Pleased/);
      client.destroy();
    } finally {
      await link.close();
    }
  });

  it('something replaces the socket while the link runs (as an agent started there would): logged loudly, and the path taken back', async () => {
    const remoteSocket = path.join(dir, 'taken', 'S.gpg-agent');
    const link = await startTestForward({ upstream: agent.socket, remoteSocket });
    const intruder = net.createServer((c) => c.end('OK intruder\n'));
    try {
      await until(() => link.forward.state().startsWith('up.') && fs.existsSync(remoteSocket));
      fs.unlinkSync(remoteSocket);
      await new Promise<void>((resolve) => intruder.listen(remoteSocket, resolve));
      await until(() => link.logs.some((r) => r.msg === 'client end' && String(r.line).includes('socket bound again')));
      expect(link.logs.some((r) => r.msg === 'client end' && String(r.line).includes('something replaced our socket') && String(r.line).includes('gpgconf --kill gpg-agent'))).toBe(true);
      const client = await RawClient.connect(remoteSocket);
      expect(await client.readLine()).toMatch(/^OK Pleased/);
      client.destroy();
    } finally {
      intruder.close();
      await link.close();
    }
  });

  it('a client that connects before the link is up waits for it within --link-wait, then gets an ERR', async () => {
    const code = path.join(dir, 'assuan-proxy.mjs');
    fs.writeFileSync(code, await clientEndCode());
    const remoteSocket = path.join(dir, 'waiting', 'S.gpg-agent');
    // A client end whose agent end never answers: the link does not come up.
    const far = spawn(process.execPath, [code, 'client-end', '--listen', remoteSocket, '--link-wait', '300'], { stdio: ['pipe', 'pipe', 'ignore'] });
    try {
      await until(() => fs.existsSync(remoteSocket));
      const client = await RawClient.connect(remoteSocket);
      expect(await client.rest()).toEqual(['ERR 67109123 IPC connect call failed <assuan-proxy> - the link to the agent is not up after 300 ms']);
    } finally {
      far.kill();
    }
  });
});
