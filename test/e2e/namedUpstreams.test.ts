/**
 * Upstreams found by name (agent, dirmngr, keyboxd), started when they are not running (at start, and again when a
 * session finds one gone), several --listen/--upstream pairs in one process, and the warnings and refusals for
 * upstreams that cannot work. Real daemons in throw-away homes.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimulatedClock } from 'xstate';
import { resolveConfig } from '../../src/config.js';
import { ProxyStartError } from '../../src/listenSocket.js';
import { RawClient } from '../support/assuanClient.js';
import { listening, runCli, stopCli } from '../support/cli.js';
import { createAgentHome, gpgconfDir, makeTempDir, runTool, type AgentHome } from '../support/gnupg.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

const execFileAsync = promisify(execFile);

let agent: AgentHome;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  agent = await createAgentHome();
  env = { ...process.env, GNUPGHOME: agent.home };
});
afterAll(async () => {
  await execFileAsync('gpgconf', ['--kill', 'dirmngr'], { env }).catch(() => {});
  await agent.cleanup();
});

/** `gpgconf --kill`, then until the daemon's process is gone: a session must not reach the one shutting down. */
async function killDaemon(daemon: 'gpg-agent' | 'dirmngr'): Promise<void> {
  const asked = await runTool('gpg-connect-agent', agent.home, [...(daemon === 'dirmngr' ? ['--dirmngr'] : []), '--no-autostart', 'GETINFO pid', '/bye']);
  const pid = Number(/^D (\d+)/m.exec(asked.stdout.toString())?.[1]);
  await execFileAsync('gpgconf', ['--kill', daemon], { env });
  if (!pid) return;
  await expect
    .poll(() => {
      // Gone, or a zombie nobody has reaped yet (its socket is closed either way).
      try {
        return / Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'latin1').replace(/^\d+ \(.*\)/, ''));
      } catch {
        return true;
      }
    })
    .toBe(true);
}

async function greetingAndPid(socket: string): Promise<{ greeting: string; pid: string[] }> {
  const client = await RawClient.connect(socket);
  try {
    let greeting = await client.readLine();
    while (greeting.startsWith('#')) greeting = await client.readLine();
    const pid = await client.request('GETINFO pid');
    return { greeting, pid };
  } finally {
    client.destroy();
  }
}

describe('the agent comes back', () => {
  let proxy: TestProxy;
  beforeAll(async () => {
    proxy = await startTestProxy({ env, launchAgent: true, warmUpSessions: 0 });
  });
  afterAll(() => proxy.close());

  it('after `gpgconf --kill gpg-agent`, the next session starts it again, as gpg would, and is served', async () => {
    const before = await agent.pid();
    await killDaemon('gpg-agent');
    const { greeting, pid } = await greetingAndPid(proxy.socket);
    expect(greeting).toMatch(/^OK /);
    expect(pid[0]).toMatch(/^D \d+$/);
    expect(pid[0]).not.toBe(`D ${before}`);
    expect(pid.at(-1)).toBe('OK');
    expect(proxy.logs.some((l) => l.msg.includes('starting the daemon') && l.daemon === 'gpg-agent')).toBe(true);
  });

  it('when it cannot be started, the client gets an ERR saying so, and the session ends', async () => {
    // gpg-agent cannot start with its home gone; the home comes back afterwards for the other tests.
    await killDaemon('gpg-agent');
    const aside = `${agent.home}.aside`;
    fs.renameSync(agent.home, aside);
    try {
      const client = await RawClient.connect(proxy.socket);
      const lines = await client.rest();
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^ERR \d+ .* - nothing answers at .*S\.gpg-agent and gpg-agent could not be started/);
    } finally {
      fs.renameSync(aside, agent.home);
    }
    expect(proxy.logs.some((l) => l.msg === 'could not start the daemon')).toBe(true);
    await agent.launch();
  });
});

describe('a launch that does not finish', () => {
  it('ends the session after the launch timeout, with the ERR for a daemon that could not be started', async () => {
    // A gpgconf that hangs on --launch while a marker file exists (the real one for everything else).
    const bin = makeTempDir('apx-bin.');
    const marker = path.join(bin, 'hang');
    const realGpgconf = (await execFileAsync('sh', ['-c', 'command -v gpgconf'])).stdout.trim();
    fs.writeFileSync(
      path.join(bin, 'gpgconf'),
      `#!/bin/sh\nif [ "$1" = --launch ]; then while [ -e '${marker}' ]; do sleep 0.05; done; fi\nexec '${realGpgconf}' "$@"\n`,
      { mode: 0o700 },
    );
    const clock = new SimulatedClock();
    const slowEnv = { ...env, PATH: `${bin}:${env.PATH}` };
    const proxy = await startTestProxy({ env: slowEnv, launchAgent: true, warmUpSessions: 0, clock });
    try {
      await killDaemon('gpg-agent');
      fs.writeFileSync(marker, '');
      const client = await RawClient.connect(proxy.socket);
      await expect.poll(() => proxy.logs.some((l) => l.msg.includes('starting the daemon'))).toBe(true);
      clock.increment(20_000);
      expect(await client.rest()).toEqual([expect.stringMatching(/ - nothing answers at .*S\.gpg-agent and gpg-agent could not be started/)]);
    } finally {
      fs.rmSync(marker, { force: true });
      await proxy.close();
      fs.rmSync(bin, { recursive: true, force: true });
      await agent.launch();
    }
  });
});

describe('a path given explicitly', () => {
  it('is never started by the proxy, and nothing answering there is said at start', async () => {
    const dir = makeTempDir('apx-up.');
    try {
      const proxy = await startTestProxy({ upstream: path.join(dir, 'S.gpg-agent'), warmUpSessions: 0 });
      try {
        expect(proxy.logs.some((l) => l.level === 40 && /nothing answers as gpg-agent at .*S\.gpg-agent yet/.test(l.msg))).toBe(true);
        const client = await RawClient.connect(proxy.socket);
        expect((await client.rest())[0]).toMatch(/^ERR \d+ .* - cannot connect to gpg-agent at .*: ENOENT$/);
      } finally {
        await proxy.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('that answers gives no warning', async () => {
    const proxy = await startTestProxy({ upstream: agent.socket, warmUpSessions: 0 });
    try {
      expect(proxy.logs.some((l) => l.msg.includes('nothing answers'))).toBe(false);
    } finally {
      await proxy.close();
    }
  });

  it("gpg-agent's ssh socket is refused with what it is, and an unknown name with what --upstream takes", () => {
    expect(() => resolveConfig({ upstream: '/run/user/1000/gnupg/S.gpg-agent.ssh' })).toThrow(/ssh socket, which speaks the ssh-agent protocol, not Assuan/);
    expect(() => resolveConfig({ upstream: 'S.gpg-agent' })).toThrow(/agent, agent-extra, dirmngr, keyboxd, scdaemon, or a path/);
  });
});

describe('dirmngr', () => {
  it('is found and started by name, and relayed: gpg-connect-agent --dirmngr through the proxy gets its answers', async () => {
    await killDaemon('dirmngr');
    const clientHome = makeTempDir('gpgc.');
    const proxy = await startTestProxy({ upstream: 'dirmngr', env, launchAgent: true, warmUpSessions: 0, listen: await gpgconfDir(clientHome, 'dirmngr-socket') });
    try {
      expect(proxy.proxy.upstreamPath).toBe(await gpgconfDir(agent.home, 'dirmngr-socket'));
      expect(proxy.proxy.upstreamDaemon).toBe('dirmngr');
      const direct = await runTool('gpg-connect-agent', agent.home, ['--dirmngr', 'GETINFO version', '/bye']);
      const relayed = await runTool('gpg-connect-agent', clientHome, ['--dirmngr', '--no-autostart', 'GETINFO version', '/bye']);
      expect(relayed.code).toBe(0);
      expect(relayed.stdout.toString()).toMatch(/^D \d+\.\d+/);
      expect(relayed.stdout.toString()).toBe(direct.stdout.toString());
      // And started again when it has gone.
      await killDaemon('dirmngr');
      const { greeting } = await greetingAndPid(proxy.socket);
      expect(greeting).toMatch(/^OK Dirmngr/);
    } finally {
      await proxy.close();
      fs.rmSync(clientHome, { recursive: true, force: true });
    }
  });
});

describe('keyboxd', () => {
  let hasKeyboxd = false;
  beforeAll(async () => {
    hasKeyboxd = (await gpgconfDir(agent.home, 'keyboxd-socket')) !== '';
    if (!hasKeyboxd) console.log('keyboxd: this GnuPG has none (it came with 2.3); only the refusal is tested');
  });

  it('where GnuPG has none, the start is refused with why', async ({ skip }) => {
    if (hasKeyboxd) skip('this GnuPG has keyboxd');
    const failure = await startTestProxy({ upstream: 'keyboxd', env, warmUpSessions: 0 }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(ProxyStartError);
    expect((failure as Error).message).toMatch(/has no keyboxd: 'gpgconf --list-dirs keyboxd-socket' names no socket \(keyboxd came with GnuPG 2\.3\)/);
  });

  it('where GnuPG has it, it is started and relayed', async ({ skip }) => {
    if (!hasKeyboxd) skip('this GnuPG has no keyboxd');
    const proxy = await startTestProxy({ upstream: 'keyboxd', env, launchAgent: true, warmUpSessions: 0 });
    try {
      const { greeting } = await greetingAndPid(proxy.socket);
      expect(greeting).toMatch(/^OK /);
    } finally {
      await proxy.close();
    }
  });
});

describe('scdaemon', () => {
  const SCDAEMON = '/usr/lib/gnupg/scdaemon';

  it('started as a daemon of its own, it is found in the socket dir and relayed', async ({ skip }) => {
    if (!fs.existsSync(SCDAEMON)) {
      console.log(`scdaemon: ${SCDAEMON} is not installed (Debian's scdaemon package); skipped`);
      skip(`${SCDAEMON} is not installed`);
    }
    // `scdaemon --daemon` listens on <socketdir>/S.scdaemon and prints SCDAEMON_INFO=<path>:<pid>:1.
    const { stdout } = await execFileAsync(SCDAEMON, ['--daemon'], { env });
    const [, socketPath, pid] = /SCDAEMON_INFO=([^:]+):(\d+):1/.exec(stdout) ?? [];
    try {
      expect(socketPath).toBe(path.join(await gpgconfDir(agent.home, 'socketdir'), 'S.scdaemon'));
      const proxy = await startTestProxy({ upstream: 'scdaemon', env, launchAgent: true, warmUpSessions: 0 });
      try {
        expect(proxy.proxy.upstreamPath).toBe(socketPath);
        const client = await RawClient.connect(proxy.socket);
        expect(await client.readLine()).toMatch(/^OK /);
        expect(await client.request('GETINFO version')).toEqual([expect.stringMatching(/^D \d+\.\d+\.\d+$/), 'OK']);
        client.destroy();
      } finally {
        await proxy.close();
      }
    } finally {
      if (pid) process.kill(Number(pid), 'SIGTERM');
    }
  });
});

describe('several --listen/--upstream pairs in one process', () => {
  it('serve the agent and dirmngr side by side, each named in the log and its sessions', async () => {
    const dir = makeTempDir('apx-2.');
    const agentSocket = path.join(dir, 'S.gpg-agent');
    const dirmngrSocket = path.join(dir, 'S.dirmngr');
    const cli = runCli(['--listen', agentSocket, '--upstream', 'agent', '--listen', dirmngrSocket, '--upstream', 'dirmngr', '--warm-up', '0', '--log-level', 'debug'], env);
    try {
      await listening(cli);
      await expect.poll(() => cli.stderr()).toMatch(/relaying to dirmngr at /);
      expect(cli.stderr()).toMatch(new RegExp(`listening on ${agentSocket}\\nassuan-proxy: relaying to gpg-agent at `));
      expect((await greetingAndPid(agentSocket)).greeting).toMatch(/^OK Pleased to meet you/);
      expect((await greetingAndPid(dirmngrSocket)).greeting).toMatch(/^OK Dirmngr/);
      await expect.poll(() => cli.stdout()).toMatch(/"session":"dirmngr-1"/);
      expect(cli.stdout()).toMatch(/"session":"agent-1"/);
    } finally {
      expect(await stopCli(cli)).toBe(0);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuse pairs that do not match up, and two daemons on one default path', () => {
    const usage = (args: string[]) => runCli(args, env);
    return Promise.all(
      [
        [['--listen', '/tmp/a/S', '--listen', '/tmp/b/S', '--upstream', 'agent'], /give one --listen per --upstream/],
        [['--upstream', 'agent', '--upstream', 'agent-extra'], /two upstreams would listen on .*S\.gpg-agent: give each its own --listen/],
        [['--upstream', 'dirmngr', '--upstream', 'dirmngr'], /--upstream dirmngr is given twice/],
      ].map(async ([args, message]) => {
        const run = usage(args as string[]);
        expect(await run.exited).toBe(2);
        expect(run.stderr()).toMatch(message as RegExp);
      }),
    );
  });
});
