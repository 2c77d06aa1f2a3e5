/**
 * `--max-crypto 1` with 32 real `gpg --detach-sign` at once through the proxy: every signature is made and
 * verifies, and the agent's own IPC log shows its key operations one at a time: no PKSIGN reaches it before the
 * one before has been answered.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentHome, createClientHome, generateKey, mustRun, runTool, type AgentHome, type KeyInfo } from '../support/gnupg.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

let agent: AgentHome;
let agentLog: string;
let key: KeyInfo;
let client: { home: string; socket: string; cleanup(): void };
let proxy: TestProxy;

beforeAll(async () => {
  const logDir = fs.mkdtempSync('/tmp/apx-maxcrypto.');
  agentLog = path.join(logDir, 'agent.log');
  agent = await createAgentHome({ agentConf: `log-file ${agentLog}\ndebug ipc\n` });
  key = await generateKey(agent.home, 'Parallel Signer <parallel@example.org>', 'future-default', '');
  client = await createClientHome(agent.home);
  proxy = await startTestProxy({ upstream: agent.socket, listen: client.socket, maxCrypto: 1, env: { ...process.env, GNUPGHOME: agent.home }, warmUpSessions: 0 });
});
afterAll(async () => {
  await proxy?.close();
  client?.cleanup();
  await agent?.cleanup();
  if (agentLog) fs.rmSync(path.dirname(agentLog), { recursive: true, force: true });
});

describe('--max-crypto 1 with 32 gpg --detach-sign at once', () => {
  it('all sign, all verify, and the agent reads each PKSIGN only after the one before was answered', async () => {
    const from = fs.statSync(agentLog).size;
    const messages = Array.from({ length: 32 }, (_, i) => Buffer.from(`message ${i}\n`));
    const signing = await Promise.all(messages.map((message) => runTool('gpg', client.home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', '-'], message)));
    expect(signing.map((r) => r.code)).toEqual(messages.map(() => 0));
    for (const [i, result] of signing.entries()) {
      const file = path.join(client.home, `sig-${i}`);
      fs.writeFileSync(file, result.stdout);
      expect((await mustRun('gpg', agent.home, ['--batch', '--status-fd', '1', '--verify', file, '-'], messages[i])).toString()).toContain(`VALIDSIG ${key.fingerprint}`);
    }
    // The agent's channels, in the order it read and answered: `chan_N <- PKSIGN`, then `chan_N -> OK|ERR`.
    const events = fs
      .readFileSync(agentLog)
      .subarray(from)
      .toString('latin1')
      .split('\n')
      .flatMap((line) => {
        const m = /DBG: (chan_\d+) (<-|->) (\S+)/.exec(line);
        return m ? [{ channel: m[1]!, way: m[2]!, word: m[3]! }] : [];
      });
    let inFlight: string | undefined;
    let signs = 0;
    for (const event of events) {
      if (event.way === '<-' && event.word === 'PKSIGN') {
        expect(inFlight, 'a PKSIGN reached the agent while another was in flight').toBeUndefined();
        inFlight = event.channel;
        signs++;
      } else if (event.way === '->' && event.channel === inFlight && (event.word === 'OK' || event.word === 'ERR')) {
        inFlight = undefined;
      }
    }
    expect(signs).toBe(32);
  });
});
