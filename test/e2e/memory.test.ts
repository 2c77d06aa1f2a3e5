/**
 * What an idle session costs: the JS heap held per greeted session, with the clients' own sockets counted too.
 * Sessions share one machine definition; a machine per session (each with its own state nodes) cost ~75 KiB.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { createAgentHome, type AgentHome } from '../support/gnupg.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const SESSIONS = 200;

function heapAfterGc(): number {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}

describe('memory per idle session', () => {
  let agent: AgentHome;
  let proxy: TestProxy;
  beforeAll(async () => {
    agent = await createAgentHome();
    proxy = await startTestProxy({ upstream: agent.socket, maxSessions: SESSIONS + 10 });
  });
  afterAll(async () => {
    await proxy?.close();
    await agent?.cleanup();
  });

  it(`${SESSIONS} greeted idle sessions hold under 64 KiB of heap each`, async () => {
    // One session first, so that code and shared structures are already in the baseline.
    const first = await RawClient.connect(proxy.socket);
    expect(await first.readLine()).toMatch(/^OK/);
    const before = heapAfterGc();
    const clients = await Promise.all(Array.from({ length: SESSIONS }, () => RawClient.connect(proxy.socket)));
    for (const client of clients) expect(await client.readLine()).toMatch(/^OK/);
    expect(proxy.proxy.sessions().length).toBe(SESSIONS + 1);
    const perSession = (heapAfterGc() - before) / SESSIONS;
    expect(perSession, `${(perSession / 1024).toFixed(1)} KiB per session`).toBeLessThan(64 * 1024);
    for (const client of [first, ...clients]) client.destroy();
  });
});
