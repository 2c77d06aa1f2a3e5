/**
 * `assuan-proxy doctor` against real setups: a real gpg-agent, a real proxy, real client homes, each broken in one
 * way. Each test asserts the finding of the check it breaks (and, where it can, that the fix given mends it).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { doctorMain, runDoctor, type Finding } from '../../src/doctor.js';
import { createAgentHome, createClientHome, generateKey, mustRun, type AgentHome, type KeyInfo, tempDirs } from '../support/gnupg.js';
import { runCli } from '../support/cli.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

const execFileAsync = promisify(execFile);

let agent: AgentHome;
let key: KeyInfo;
let proxy: TestProxy;
let agentVersion: string;

beforeAll(async () => {
  agent = await createAgentHome();
  key = await generateKey(agent.home, 'Doctor <doctor@example.org>', 'future-default', '');
  proxy = await startTestProxy({ upstream: agent.socket, warmUpSessions: 0 });
  agentVersion = /^D (\S+)/m.exec((await mustRun('gpg-connect-agent', agent.home, ['GETINFO version', '/bye'])).toString())![1]!;
});
afterAll(async () => {
  await proxy?.close();
  await agent?.cleanup();
  temp.removeAll();
});

const temp = tempDirs();
const tempDir = temp.make;

/** A client home (the agent's public keys, no-autostart) whose agent socket is a symlink to the proxy's. */
async function proxiedClientHome(): Promise<string> {
  const client = await createClientHome(agent.home);
  temp.adopt(client.home);
  fs.symlinkSync(proxy.socket, client.socket);
  return client.home;
}

function envFor(home: string): NodeJS.ProcessEnv {
  return { ...process.env, GNUPGHOME: home, LC_ALL: 'C' };
}

function finding(findings: Finding[], check: string): Finding {
  const found = findings.find((f) => f.check === check);
  if (!found) throw new Error(`no ${check} finding in ${JSON.stringify(findings)}`);
  return found;
}

/** The doctor as the user runs it, for a client home and the test's proxy and agent. */
function doctorFor(home: string, overrides: { listen?: string; upstream?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Finding[]> {
  return runDoctor({ env: overrides.env ?? envFor(home), listen: overrides.listen ?? proxy.socket, upstream: overrides.upstream ?? agent.socket });
}

/** Runs a fix (a shell command line) where the user would. */
async function runFix(command: string, env: NodeJS.ProcessEnv): Promise<void> {
  await execFileAsync('sh', ['-c', command], { env });
}

describe('assuan-proxy doctor', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('a correct client home: every check is ok, doctorMain exits 0, and gpg really signs through the proxy', async () => {
    const home = await proxiedClientHome();
    // gpgsm.conf too, written with what gpg's parser allows: comments and leading whitespace.
    fs.writeFileSync(path.join(home, 'gpgsm.conf'), '# keep the agent away\n   no-autostart\n');
    const findings = await doctorFor(home);
    expect(findings.map((f) => f.check)).toEqual(['gnupghome', 'client-socket', 'no-autostart', 'upstream', 'public-keys']);
    expect(findings.filter((f) => !f.ok)).toEqual([]);
    expect(finding(findings, 'gnupghome').message).toBe(`gpg's home directory ${home} exists and only you can write to it (mode 700)`);
    expect(finding(findings, 'client-socket').message).toBe(
      `gpg here uses the proxy: its agent socket ${path.join(home, 'S.gpg-agent')} (a symlink to ${proxy.socket}) is the proxy's socket ${proxy.socket}`,
    );
    expect(finding(findings, 'no-autostart').message).toContain(`gpg.conf and gpgsm.conf in ${home} have no-autostart`);
    expect(finding(findings, 'upstream').message).toBe(`the upstream ${agent.socket} answers: gpg-agent ${agentVersion}`);
    // The primary key and its encryption subkey.
    expect(finding(findings, 'public-keys').message).toBe('every secret key gpg-agent holds (2) has its public key here');

    // What "all ok" promises: gpg signs through the proxy.
    const signature = await mustRun('gpg', home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', '-'], 'checked by the doctor');
    fs.writeFileSync(path.join(home, 'm.sig'), signature);
    await mustRun('gpg', home, ['--batch', '--verify', path.join(home, 'm.sig'), '-'], 'checked by the doctor');

    // The command: one "ok:" line per check, exit 0; --json gives the same findings.
    vi.stubEnv('GNUPGHOME', home);
    let stdout = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
    expect(await doctorMain(['--listen', proxy.socket, '--upstream', agent.socket])).toBe(0);
    expect(stdout.split('\n').filter(Boolean)).toEqual(findings.map((f) => `ok: ${f.message}`));
    stdout = '';
    expect(await doctorMain(['--listen', proxy.socket, '--upstream', agent.socket, '--json'])).toBe(0);
    expect(JSON.parse(stdout)).toEqual(findings);
  });

  it('recognises the proxy behind a %Assuan% redirect file and when it listens at the agent socket path itself', async () => {
    const redirected = await proxiedClientHome();
    const socket = path.join(redirected, 'S.gpg-agent');
    fs.unlinkSync(socket);
    fs.writeFileSync(socket, `%Assuan%\nsocket=${proxy.socket}\n`);
    const viaRedirect = finding(await doctorFor(redirected), 'client-socket');
    expect(viaRedirect).toMatchObject({ ok: true, message: `gpg here uses the proxy: its agent socket ${socket} (a %Assuan% redirect to ${proxy.socket}) is the proxy's socket ${proxy.socket}` });

    // The README's recipe: a proxy started with --listen at the client home's agent socket path.
    const client = await createClientHome(agent.home);
    temp.adopt(client.home);
    const own = await startTestProxy({ upstream: agent.socket, listen: client.socket, warmUpSessions: 0 });
    try {
      const findings = await doctorFor(client.home, { listen: client.socket });
      expect(finding(findings, 'client-socket')).toMatchObject({ ok: true, message: `gpg here uses the proxy: its agent socket ${client.socket} is the proxy's socket ${client.socket}` });
      expect(findings.every((f) => f.ok)).toBe(true);
    } finally {
      await own.close();
    }
  });

  it("GNUPGHOME missing (a brand-new HOME): says to create it, and creates nothing itself", async () => {
    const newHome = tempDir('home.');
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: newHome, LC_ALL: 'C' };
    delete env.GNUPGHOME;
    const gnupgHome = path.join(newHome, '.gnupg');
    const findings = await doctorFor('', { env });
    expect(finding(findings, 'gnupghome')).toEqual({
      check: 'gnupghome',
      ok: false,
      message: `gpg's home directory ${gnupgHome} does not exist: no gpg-agent can start for it ('gpgconf --launch gpg-agent' says only "error running gpg-connect-agent")`,
      fix: `create it: mkdir -m 700 ${gnupgHome}`,
    });
    expect(finding(findings, 'no-autostart')).toMatchObject({ ok: false, fix: `mkdir -m 700 ${gnupgHome} && echo no-autostart > ${gnupgHome}/gpg.conf` });
    // Without a keyring here no key is usable, and listing one must not create the home.
    expect(finding(findings, 'public-keys')).toMatchObject({ ok: false, message: expect.stringContaining('gpg-agent holds 2 secret keys with no public key here') });
    expect(fs.existsSync(gnupgHome)).toBe(false);

    await runFix(finding(findings, 'gnupghome').fix!.replace('create it: ', ''), env);
    expect(finding(await doctorFor('', { env }), 'gnupghome')).toMatchObject({ ok: true });
  });

  it('a path with a blank or a quote is quoted in the fix, so that pasting it runs what it says', async () => {
    const newHome = tempDir('home.');
    const gnupgHome = path.join(newHome, "my gnupg;touch 'x'");
    const env: NodeJS.ProcessEnv = { ...process.env, GNUPGHOME: gnupgHome, LC_ALL: 'C' };
    const fix = finding(await doctorFor('', { env }), 'gnupghome').fix!;
    expect(fix).toBe(`create it: mkdir -m 700 '${newHome}/my gnupg;touch '\\''x'\\'''`);
    await runFix(fix.replace('create it: ', ''), env);
    expect(fs.statSync(gnupgHome).isDirectory()).toBe(true);
    expect(fs.readdirSync(newHome)).toEqual(["my gnupg;touch 'x'"]);
  });

  it('a home with no keyring yet: the missing public keys are named, and no keyring is created', async () => {
    const home = tempDir('nokeys.');
    fs.writeFileSync(path.join(home, 'gpg.conf'), 'no-autostart\n');
    const keys = finding(await doctorFor(home), 'public-keys');
    expect(keys).toMatchObject({ ok: false, message: expect.stringContaining('secret keys with no public key here') });
    expect(fs.readdirSync(home).sort()).toEqual(['gpg.conf']);
  });

  it('a home writable by others is a problem, with chmod 700 as the fix', async () => {
    const home = await proxiedClientHome();
    fs.chmodSync(home, 0o770);
    const check = finding(await doctorFor(home), 'gnupghome');
    expect(check).toMatchObject({ ok: false, message: `gpg's home directory ${home} is writable by others (mode 770): they could change its keyring and configuration`, fix: `chmod 700 ${home}` });
  });

  it('no-autostart missing from gpg.conf (commented out), or from a gpgsm.conf that exists: names the file, and the fix mends it', async () => {
    const home = await proxiedClientHome();
    fs.writeFileSync(path.join(home, 'gpg.conf'), '# no-autostart\n');
    let findings = await doctorFor(home);
    expect(finding(findings, 'no-autostart')).toEqual({
      check: 'no-autostart',
      ok: false,
      message: `gpg.conf in ${home} lacks no-autostart: when nothing answers at the agent socket (the proxy is down), gpg starts an empty gpg-agent of its own on the proxy's path`,
      fix: `echo no-autostart >> ${home}/gpg.conf`,
    });
    // The other checks still pass: the problem is this one alone.
    expect(findings.filter((f) => !f.ok).map((f) => f.check)).toEqual(['no-autostart']);

    fs.writeFileSync(path.join(home, 'gpgsm.conf'), 'disable-crl-checks\n');
    findings = await doctorFor(home);
    expect(finding(findings, 'no-autostart')).toMatchObject({ ok: false, message: expect.stringMatching(/^gpg.conf and gpgsm.conf in \S+ lack no-autostart/) });
    await runFix(finding(findings, 'no-autostart').fix!, envFor(home));
    expect(finding(await doctorFor(home), 'no-autostart')).toMatchObject({ ok: true, message: expect.stringContaining('gpg.conf and gpgsm.conf') });
  });

  it("the agent socket gpg uses is a real gpg-agent's, not the proxy: a problem, whether it is there itself or by a symlink", async () => {
    const other = await createAgentHome();
    try {
      fs.writeFileSync(path.join(other.home, 'gpg.conf'), 'no-autostart\n');
      const direct = finding(await doctorFor(other.home), 'client-socket');
      expect(direct).toMatchObject({
        ok: false,
        message: `gpg's agent socket ${other.socket} is a gpg-agent's own socket: gpg here talks to that agent directly, not through the proxy`,
      });
      expect(direct.fix).toContain('gpgconf --kill gpg-agent');
      expect(direct.fix).toContain(`assuan-proxy --listen ${other.socket} --upstream ${agent.socket}`);
    } finally {
      await other.cleanup();
    }

    // A symlink to the agent's own socket: the agent answers GETINFO socket_name with its path, not the one dialed.
    const client = await createClientHome(agent.home);
    temp.adopt(client.home);
    fs.symlinkSync(agent.socket, client.socket);
    const linked = finding(await doctorFor(client.home), 'client-socket');
    expect(linked).toMatchObject({ ok: false, message: `gpg's agent socket ${client.socket} (a symlink to ${agent.socket}) is a gpg-agent's own socket: gpg here talks to that agent directly, not through the proxy` });
    expect(linked.fix).toBe(`point it at the running proxy: rm ${client.socket} && ln -s ${proxy.socket} ${client.socket}`);
  });

  it('a relay that is not the given proxy (another proxy, an ssh forward) is told apart from an agent by GETINFO socket_name', async () => {
    const home = await proxiedClientHome();
    const elsewhere = path.join(tempDir('nopx.'), 'S.gpg-agent');
    const check = finding(await doctorFor(home, { listen: elsewhere }), 'client-socket');
    expect(check).toMatchObject({
      ok: true,
      message: `gpg here reaches gpg-agent at ${agent.socket} through its agent socket ${path.join(home, 'S.gpg-agent')} (a symlink to ${proxy.socket}), a relay that is not the proxy's socket ${elsewhere} (an ssh forward, or a proxy with another --listen: give that to doctor with --listen)`,
    });
  });

  it("a forwarded extra socket: a restricted relay, and the agent's keys cannot be listed through it (not a problem)", async () => {
    const client = await createClientHome(agent.home);
    temp.adopt(client.home);
    const extra = path.join(agent.home, 'S.gpg-agent.extra');
    fs.symlinkSync(extra, client.socket);
    const findings = await doctorFor(client.home, { upstream: extra });
    expect(finding(findings, 'client-socket')).toMatchObject({ ok: true, message: expect.stringContaining('gpg here reaches a restricted connection to gpg-agent (an extra socket, forwarded)') });
    expect(finding(findings, 'public-keys')).toMatchObject({ ok: true, message: expect.stringMatching(/^not checked: gpg-agent lists no keys on a restricted connection/) });
  });

  it('nothing at the agent socket gpg uses: a problem, and the fix (a symlink to the running proxy) mends it', async () => {
    const client = await createClientHome(agent.home);
    temp.adopt(client.home);
    const findings = await doctorFor(client.home);
    expect(finding(findings, 'client-socket')).toEqual({
      check: 'client-socket',
      ok: false,
      message: `nothing is at gpg's agent socket ${client.socket}: gpg here finds no agent`,
      fix: `point it at the running proxy: ln -s ${proxy.socket} ${client.socket}`,
    });
    await runFix(finding(findings, 'client-socket').fix!.replace('point it at the running proxy: ', ''), envFor(client.home));
    expect(finding(await doctorFor(client.home), 'client-socket')).toMatchObject({ ok: true });
  });

  it('a stale socket at the agent socket path, and the proxy not running behind a symlink: problems, each said so', async () => {
    const client = await createClientHome(agent.home);
    temp.adopt(client.home);
    // Bound and never listened on: what a killed agent leaves behind.
    await execFileAsync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', client.socket]);
    expect(fs.statSync(client.socket).isSocket()).toBe(true);
    const stale = finding(await doctorFor(client.home), 'client-socket');
    expect(stale).toEqual({
      check: 'client-socket',
      ok: false,
      message: `gpg's agent socket ${client.socket} is a stale socket: nothing answers there (what listened has ended)`,
      fix: `point it at the running proxy: rm ${client.socket} && ln -s ${proxy.socket} ${client.socket}`,
    });

    // A symlink to a proxy that is not running: its socket is gone.
    fs.unlinkSync(client.socket);
    const stoppedProxy = path.join(tempDir('gone.'), 'S.gpg-agent');
    fs.symlinkSync(stoppedProxy, client.socket);
    const down = finding(await doctorFor(client.home, { listen: stoppedProxy }), 'client-socket');
    expect(down).toMatchObject({
      ok: false,
      message: `gpg's agent socket ${client.socket} (a symlink to ${stoppedProxy}) leads to the proxy's socket path, but nothing is there: the proxy is not running`,
      fix: `start it: assuan-proxy --listen ${stoppedProxy} --upstream ${agent.socket}`,
    });
  });

  it('the upstream does not answer: a problem, the keys are not checked, and no agent is started', async () => {
    const home = await proxiedClientHome();
    const nowhere = path.join(tempDir('noag.'), 'S.gpg-agent');
    const findings = await doctorFor(home, { upstream: nowhere });
    expect(finding(findings, 'upstream')).toEqual({
      check: 'upstream',
      ok: false,
      message: `nothing answers as gpg-agent at ${nowhere}: the proxy has nothing to relay to`,
      fix: 'start the gpg-agent whose socket that is, or give the proxy and doctor its socket with --upstream PATH',
    });
    expect(finding(findings, 'public-keys')).toMatchObject({ ok: false, message: 'not checked: no upstream answers to list the secret keys it holds' });

    // A proxy in front of it refuses every session: gpg here fails at the proxy, and the doctor says so.
    const client = await createClientHome(agent.home);
    temp.adopt(client.home);
    const refusing = await startTestProxy({ upstream: nowhere, warmUpSessions: 0 });
    try {
      fs.symlinkSync(refusing.socket, client.socket);
      const atProxy = finding(await doctorFor(client.home, { listen: refusing.socket, upstream: nowhere }), 'client-socket');
      expect(atProxy).toMatchObject({
        ok: false,
        message: expect.stringMatching(/is the proxy's socket \S+, but the proxy refuses sessions: the greeting was "ERR 67109123 IPC connect call failed/),
        fix: "the proxy greets only once its upstream answers: see the upstream line; else the proxy's log",
      });
    } finally {
      await refusing.close();
    }

    // By name (the default, agent): the home's own agent, which is not running; the doctor does not start it.
    const idle = tempDir('idle.');
    const byName = await doctorFor(idle, { upstream: 'agent' });
    expect(finding(byName, 'upstream')).toMatchObject({ ok: false, message: `nothing answers as gpg-agent at ${idle}/S.gpg-agent: the proxy has nothing to relay to`, fix: expect.stringMatching(/^if this is the agent's host: gpgconf --launch gpg-agent; if the proxy is to stand in here .* do not start one here/) });
    expect(fs.existsSync(path.join(idle, 'S.gpg-agent'))).toBe(false);
  });

  it('a secret key whose public key is missing here: names its keygrips, and the fix (export by keygrip, import) mends it', async () => {
    const home = await proxiedClientHome();
    // Made after the client home copied the agent's public keys: the agent has its secret key, the client not its public one.
    const added = await generateKey(agent.home, 'Later <later@example.org>', 'future-default', '');
    const addedGrips = (await mustRun('gpg', agent.home, ['--batch', '--with-colons', '--with-keygrip', '-k', added.fingerprint]))
      .toString()
      .split('\n')
      .filter((l) => l.startsWith('grp:'))
      .map((l) => l.split(':')[9]!);
    expect(addedGrips).toHaveLength(2);

    const check = finding(await doctorFor(home), 'public-keys');
    expect(check.ok).toBe(false);
    expect(check.message).toMatch(/^gpg-agent holds 2 secret keys with no public key here \(keygrip [0-9A-F, ]+\): gpg here cannot use them and says "No secret key"$/);
    for (const grip of addedGrips) expect(check.message).toContain(grip);
    expect(check.message).not.toContain(key.keygrip);
    expect(check.fix).toMatch(/^export on the agent's host: gpg --export '&[0-9A-F]{40}' '&[0-9A-F]{40}' > keys.gpg; import here: gpg --import keys.gpg/);

    // What the doctor explains: gpg here cannot sign with that key.
    const refused = await execFileAsync('gpg', ['--batch', '-u', added.fingerprint, '--detach-sign', '-o', '-'], { env: envFor(home) }).catch((err: { stderr: string }) => err);
    expect('stderr' in refused && refused.stderr).toMatch(/No public key|No secret key|skipped/);

    const exported = /gpg --export (.+?) > keys\.gpg/.exec(check.fix!)![1]!;
    const exportDir = tempDir('keys.');
    await runFix(`gpg --batch --export ${exported} > ${exportDir}/keys.gpg`, envFor(agent.home));
    await runFix(`gpg --batch --import ${exportDir}/keys.gpg`, envFor(home));
    expect(finding(await doctorFor(home), 'public-keys')).toMatchObject({ ok: true, message: 'every secret key gpg-agent holds (4) has its public key here' });
  });

  it('`assuan-proxy doctor` prints "problem: … — fix: …" lines and exits 1 when a check fails', async () => {
    const client = await createClientHome(agent.home);
    temp.adopt(client.home);
    const run = runCli(['doctor', '--listen', proxy.socket, '--upstream', agent.socket], { GNUPGHOME: client.home });
    expect(await run.exited).toBe(1);
    const lines = run.stdout().split('\n').filter(Boolean);
    expect(lines).toHaveLength(5);
    expect(lines[1]).toBe(`problem: nothing is at gpg's agent socket ${client.socket}: gpg here finds no agent — fix: point it at the running proxy: ln -s ${proxy.socket} ${client.socket}`);
    expect(lines.filter((l) => l.startsWith('ok: '))).toHaveLength(4);
  });
});
