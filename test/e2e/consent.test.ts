/**
 * `--confirm`: with real gpg, a real gpg-agent and its scripted pinentry (test/support/pinentry.py), every key use
 * through the proxy waits for the person. Approved, it goes on; refused (Cancel, No), not answered in time, or with
 * no prompt possible, it never reaches the agent (the agent's own IPC log shows no PKSIGN/PKDECRYPT) and gpg gets
 * gpg-agent's own codes. The prompt the pinentry shows names who asks, what, with which key and hash, and holds no
 * secret; decision windows spare a second prompt for the same caller, key and operation; the audit file records
 * each decision.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAgentHome, createClientHome, generateKey, keygripsOf, mustRun, runTool, type AgentHome, type KeyInfo, type ScriptedPinentry } from '../support/gnupg.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

const MESSAGE = Buffer.from('asked first\n');

let agent: AgentHome & { pinentry: ScriptedPinentry };
let agentLog: string;
let logDir: string;
let key: KeyInfo;
let grips: string[];
let client: { home: string; socket: string; cleanup(): void };
let proxy: TestProxy;
let auditFile: string;
let encrypted: Buffer;

const promptsSince = (from: number) => agent.pinentry.promptsSince(from);
/** The agent's IPC log since byte `from`: every line it read. */
const agentReadSince = (from: number) => fs.readFileSync(agentLog).subarray(from).toString('latin1');
const records = () =>
  fs
    .readFileSync(auditFile, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);

const sign = () => runTool('gpg', client.home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', '-'], MESSAGE);
const decrypt = () => runTool('gpg', client.home, ['--batch', '--decrypt'], encrypted);

beforeAll(async () => {
  logDir = fs.mkdtempSync('/tmp/apx-consent.');
  agentLog = path.join(logDir, 'agent.log');
  agent = await createAgentHome({ agentConf: `log-file ${agentLog}\ndebug ipc\n` });
  key = await generateKey(agent.home, 'Signer Person <signer@example.org>', 'future-default', '');
  grips = await keygripsOf(agent.home, key.fingerprint);
  encrypted = await mustRun('gpg', agent.home, ['--batch', '--trust-model', 'always', '-r', key.fingerprint, '--encrypt', '-o', '-'], MESSAGE);
  client = await createClientHome(agent.home);
  auditFile = path.join(logDir, 'audit.jsonl');
  proxy = await startTestProxy({
    upstream: agent.socket,
    listen: client.socket,
    confirm: ['sign,decrypt'],
    confirmWindow: ['decrypt=300'],
    confirmTimeoutMs: 3_000,
    audit: auditFile,
    env: { ...process.env, GNUPGHOME: agent.home },
    warmUpSessions: 0,
  });
});
afterAll(async () => {
  await proxy?.close();
  client?.cleanup();
  await agent?.cleanup();
  fs.rmSync(logDir, { recursive: true, force: true });
});
beforeEach(() => agent.pinentry.confirm('ok'));

describe('--confirm sign,decrypt with real gpg', () => {
  it('an approved signature goes through; the prompt names who, what, the key, its user ID and the hash, and nothing secret', async () => {
    const shown = agent.pinentry.lines().length;
    const result = await sign();
    expect(result.code, result.stderr).toBe(0);
    const [prompt, ...more] = promptsSince(shown);
    expect(more).toEqual([]);
    expect(prompt).toContain('asks to sign with your key');
    // The caller is the gpg process on the other end of the proxy's socket.
    expect(prompt).toMatch(new RegExp(`Who: gpg \\(pid \\d+, uid ${process.getuid!()}`));
    expect(prompt).toMatch(/What: sign \(hash sha(256|384|512)\)/);
    expect(prompt).toContain('Key: Signer Person <signer@example.org>');
    expect(prompt).toContain(`Keygrip: ${grips[0]}`);
    expect(prompt).toMatch(/When: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, session \d+/);
    // No hash value (no hex run longer than a keygrip), no message.
    expect(prompt!.match(/[0-9A-Fa-f]{41,}/g)).toBeNull();
    expect(prompt).not.toContain(MESSAGE.toString().trim());
  });

  it('a refused signature never reaches the agent; gpg gets Operation cancelled', async () => {
    agent.pinentry.confirm('cancel');
    const from = fs.statSync(agentLog).size;
    const result = await sign();
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Operation cancelled/);
    const seen = agentReadSince(from);
    expect(seen).toMatch(/<- SIGKEY/);
    expect(seen).not.toMatch(/<- PKSIGN/);
    // The No button is a refusal too.
    agent.pinentry.confirm('notok');
    const no = await sign();
    expect(no.code).not.toBe(0);
    expect(agentReadSince(from)).not.toMatch(/<- PKSIGN/);
  });

  it('an unanswered prompt times out as Not confirmed, its pinentry is stopped, and the next prompt works', async () => {
    agent.pinentry.confirm('never');
    const from = fs.statSync(agentLog).size;
    const result = await sign();
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Not confirmed/);
    expect(agentReadSince(from)).not.toMatch(/<- PKSIGN/);
    // Withdrawn: gpg-agent 2.2 would leave it up (holding its pinentry lock) had the proxy not stopped it.
    await expect.poll(() => agent.pinentry.running(), { timeout: 5_000 }).toEqual([]);
    agent.pinentry.confirm('ok');
    expect((await sign()).code).toBe(0);
  });

  it('a prompt withdrawn while another dialog holds the pinentry is never shown later, and holds nothing up', async () => {
    // Another client's dialog is up (nobody answers it): the agent holds its pinentry lock for it.
    agent.pinentry.confirm('never');
    const shown = agent.pinentry.lines().length;
    const holder = runTool('gpg-connect-agent', agent.home, ['GET_CONFIRMATION another+dialog', '/bye']);
    await expect.poll(() => agent.pinentry.running().length, { timeout: 5_000 }).toBe(1);
    // Ours waits for the lock, and is withdrawn when the consent timeout passes.
    const waited = await sign();
    expect(waited.stderr).toMatch(/Not confirmed/);
    agent.pinentry.confirm('ok');
    for (const pid of agent.pinentry.running()) process.kill(pid, 'SIGINT');
    await holder;
    // The next use is asked (and approved) only once the withdrawn prompt is down: the agent dropped it unshown.
    const next = await sign();
    expect(next.code, next.stderr).toBe(0);
    const prompts = promptsSince(shown);
    expect(prompts.filter((p) => p.includes('asks to sign'))).toHaveLength(1);
    expect(prompts.filter((p) => p.includes('another dialog'))).toHaveLength(1);
  });

  it('a decision window: the second decryption within it is not asked again; signatures (window 0) always are', async () => {
    const shown = agent.pinentry.lines().length;
    const first = await decrypt();
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toEqual(MESSAGE);
    // Were it asked again, the prompt would be refused.
    agent.pinentry.confirm('cancel');
    const second = await decrypt();
    expect(second.code, second.stderr).toBe(0);
    expect(promptsSince(shown).filter((p) => p.includes('asks to decrypt with'))).toHaveLength(1);
    const signing = await sign();
    expect(signing.code).not.toBe(0);
  });

  it('the audit file records each decision with its caller, and the summary counts them', async () => {
    const all = records();
    const uses = all.filter((r) => r.verb === 'PKSIGN' || r.verb === 'PKDECRYPT');
    expect(uses).toContainEqual(expect.objectContaining({ verb: 'PKSIGN', decision: 'relayed', consent: 'prompt', result: 'ok', keygrip: grips[0] }));
    expect(uses).toContainEqual(expect.objectContaining({ verb: 'PKDECRYPT', decision: 'relayed', consent: 'window', result: 'ok' }));
    expect(uses).toContainEqual(expect.objectContaining({ verb: 'PKSIGN', decision: 'refused', rule: 'confirm', keygrip: grips[0] }));
    for (const use of uses) expect(use.caller).toMatch(/^gpg \(pid \d+/);
  });
});
