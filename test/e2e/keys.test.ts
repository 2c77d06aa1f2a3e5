/**
 * `--keys` with real gpg and a real gpg-agent holding two keys: the allowed one signs and decrypts through the
 * proxy (its fingerprint allows its subkeys); the other cannot be used, and the agent's own IPC log shows that no
 * line naming it ever reached the agent.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgentHome, createClientHome, generateKey, keygripsOf, mustRun, runTool, type AgentHome, type KeyInfo } from '../support/gnupg.js';
import { runCli } from '../support/cli.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

const MESSAGE = Buffer.from('only the allowed key\n');

let agent: AgentHome;
let agentLog: string;
let allowed: KeyInfo;
let other: KeyInfo;
let client: { home: string; socket: string; cleanup(): void };
let proxy: TestProxy;
let auditFile: string;

/** Every keygrip of a key: its primary's and its subkeys'. */
const keygrips = (fingerprint: string) => keygripsOf(agent.home, fingerprint);

beforeAll(async () => {
  const logDir = fs.mkdtempSync('/tmp/apx-keys.');
  agentLog = path.join(logDir, 'agent.log');
  // debug ipc: the agent logs every line it reads, so the test sees what reached it.
  agent = await createAgentHome({ agentConf: `log-file ${agentLog}\ndebug ipc\n` });
  allowed = await generateKey(agent.home, 'Allowed <allowed@example.org>', 'future-default', '');
  other = await generateKey(agent.home, 'Other <other@example.org>', 'future-default', '');
  client = await createClientHome(agent.home);
  auditFile = path.join(logDir, 'audit', 'audit.jsonl');
  proxy = await startTestProxy({
    upstream: agent.socket,
    listen: client.socket,
    keys: [allowed.fingerprint],
    audit: auditFile,
    env: { ...process.env, GNUPGHOME: agent.home },
    warmUpSessions: 0,
  });
});
afterAll(async () => {
  await proxy?.close();
  client?.cleanup();
  await agent?.cleanup();
  fs.rmSync(path.dirname(agentLog), { recursive: true, force: true });
});

describe('--keys FINGERPRINT', () => {
  it('resolves the fingerprint to the key and its subkeys at start', async () => {
    const grips = await keygrips(allowed.fingerprint);
    expect(grips).toHaveLength(2);
    expect(proxy.logs.some((l) => l.msg.includes('--keys: a fingerprint') && JSON.stringify(l.keygrips) === JSON.stringify(grips))).toBe(true);
  });

  it('the allowed key signs and decrypts through the proxy', async () => {
    const signature = await mustRun('gpg', client.home, ['--batch', '-u', allowed.fingerprint, '--detach-sign', '-o', '-'], MESSAGE);
    const file = path.join(client.home, 'sig');
    fs.writeFileSync(file, signature);
    expect((await mustRun('gpg', agent.home, ['--batch', '--status-fd', '1', '--verify', file, '-'], MESSAGE)).toString()).toContain(`VALIDSIG ${allowed.fingerprint}`);
    const encrypted = await mustRun('gpg', agent.home, ['--batch', '--trust-model', 'always', '-r', allowed.fingerprint, '--encrypt', '-o', '-'], MESSAGE);
    expect(await mustRun('gpg', client.home, ['--batch', '--decrypt'], encrypted)).toEqual(MESSAGE);
  });

  it('the other key cannot be used: gpg fails, the refusal is logged, and no line naming it reached the agent', async () => {
    const encrypted = await mustRun('gpg', agent.home, ['--batch', '--trust-model', 'always', '-r', other.fingerprint, '--encrypt', '-o', '-'], MESSAGE);
    // From here on, only what comes through the proxy reaches the agent.
    const from = fs.statSync(agentLog).size;
    const signing = await runTool('gpg', client.home, ['--batch', '-u', other.fingerprint, '--detach-sign', '-o', '-'], MESSAGE);
    expect(signing.code).not.toBe(0);
    const decrypting = await runTool('gpg', client.home, ['--batch', '--decrypt'], encrypted);
    expect(decrypting.code).not.toBe(0);
    expect(proxy.logs.filter((l) => l.msg === 'refused by policy' && l.rule === 'keys').length).toBeGreaterThan(0);

    // gpg asked about the allowed key too, through the proxy: the log records what reaches the agent.
    const seen = fs.readFileSync(agentLog).subarray(from).toString('latin1');
    expect(seen).toMatch(/DBG: chan_\d+ <- /);
    for (const grip of await keygrips(other.fingerprint)) expect(seen).not.toContain(grip);
  });
});

describe('--audit FILE', () => {
  const records = () =>
    fs
      .readFileSync(auditFile, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  it('holds one line per key use (the key the agent accepted, the hash) and per refusal, 0600, and nothing secret', async () => {
    await proxy.proxy.close();
    const [signGrip, encryptGrip] = await keygrips(allowed.fingerprint);
    const otherGrips = await keygrips(other.fingerprint);
    const all = records();
    expect(all).toContainEqual(
      expect.objectContaining({ verb: 'PKSIGN', keygrip: signGrip, userId: 'Allowed <allowed@example.org>', hash: expect.stringMatching(/^sha(256|384|512)$/), decision: 'relayed', result: 'ok' }),
    );
    expect(all).toContainEqual(expect.objectContaining({ verb: 'PKDECRYPT', keygrip: encryptGrip, decision: 'relayed', result: 'ok' }));
    expect(all.filter((r) => r.decision === 'refused')).toContainEqual(expect.objectContaining({ rule: 'keys', during: 'command', keygrip: expect.toBeOneOf(otherGrips) }));
    // The use of the other key never happened, so no use names it.
    expect(all.filter((r) => r.decision === 'relayed' && otherGrips.includes(r.keygrip as string))).toEqual([]);
    for (const record of all) expect(Object.keys(record).every((k) => ['time', 'session', 'caller', 'verb', 'keygrip', 'userId', 'hash', 'decision', 'consent', 'rule', 'during', 'result', 'code', 'ms', 'card', 'link', 'replaced', 'count'].includes(k))).toBe(true);
    expect(fs.statSync(auditFile).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(auditFile, 'latin1');
    expect(text).not.toContain(MESSAGE.toString().trim());
    // No hash value, nonce or key material: the only long hex runs are keygrips.
    expect(text.match(/[0-9A-Fa-f]{41,}/g)).toBeNull();
  });

  it('`assuan-proxy audit FILE` summarizes it per key and per caller', async () => {
    const [signGrip] = await keygrips(allowed.fingerprint);
    const run = runCli(['audit', auditFile], {});
    expect(await run.exited).toBe(0);
    expect(run.stdout()).toMatch(new RegExp(`^  ${signGrip} \\(Allowed <allowed@example.org>\\): PKSIGN 1; 0 failed at the agent, 0 refused by policy; last \\d{4}-`, 'm'));
    // Grouped by program and user, not by pid: the gpg runs are one caller.
    expect(run.stdout()).toMatch(new RegExp(`^  gpg \\(uid ${process.getuid!()}, [^)]*\\): .*PKSIGN 1.*PKDECRYPT 1`, 'm'));
    expect(run.stdout()).toMatch(/^Refusals by rule: keys \d+$/m);
    const json = runCli(['audit', '--json', auditFile], {});
    expect(await json.exited).toBe(0);
    expect(JSON.parse(json.stdout())).toMatchObject({ byKey: { [signGrip!]: { uses: { PKSIGN: 1 } } } });
  });
});
