/**
 * The README's recipes, run as written. Each block is found by its `<!-- recipe: NAME -->` marker and run in bash.
 * Nothing in a block's text is changed; what must differ from a user's machine is set in its environment:
 * - `assuan-proxy` on PATH is the CLI run from source (test/support/readmeRecipes.ts, writeStandIns);
 * - GNUPGHOME is a throw-away agent home with the test's keys, in place of the user's own (~/.gnupg), so
 *   `gpgconf --list-dirs homedir`, `gpg --export` and the proxy's default upstream all name it;
 * - HOME, TMPDIR and XDG_RUNTIME_DIR are throw-away directories, so `mktemp` and the proxy's paths land in them;
 * - `ssh` and `docker` are stand-ins (no sshd, no Docker engine here): see writeStandIns for what they do.
 * The user's real ~/.gnupg and agent are never touched.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultListenPath } from '../../src/listenSocket.js';
import { RawClient } from '../support/assuanClient.js';
import { runCli, stderrMatch, stopCli } from '../support/cli.js';
import { createAgentHome, generateKey, gpgconfDir, makeTempDir, mustRun, type AgentHome } from '../support/gnupg.js';
import {
  fencedBlocksInSection,
  gpgAgentsUnder,
  hasChild,
  headingAnchors,
  HOLD,
  linkTargets,
  recipe,
  recipeNames,
  reportVariables,
  runShell,
  STRICT_PROLOGUE,
  until,
  writeStandIns,
  type Shell,
} from '../support/readmeRecipes.js';

const execFileAsync = promisify(execFile);
const README = fs.readFileSync('README.md', 'utf8');
const NO_AGENT = 'no gpg-agent running in this session';
/** Every recipe this file runs; a marked block it does not know fails the first test. */
const RECIPES = ['connect-agent', 'client-home', 'client-home-proxy', 'client-home-use', 'ssh-remote-setup', 'ssh', 'ssh-remote-wait', 'container-inside', 'container'];

let agent: AgentHome;
let root: string;
let bin: string;
const shells: Shell[] = [];

beforeAll(async () => {
  root = makeTempDir('rr.');
  bin = path.join(root, 'bin');
  writeStandIns(bin);
  agent = await createAgentHome();
  // One RSA key: an OpenPGP key for gpg, and under a self-signed X.509 certificate for gpgsm.
  const key = await generateKey(agent.home, 'Recipe <recipe@example.org>', 'rsa2048', '');
  const parameters = path.join(root, 'cert.parm');
  fs.writeFileSync(parameters, `Key-Type: RSA\nKey-Grip: ${key.keygrip}\nKey-Usage: sign\nName-DN: CN=Recipe Test\nSerial: random\n`);
  const certificate = path.join(root, 'cert.der');
  fs.writeFileSync(certificate, await mustRun('gpgsm', agent.home, ['--batch', '--gen-key', parameters]));
  await mustRun('gpgsm', agent.home, ['--batch', '--import', certificate]);
});

afterAll(async () => {
  for (const shell of shells) shell.kill();
  // Agents a control case started on purpose, or any started by mistake.
  for (const home of new Set(gpgAgentsUnder(root).map((pid) => homedirOf(pid)))) {
    await execFileAsync('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: home } }).catch(() => {});
  }
  await agent?.cleanup();
  // With a /run/user/UID, homes other than the default keep their sockets in a d.* directory there.
  for (const home of gnupgHomesUnder(root)) {
    const socketDir = await gpgconfDir(home, 'socketdir');
    if (!socketDir.startsWith(`${root}/`) && /\/d\.[a-z0-9]+$/.test(socketDir)) fs.rmSync(socketDir, { recursive: true, force: true });
  }
  fs.rmSync(root, { recursive: true, force: true });
});

/** Directories for one case, and the environment a recipe runs in (see the file's comment). */
function scene(name: string, options: { xdg?: boolean } = {}) {
  const dir = path.join(root, name);
  const dirs = { tmp: path.join(dir, 'tmp'), home: path.join(dir, 'home'), cwd: path.join(dir, 'cwd'), runtime: path.join(dir, 'run') };
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dirs.cwd, 'file.txt'), `signed by the ${name} recipe\n`);
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin}:${process.env.PATH}`,
    HOME: dirs.home,
    TMPDIR: dirs.tmp,
    LC_ALL: 'C',
    GNUPGHOME: agent.home,
    ...(options.xdg === false ? {} : { XDG_RUNTIME_DIR: dirs.runtime }),
  };
  return { ...dirs, env };
}

function run(script: string, cwd: string, env: NodeJS.ProcessEnv): Shell {
  const shell = runShell(script, cwd, env);
  shells.push(shell);
  return shell;
}

/** The exit statuses of the background jobs (the proxies) the strict prologue's trap stopped. */
function jobExits(shell: Shell): number[] {
  return [...shell.stdout().matchAll(/^@@exit (\d+)$/gm)].map((m) => Number(m[1]));
}

/** The proxy's JSON log records among a script's stdout lines. */
function logRecords(shell: Shell): Array<{ msg: string }> {
  return shell
    .stdout()
    .split('\n')
    .filter((line) => line.startsWith('{"level"'))
    .map((line) => JSON.parse(line) as { msg: string });
}

async function verifies(signature: string, signed: string): Promise<void> {
  await mustRun('gpg', agent.home, ['--batch', '--verify', signature, signed]);
}

function homedirOf(pid: number): string {
  const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
  return argv[argv.indexOf('--homedir') + 1]!;
}

function gnupgHomesUnder(dir: string, depth = 4): string[] {
  if (depth === 0 || !fs.existsSync(dir)) return [];
  const entries = fs.readdirSync(dir, { withFileTypes: true });
  const here = entries.some((e) => e.name === 'gpg.conf') ? [dir] : [];
  return [...here, ...entries.filter((e) => e.isDirectory()).flatMap((e) => gnupgHomesUnder(path.join(dir, e.name), depth - 1))];
}

describe('README', () => {
  it('marks every shell block under "Pointing clients at the proxy" as a recipe, and this file runs each marked recipe', () => {
    const blocks = fencedBlocksInSection(README, '## Pointing clients at the proxy');
    expect(blocks.length).toBeGreaterThan(0);
    expect(blocks.filter((b) => b.info === 'sh' && b.marker === undefined)).toEqual([]);
    expect(recipeNames(README).sort()).toEqual([...RECIPES].sort());
  });

  it('links only to files inside the repository, and to headings that exist', () => {
    const broken: string[] = [];
    for (const file of ['README.md', 'docs/protocol.md']) {
      const text = fs.readFileSync(file, 'utf8');
      for (const target of linkTargets(text)) {
        if (/^[a-z]+:/.test(target)) continue;
        const [rel, anchor] = target.split('#') as [string, string | undefined];
        const resolved = rel === '' ? path.resolve(file) : path.resolve(path.dirname(file), rel);
        if (path.relative(process.cwd(), resolved).startsWith('..')) broken.push(`${file}: ${target} leaves the repository`);
        else if (!fs.existsSync(resolved)) broken.push(`${file}: ${target} does not exist`);
        else if (anchor !== undefined && resolved.endsWith('.md') && !headingAnchors(fs.readFileSync(resolved, 'utf8')).has(anchor)) {
          broken.push(`${file}: ${target} names no heading`);
        }
      }
    }
    expect(broken).toEqual([]);
    expect(linkTargets(README)).toContain('docs/protocol.md#where-clients-find-the-agent');
  });

  it('names no socket path under a fixed uid, and nothing outside the repository', () => {
    expect(README).not.toMatch(/\/run\/user\/\d/);
    expect(README).not.toMatch(/\.\.\/shared|protocol notes|§/);
  });
});

describe('recipe: connect-agent (gpg-connect-agent -S on the default path)', () => {
  it.each([
    ['with XDG_RUNTIME_DIR', true],
    ['without XDG_RUNTIME_DIR (the temp dir)', false],
  ])('%s: the path the block computes is where the proxy listens, and GETINFO version is answered', { timeout: 60_000 }, async (_, xdg) => {
    const s = scene(`connect-${xdg ? 'xdg' : 'tmp'}`, { xdg });
    const shell = run(STRICT_PROLOGUE + recipe(README, 'connect-agent') + reportVariables(['PROXY_SOCK']), s.cwd, s.env);
    expect(await shell.exited, shell.stderr()).toBe(0);
    const proxySock = shell.variable('PROXY_SOCK');
    // The CLI's default: under XDG_RUNTIME_DIR, else in the temp dir (TMPDIR) with the uid in the name.
    expect(proxySock).toBe(xdg ? path.join(s.runtime, 'assuan-proxy', 'S.gpg-agent') : path.join(s.tmp, `assuan-proxy-${process.getuid!()}`, 'S.gpg-agent'));
    expect(shell.stderr()).toContain(`listening on ${proxySock}`);
    expect(shell.stdout()).toMatch(/^D \d+\.\d+\.\d+\nOK$/m);
    expect(jobExits(shell)).toEqual([0]);
    expect(fs.existsSync(proxySock)).toBe(false);
  });
});

describe('recipe: client home (gpg, gpgsm, gpg-connect-agent)', () => {
  it('proxy down: every client fails with "no agent running" and none starts an agent; then the proxy starts there and all three work through it', { timeout: 60_000 }, async () => {
    const s = scene('client-home');
    const setup = recipe(README, 'client-home');
    const use = recipe(README, 'client-home-use');

    const down = run(setup + use + reportVariables(['CLIENT_HOME']), s.cwd, s.env);
    await down.exited;
    const clientHome = down.variable('CLIENT_HOME');
    expect(path.dirname(clientHome)).toBe(s.tmp);
    for (const tool of ['gpg', 'gpgsm', 'gpg-connect-agent']) expect(down.stderr()).toContain(`${tool}: ${NO_AGENT}`);
    const socket = await gpgconfDir(clientHome, 'agent-socket');
    expect(fs.existsSync(socket)).toBe(false);
    expect(gpgAgentsUnder(clientHome)).toEqual([]);
    expect(fs.existsSync(path.join(s.cwd, 'file.txt.sig'))).toBe(false);
    expect(down.stdout()).not.toContain('CN=Recipe Test');

    // The same shell variable the user exported, in a new shell: the proxy's block, then the clients again.
    const up = run(STRICT_PROLOGUE + recipe(README, 'client-home-proxy') + use, s.cwd, { ...s.env, CLIENT_HOME: clientHome });
    expect(await up.exited, up.stderr()).toBe(0);
    expect(up.stderr()).toContain(`listening on ${socket}`);
    await verifies(path.join(s.cwd, 'file.txt.sig'), path.join(s.cwd, 'file.txt'));
    expect(up.stdout()).toContain('Subject: /CN=Recipe Test');
    expect(up.stdout()).toMatch(/^D \d+\.\d+\.\d+\nOK$/m);
    expect(up.stderr()).not.toContain(NO_AGENT);
    expect(logRecords(up).filter((r) => r.msg === 'session ended').length).toBeGreaterThanOrEqual(3);
    expect(jobExits(up)).toEqual([0]);
    expect(gpgAgentsUnder(clientHome)).toEqual([]);
  });

  it('control: without the no-autostart lines the same commands do start an agent, which the checks above would see', async () => {
    const s = scene('client-home-control');
    const setup = recipe(README, 'client-home')
      .split('\n')
      .filter((line) => !line.includes('no-autostart'))
      .join('\n');
    const shell = run(setup + recipe(README, 'client-home-use') + reportVariables(['CLIENT_HOME']), s.cwd, s.env);
    await shell.exited;
    const clientHome = shell.variable('CLIENT_HOME');
    try {
      expect(gpgAgentsUnder(clientHome).length).toBeGreaterThan(0);
      expect(fs.existsSync(await gpgconfDir(clientHome, 'agent-socket'))).toBe(true);
    } finally {
      await execFileAsync('gpgconf', ['--kill', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: clientHome } });
      await until(() => gpgAgentsUnder(clientHome).length === 0);
    }
  });
});

describe('recipe: forwarding over SSH (ssh and sshd replaced by stand-ins)', () => {
  it('remote setup, a restricted proxy of its own on its own path, the forward, and a remote that waits for it', { timeout: 60_000 }, async () => {
    const s = scene('ssh');
    const remote = path.join(root, 'ssh', 'remote');
    const remoteHome = path.join(remote, 'gnupg');
    const remoteCwd = path.join(remote, 'work');
    const waitingCwd = path.join(remote, 'work-waiting');
    for (const dir of [remoteCwd, waitingCwd]) {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'file.txt'), `signed on the remote in ${path.basename(dir)}\n`);
    }
    const remoteEnv = { ...s.env, GNUPGHOME: remoteHome, HOME: remote };

    const setup = run(STRICT_PROLOGUE + recipe(README, 'ssh-remote-setup'), remote, remoteEnv);
    expect(await setup.exited, setup.stderr()).toBe(0);
    for (const conf of ['gpg.conf', 'gpgsm.conf']) expect(fs.readFileSync(path.join(remoteHome, conf), 'utf8')).toContain('no-autostart');
    const remoteSocket = await gpgconfDir(remoteHome, 'agent-socket');
    expect(fs.statSync(path.dirname(remoteSocket)).isDirectory()).toBe(true);

    // A remote command started before the forward exists: it must wait, and start no agent meanwhile.
    const waiting = run(STRICT_PROLOGUE + recipe(README, 'ssh-remote-wait'), waitingCwd, remoteEnv);
    await until(() => hasChild(waiting.child.pid!, 'sleep') || waiting.child.exitCode !== null);
    expect(waiting.child.exitCode, waiting.stderr()).toBe(null);
    expect(fs.existsSync(remoteSocket)).toBe(false);
    expect(gpgAgentsUnder(remote)).toEqual([]);

    const pids = path.join(root, 'ssh', 'standin-pids');
    const local = run(STRICT_PROLOGUE + recipe(README, 'ssh') + reportVariables(['FWD_SOCK', 'REMOTE_SOCK']) + HOLD, s.cwd, {
      ...s.env,
      STANDIN_REMOTE_GNUPGHOME: remoteHome,
      STANDIN_REMOTE_CWD: remoteCwd,
      STANDIN_PIDS: pids,
    });
    try {
      await local.stdoutMatch(/^@@ready$/m);
      expect(await waiting.exited, waiting.stderr()).toBe(0);

      const fwdSock = local.variable('FWD_SOCK');
      expect(fwdSock).not.toBe(defaultListenPath(s.env));
      expect(path.dirname(fwdSock).startsWith(s.runtime)).toBe(true);
      expect(local.variable('REMOTE_SOCK')).toBe(remoteSocket);
      expect(local.stderr()).toContain(`listening on ${fwdSock}`);
      expect(local.stderr()).toContain(`relaying to gpg-agent at ${agent.socket}`);
      expect(local.stderr()).toContain("Restricted: gpg-agent's extra-socket rules are enforced");
      // gpg's environment OPTIONs are refused by the restricted proxy, and the signing still succeeds.
      expect(logRecords(local).some((r) => r.msg === 'refused by policy')).toBe(true);
      for (const dir of [remoteCwd, waitingCwd]) await verifies(path.join(dir, 'file.txt.sig'), path.join(dir, 'file.txt'));
      expect(gpgAgentsUnder(remote)).toEqual([]);
    } finally {
      local.release();
      await local.exited;
      for (const pid of fs.existsSync(pids) ? fs.readFileSync(pids, 'utf8').trim().split('\n') : []) {
        try {
          process.kill(Number(pid), 'SIGTERM');
        } catch {
          // The relay is gone already.
        }
      }
    }
    expect(local.stderr()).not.toContain('stand-in:');
    expect(jobExits(local)).toEqual([0]);
  });
});

describe('--restricted in front of the extra socket', () => {
  it('works: the agent forbids the restricting OPTION there, being restricted already, and the proxy enforces its rules too', async () => {
    const s = scene('restricted-extra');
    const listen = path.join(s.runtime, 'S.gpg-agent');
    const cli = runCli(['--warm-up', '0', '--restricted', '--listen', listen, '--upstream', await gpgconfDir(agent.home, 'agent-extra-socket')], s.env);
    try {
      await stderrMatch(cli, /listening on/);
      const client = await RawClient.connect(listen);
      try {
        expect(await client.readLine()).toMatch(/^OK /);
        // Before the fix every session ended here, with ERR 67109123 "gpg-agent refused to run the connection restricted".
        expect(await client.request('GETINFO version')).toEqual([expect.stringMatching(/^D 2\.\d+\.\d+$/), 'OK']);
        expect(await client.request('GETINFO restricted')).toEqual(['OK']);
        // Refused by the proxy itself, before the agent sees it.
        expect(await client.request('KEYINFO --list')).toEqual([expect.stringMatching(/^ERR 67109115 Forbidden <assuan-proxy>/)]);
      } finally {
        client.destroy();
      }
    } finally {
      expect(await stopCli(cli)).toBe(0);
    }
  });
});

describe('recipe: in a container (docker replaced by a stand-in)', () => {
  it('with the proxy down the script fails without starting an agent; with it up, gpg signs through the mounted socket directory', { timeout: 60_000 }, async () => {
    const s = scene('container');
    // The user saves the first block as ctr/in-container.sh.
    fs.mkdirSync(path.join(s.cwd, 'ctr'));
    const script = path.join(s.cwd, 'ctr', 'in-container.sh');
    fs.writeFileSync(script, recipe(README, 'container-inside'));
    const containerHome = path.join(root, 'container', 'container-home');
    fs.mkdirSync(containerHome);

    // The script alone, with nothing at its socket: gpg reports no agent, and none is started.
    fs.writeFileSync(path.join(s.cwd, 'ctr', 'pubkeys.asc'), await mustRun('gpg', agent.home, ['--export', '--armor']));
    const down = run(`sh ${script}\n`, s.cwd, { PATH: s.env.PATH, HOME: containerHome, TMPDIR: s.tmp, LC_ALL: 'C', AGENT_SOCK: path.join(s.runtime, 'nothing-here', 'S.gpg-agent') });
    expect(await down.exited).not.toBe(0);
    expect(down.stderr()).toContain(`gpg: ${NO_AGENT}`);
    expect(gpgAgentsUnder(s.tmp)).toEqual([]);

    const up = run(STRICT_PROLOGUE + recipe(README, 'container') + reportVariables(['CTR_DIR']), s.cwd, { ...s.env, STANDIN_CONTAINER_HOME: containerHome });
    expect(await up.exited, up.stderr()).toBe(0);
    expect(up.stderr()).toContain(`listening on ${path.join(up.variable('CTR_DIR'), 'S.gpg-agent')}`);
    expect(up.stderr()).not.toContain(NO_AGENT);
    const output = up
      .stdout()
      .split('\n')
      .filter((line) => !line.startsWith('{"level"') && !line.startsWith('@@'))
      .join('\n');
    const signed = /-----BEGIN PGP SIGNED MESSAGE-----[\s\S]*?-----END PGP SIGNATURE-----\n/.exec(output)?.[0];
    expect(signed, output).toBeDefined();
    expect(signed).toContain('\nhello\n');
    const file = path.join(s.cwd, 'signed.asc');
    fs.writeFileSync(file, signed!);
    await mustRun('gpg', agent.home, ['--batch', '--verify', file]);
    expect(logRecords(up).filter((r) => r.msg === 'session ended').length).toBeGreaterThanOrEqual(1);
    expect(jobExits(up)).toEqual([0]);
    expect(gpgAgentsUnder(s.tmp)).toEqual([]);
  });
});
