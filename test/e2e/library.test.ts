/**
 * The library behaves as the CLI does, except where the README says otherwise: the same default logger, a hook for
 * each session's end, and no gpg-agent started in the caller's GNUPGHOME unless asked (`launchAgent`).
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { createAgentHome, gpgconfDir, makeTempDir, type AgentHome } from '../support/gnupg.js';
import { startTestProxy } from '../support/proxy.js';
import type { SessionSummary } from '../../src/index.js';

const run = promisify(execFile);
let agent: AgentHome;
const homes: string[] = [];

beforeAll(async () => {
  agent = await createAgentHome();
});
afterAll(async () => {
  for (const home of homes) {
    await run('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: home } }).catch(() => {});
    fs.rmSync(home, { recursive: true, force: true });
  }
  await agent?.cleanup();
});

describe('the library', () => {
  it('with no upstream, relays to the agent gpgconf names, but starts none unless asked (launchAgent: true)', async () => {
    const home = makeTempDir('gpgh.');
    homes.push(home);
    const env = { ...process.env, GNUPGHOME: home };
    const agentSocket = await gpgconfDir(home, 'agent-socket');

    const notAsked = await startTestProxy({ upstream: undefined, env, warmUpSessions: 0 });
    expect(notAsked.proxy.upstreamPath).toBe(agentSocket);
    const client = await RawClient.connect(notAsked.socket);
    expect(await client.rest()).toEqual([expect.stringMatching(/^ERR \d+ .*cannot connect to gpg-agent at .*: (ENOENT|ECONNREFUSED)/)]);
    // Before the fix, starting the proxy had started an agent in this home.
    expect(fs.existsSync(agentSocket)).toBe(false);
    await notAsked.close();

    const asked = await startTestProxy({ upstream: undefined, env, warmUpSessions: 0, launchAgent: true });
    expect(fs.existsSync(agentSocket)).toBe(true);
    const served = await RawClient.connect(asked.socket);
    expect(await served.readLine()).toMatch(/^OK Pleased/);
    expect(await served.request('GETINFO version')).toEqual([expect.stringMatching(/^D 2\.\d+\.\d+$/), 'OK']);
    served.destroy();
    await asked.close();
  });

  it('calls onSessionEnd once per session with its summary; a hook that throws is logged and the proxy serves on', async () => {
    const ended: SessionSummary[] = [];
    const proxy = await startTestProxy({
      upstream: agent.socket,
      warmUpSessions: 0,
      onSessionEnd: (summary) => {
        ended.push(summary);
        throw new Error('a broken hook');
      },
    });
    for (let i = 0; i < 2; i++) {
      const client = await RawClient.connect(proxy.socket);
      expect(await client.readLine()).toMatch(/^OK Pleased/);
      expect(await client.request('NOP')).toEqual(['OK']);
      client.write('BYE\n');
      expect(await client.rest()).toEqual(['OK closing connection']);
    }
    await proxy.close();
    expect(ended).toEqual([
      expect.objectContaining({ sessionId: '1', outcome: 'closed', failure: null, commands: 2 }),
      expect.objectContaining({ sessionId: '2', outcome: 'closed', failure: null, commands: 2 }),
    ]);
    expect(proxy.logs.filter((r) => r.msg === 'onSessionEnd hook threw')).toHaveLength(2);
  });

  it('logs as the CLI does when given no logger: info JSON lines on stdout, one per session', async () => {
    const dir = makeTempDir('apx.');
    const listen = path.join(dir, 'S.gpg-agent');
    // A program embedding the proxy, run as its own process so that its stdout can be read.
    const program = `
      const { startProxy } = await import(${JSON.stringify(path.resolve('src/index.ts'))});
      const proxy = await startProxy({
        upstream: ${JSON.stringify(agent.socket)}, listen: ${JSON.stringify(listen)}, warmUpSessions: 0,
        onSessionEnd: () => void proxy.close(),
      });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    while (!stdout.includes('"msg":"listening"')) {
      const gone = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => child.stdout.once('data', () => r(false)))]);
      if (gone) throw new Error(`the program exited: ${stderr}`);
    }
    const client = await RawClient.connect(listen);
    expect(await client.readLine()).toMatch(/^OK Pleased/);
    client.write('BYE\n');
    expect(await client.rest()).toEqual(['OK closing connection']);
    expect(await exited).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
    const records = stdout.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
    // Before the fix the library's default logger was silent: nothing was written.
    expect(records.map((r) => r.msg)).toEqual(['listening', 'session ended', 'shutting down: no new connections; commands in flight may finish', 'stopped']);
    expect(records[1]).toMatchObject({ level: 30, svc: 'assuan-proxy', session: '1', outcome: 'closed', commands: 1 });
  });
});
