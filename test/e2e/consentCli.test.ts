/**
 * `--confirm` through the real CLI, as a user runs it: `assuan-proxy --listen … --upstream … --confirm sign --keys
 * FPR --audit FILE`, and `assuan-proxy forward --confirm sign … -- TRANSPORT`, with real gpg, a real gpg-agent and
 * its scripted pinentry (test/support/pinentry.py). An approved signature goes through and verifies; the prompt
 * names the caller (a local gpg, or the bridge link), the operation and hash, the key's user ID and keygrip; a
 * refused one never reaches the agent (its `debug ipc` log shows no PKSIGN) and gpg reports Operation cancelled;
 * a key --keys does not allow is refused with no prompt; stopped with SIGTERM the CLI exits 0, and
 * `assuan-proxy audit` summarizes the 0600 audit file, which holds no hash value.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, stderrMatch, stdoutMatch, stopCli, type RunningCli } from '../support/cli.js';
import { clientEndCode, NOISY_TRANSPORT } from '../support/forward.js';
import {
  createAgentHome,
  createClientHome,
  generateKey,
  gpgconfDir,
  keygripsOf,
  mustRun,
  runTool,
  tempDirs,
  type AgentHome,
  type KeyInfo,
  type ScriptedPinentry,
} from '../support/gnupg.js';

const MESSAGE = Buffer.from('asked first, through the command line\n');
const UID = process.getuid!();

const dirs = tempDirs();
let work: string;
let agent: AgentHome & { pinentry: ScriptedPinentry };
let agentLog: string;
let signer: KeyInfo;
let other: KeyInfo;
let signerGrips: string[];
let otherGrips: string[];
/** Every CLI started here, stopped in afterAll if a test did not. */
const clis: RunningCli[] = [];
const homes: Array<{ cleanup(): void }> = [];

const promptsSince = (from: number) => agent.pinentry.promptsSince(from);
const confirmsSince = (from: number) => agent.pinentry.lines().slice(from).filter((line) => line === 'CONFIRM').length;
/** The agent's IPC log since byte `from`: every line it read. */
const agentReadSince = (from: number) => fs.readFileSync(agentLog).subarray(from).toString('latin1');
const agentLogSize = () => fs.statSync(agentLog).size;

/** A detached signature made in `home` with `fingerprint`, through whatever listens on that home's agent socket. */
const sign = (home: string, fingerprint: string) => runTool('gpg', home, ['--batch', '-u', fingerprint, '--detach-sign', '-o', '-'], MESSAGE);

/** Verifies `signature` over MESSAGE in the agent's home (which holds the public keys): the VALIDSIG status line's fingerprint. */
async function verifiedBy(signature: Buffer): Promise<string | undefined> {
  const file = path.join(work, `sig.${Date.now()}.${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(file, signature);
  try {
    const status = (await mustRun('gpg', agent.home, ['--batch', '--status-fd', '1', '--verify', file, '-'], MESSAGE)).toString();
    return /^\[GNUPG:\] VALIDSIG ([0-9A-F]+) /m.exec(status)?.[1];
  } finally {
    fs.rmSync(file, { force: true });
  }
}

function startCli(args: string[]): RunningCli {
  // GNUPGHOME: the proxy lists keys (--keys, the prompt's user ID) and finds the standard socket (the prompt) there.
  const cli = runCli(args, { GNUPGHOME: agent.home, LC_ALL: 'C' });
  clis.push(cli);
  return cli;
}

const auditRecords = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);

beforeAll(async () => {
  work = dirs.make('apx-ccli.');
  agentLog = path.join(work, 'agent.log');
  // debug ipc: the agent logs every line it reads, so the tests see what reached it.
  agent = await createAgentHome({ agentConf: `log-file ${agentLog}\ndebug ipc\n` });
  signer = await generateKey(agent.home, 'Cli Signer <cli-signer@example.org>', 'future-default', '');
  other = await generateKey(agent.home, 'Not Allowed <not-allowed@example.org>', 'future-default', '');
  signerGrips = await keygripsOf(agent.home, signer.fingerprint);
  otherGrips = await keygripsOf(agent.home, other.fingerprint);
});

afterAll(async () => {
  for (const cli of clis) if (cli.child.exitCode === null && cli.child.signalCode === null) await stopCli(cli);
  for (const home of homes) home.cleanup();
  await agent?.cleanup();
  dirs.removeAll();
});

describe('assuan-proxy --confirm sign --keys FPR --audit FILE (the CLI, real gpg)', () => {
  let cli: RunningCli;
  let client: Awaited<ReturnType<typeof createClientHome>>;
  let auditFile: string;

  beforeAll(async () => {
    client = await createClientHome(agent.home);
    homes.push(client);
    auditFile = path.join(work, 'audit', 'audit.jsonl');
    cli = startCli([
      '--listen', client.socket,
      '--upstream', agent.socket,
      '--confirm', 'sign',
      '--keys', signer.fingerprint,
      '--audit', auditFile,
      '--warm-up', '0',
      '--confirm-timeout', '10000',
      '--log-format', 'json',
    ]);
    // Listening: the line is printed once the socket is there (rejects if the CLI exits first).
    await stderrMatch(cli, /listening on /);
    expect(cli.child.exitCode).toBeNull();
    expect(cli.stderr()).toContain(`listening on ${client.socket}\n`);
  });

  it('approved at the pinentry: gpg signs, the signature verifies, and the prompt names the gpg, sign and its hash, the user ID and keygrip', async () => {
    agent.pinentry.confirm('ok');
    const shown = agent.pinentry.lines().length;
    const from = agentLogSize();
    const result = await sign(client.home, signer.fingerprint);
    expect(result.code, result.stderr).toBe(0);
    expect(await verifiedBy(result.stdout)).toBe(signer.fingerprint);
    // The approved use reached the agent.
    expect(agentReadSince(from)).toMatch(/<- PKSIGN/);
    const prompts = promptsSince(shown);
    expect(prompts).toHaveLength(1);
    const prompt = prompts[0]!;
    expect(prompt).toContain('asks to sign with your key');
    expect(prompt).toMatch(new RegExp(`Who: gpg \\(pid \\d+, uid ${UID}`));
    expect(prompt).toMatch(/What: sign \(hash sha(256|384|512)\)/);
    expect(prompt).toContain('Key: Cli Signer <cli-signer@example.org>');
    expect(prompt).toContain(`Keygrip: ${signerGrips[0]}`);
    // Nothing secret: no hash value (no hex run longer than a keygrip), no message.
    expect(prompt.match(/[0-9A-Fa-f]{41,}/g)).toBeNull();
    expect(prompt).not.toContain(MESSAGE.toString().trim());
  });

  it('cancelled at the pinentry: gpg fails with Operation cancelled and the agent never got PKSIGN', async () => {
    agent.pinentry.confirm('cancel');
    const shown = agent.pinentry.lines().length;
    const from = agentLogSize();
    const result = await sign(client.home, signer.fingerprint);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Operation cancelled/);
    // It was asked (and refused) ...
    expect(promptsSince(shown)).toEqual([expect.stringContaining('asks to sign with your key')]);
    // ... and the session got as far as choosing the key at the agent, but the use itself never reached it.
    const seen = agentReadSince(from);
    expect(seen).toMatch(/<- SIGKEY/);
    expect(seen).not.toMatch(/<- PKSIGN/);
    agent.pinentry.confirm('ok');
  });

  it('a key --keys does not allow is refused with no prompt, and no line naming it reaches the agent', async () => {
    agent.pinentry.confirm('ok');
    const shown = agent.pinentry.lines().length;
    const from = agentLogSize();
    const result = await sign(client.home, other.fingerprint);
    expect(result.code).not.toBe(0);
    expect(confirmsSince(shown)).toBe(0);
    const seen = agentReadSince(from);
    expect(seen).not.toMatch(/<- PKSIGN/);
    for (const grip of otherGrips) expect(seen).not.toContain(grip);
    // The proxy said why: the keys rule.
    await expect.poll(() => cli.stdout(), { timeout: 5_000, interval: 50 }).toMatch(/"msg":"refused by policy"/);
    expect(cli.stdout()).toMatch(/"rule":"keys"/);
  });

  it('SIGTERM: exits 0; `assuan-proxy audit` counts 1 PKSIGN and the refusals; the file is 0600 and holds no hash value', async () => {
    expect(await stopCli(cli)).toBe(0);
    expect(fs.existsSync(client.socket)).toBe(false);

    expect(fs.statSync(auditFile).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(auditFile, 'latin1');
    expect(text.match(/[0-9A-Fa-f]{41,}/g)).toBeNull();
    expect(text).not.toContain(MESSAGE.toString().trim());
    const records = auditRecords(auditFile);
    expect(records.filter((r) => r.verb === 'PKSIGN' && r.decision === 'relayed')).toEqual([
      expect.objectContaining({ keygrip: signerGrips[0], consent: 'prompt', result: 'ok', caller: expect.stringMatching(new RegExp(`^gpg \\(pid \\d+, uid ${UID}`)) }),
    ]);
    expect(records).toContainEqual(expect.objectContaining({ verb: 'PKSIGN', decision: 'refused', rule: 'confirm', keygrip: signerGrips[0] }));
    expect(records).toContainEqual(expect.objectContaining({ decision: 'refused', rule: 'keys' }));

    const summary = runCli(['audit', auditFile], {});
    expect(await summary.exited, summary.stderr()).toBe(0);
    const out = summary.stdout();
    // Per key, with its user ID: the signing key's line counts the one approved signature and the one refused at the prompt.
    expect(out).toMatch(new RegExp(`^  ${signerGrips[0]} \\(Cli Signer <cli-signer@example.org>\\): PKSIGN 1; 0 failed at the agent, 1 refused by policy; last \\d{4}-\\d\\d-\\d\\dT`, 'm'));
    // Per caller: gpg, by program and user (not pid: each run is a new process); a gpg that left before it was
    // identified is counted as local. The key refused by --keys is not counted as a use of the allowed one.
    expect(out).toMatch(new RegExp(`^  gpg \\(uid ${process.getuid!()}, [^)]*gpg[^)]*\\): PKSIGN 1; 0 failed at the agent, [1-9]\\d* refused by policy; last `, 'm'));
    expect(out).toMatch(/^Refusals by rule: (.*, )?confirm 1(,|$)/m);
    expect(out).toMatch(/^Refusals by rule: .*\bkeys [1-9]/m);

    const json = runCli(['audit', '--json', auditFile], {});
    expect(await json.exited, json.stderr()).toBe(0);
    const parsed = JSON.parse(json.stdout()) as { records: number; byKey: Record<string, { uses: Record<string, number>; refused: number }>; refusals: Record<string, number> };
    expect(parsed.records).toBe(records.length);
    expect(parsed.byKey[signerGrips[0]!]).toMatchObject({ uses: { PKSIGN: 1 } });
    expect(parsed.byKey[signerGrips[0]!]!.refused).toBeGreaterThanOrEqual(1);
    expect(parsed.refusals.confirm).toBe(1);
    expect(parsed.refusals.keys).toBeGreaterThanOrEqual(1);
  });
});

describe('assuan-proxy forward --confirm sign (the CLI, over a local transport, real gpg on the far side)', () => {
  let cli: RunningCli;
  let far: Awaited<ReturnType<typeof createClientHome>>;
  let auditFile: string;

  beforeAll(async () => {
    far = await createClientHome(agent.home);
    homes.push(far);
    const codeFile = path.join(work, 'assuan-proxy.mjs');
    fs.writeFileSync(codeFile, await clientEndCode());
    auditFile = path.join(work, 'forward-audit.jsonl');
    cli = startCli([
      'forward',
      '--confirm', 'sign',
      '--audit', auditFile,
      '--confirm-timeout', '10000',
      '--log-format', 'json',
      '--client-end-code', codeFile,
      // As forward runs by default: the agent's extra socket; prompts still go to the standard one.
      '--upstream', await gpgconfDir(agent.home, 'agent-extra-socket'),
      '--remote-socket', far.socket,
      '--',
      ...NOISY_TRANSPORT,
    ]);
    // The link is up once the client end on the far side answered (rejects if the CLI exits first).
    await stdoutMatch(cli, /"msg":"link up\./);
    expect(cli.child.exitCode).toBeNull();
  });

  it('approved: gpg on the far side signs, the signature verifies, and the prompt names the bridge link', async () => {
    agent.pinentry.confirm('ok');
    const shown = agent.pinentry.lines().length;
    const result = await sign(far.home, signer.fingerprint);
    expect(result.code, result.stderr).toBe(0);
    expect(await verifiedBy(result.stdout)).toBe(signer.fingerprint);
    const prompts = promptsSince(shown);
    expect(prompts).toHaveLength(1);
    // The far side's processes are not identified: the link is the caller.
    expect(prompts[0]).toMatch(/^Who: bridge link link$/m);
    expect(prompts[0]).not.toMatch(/pid \d+/);
    expect(prompts[0]).toMatch(/What: sign \(hash sha(256|384|512)\)/);
    expect(prompts[0]).toContain('Key: Cli Signer <cli-signer@example.org>');
    expect(prompts[0]).toContain(`Keygrip: ${signerGrips[0]}`);
  });

  it('cancelled: gpg on the far side gets Operation cancelled and the agent never got PKSIGN', async () => {
    agent.pinentry.confirm('cancel');
    const shown = agent.pinentry.lines().length;
    const from = agentLogSize();
    const result = await sign(far.home, signer.fingerprint);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/Operation cancelled/);
    expect(promptsSince(shown)).toEqual([expect.stringMatching(/^Who: bridge link /m)]);
    const seen = agentReadSince(from);
    expect(seen).toMatch(/<- SIGKEY/);
    expect(seen).not.toMatch(/<- PKSIGN/);
    agent.pinentry.confirm('ok');
  });

  it('SIGTERM: exits 0, the far socket is gone, and the audit names the link for the approved and the refused use', async () => {
    expect(await stopCli(cli)).toBe(0);
    expect(fs.existsSync(far.socket)).toBe(false);
    const records = auditRecords(auditFile).filter((r) => r.verb === 'PKSIGN');
    expect(records).toEqual([
      expect.objectContaining({ decision: 'relayed', consent: 'prompt', result: 'ok', link: 'link', keygrip: signerGrips[0] }),
      expect.objectContaining({ decision: 'refused', rule: 'confirm', link: 'link', keygrip: signerGrips[0] }),
    ]);
    for (const record of records) expect(record.caller).toBeUndefined();
  });
});
