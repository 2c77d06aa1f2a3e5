/**
 * Bridge mode with real processes: the agent end in this process, the client end started on the "far side"
 * through a transport process (a stand-in for ssh that prints a motd first), real gpg there, a real gpg-agent here.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { startTestForward, type TestForward } from '../support/forward.js';
import { createAgentHome, createClientHome, generateKey, gpgconfDir, makeTempDir, mustRun, type AgentHome, type KeyInfo } from '../support/gnupg.js';
import { liveViewInit } from '../support/liveViewClient.js';
import { until } from '../support/sessions.js';
import { sshdUnavailable, startSshd } from '../support/sshd.js';

const MESSAGE = Buffer.from('signed on the far side\n');
let agent: AgentHome;
let key: KeyInfo;
let remote: Awaited<ReturnType<typeof createClientHome>>;
let link: TestForward;

const up = (forward: TestForward) => until(() => forward.forward.state().startsWith('up.'));

beforeAll(async () => {
  agent = await createAgentHome();
  key = await generateKey(agent.home, 'Far <far@example.org>', 'future-default', '');
  remote = await createClientHome(agent.home);
  // As `forward` runs by default: sessions go to the agent's extra socket, which applies its rules for remote use.
  link = await startTestForward({ upstream: await gpgconfDir(agent.home, 'agent-extra-socket'), remoteSocket: remote.socket });
  await up(link);
});
afterAll(async () => {
  await link?.close();
  remote?.cleanup();
  await agent?.cleanup();
});

describe('bridge: real gpg on the far side of a link', () => {
  it('signs (verified here), encrypts and decrypts through the link; what the transport printed first was skipped and logged', async () => {
    const signature = await mustRun('gpg', remote.home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', '-'], MESSAGE);
    const dir = makeTempDir('sig.');
    fs.writeFileSync(path.join(dir, 'msg'), MESSAGE);
    fs.writeFileSync(path.join(dir, 'msg.sig'), signature);
    const verified = await mustRun('gpg', agent.home, ['--batch', '--status-fd', '1', '--verify', path.join(dir, 'msg.sig'), path.join(dir, 'msg')]);
    expect(verified.toString()).toMatch(/^\[GNUPG:\] GOODSIG /m);
    fs.rmSync(dir, { recursive: true, force: true });

    const ciphertext = await mustRun('gpg', remote.home, ['--batch', '--trust-model', 'always', '-r', key.fingerprint, '-e', '-o', '-'], MESSAGE);
    const plaintext = await mustRun('gpg', remote.home, ['--batch', '-d', '-o', '-'], ciphertext);
    expect(plaintext.equals(MESSAGE)).toBe(true);

    expect(link.logs).toContainEqual(expect.objectContaining({ msg: 'skipped what the transport printed before the link', skipped: expect.stringContaining('Welcome to the far side!') }));
    // gpg's two sessions (signing, decrypting; encrypting needs no agent) end here just after gpg exits there.
    await until(() => link.logs.filter((r) => r.msg === 'session ended').length >= 2);
    const ended = link.logs.filter((r) => r.msg === 'session ended');
    expect(ended.every((r) => r.link === 'link' && r.outcome === 'closed')).toBe(true);
  });

  it('the transport killed mid-INQUIRE: the far client gets one ERR naming the cause and a close; the link comes back and gpg works', async () => {
    const client = await RawClient.connect(remote.socket);
    expect(await client.readLine()).toMatch(/^OK /);
    expect((await client.request(`SETKEY ${key.keygrip}`)).at(-1)).toBe('OK');
    expect(await client.request('PKDECRYPT')).toEqual(['S INQUIRE_MAXLEN 4096', 'INQUIRE CIPHERTEXT']);
    const transport = link.forward.transportPid()!;
    process.kill(transport, 'SIGKILL');
    expect(await client.rest()).toEqual([expect.stringMatching(/^ERR 67109123 IPC connect call failed <assuan-proxy> - the link to the agent (was lost|ended)/)]);
    // The session at this end ended too: the agent's reader was not left waiting for the ciphertext.
    await until(() => link.forward.sessionCount === 0);
    await until(() => link.forward.state() === 'reconnecting' || link.forward.state().startsWith('up.') || link.forward.state() === 'spawning' || link.forward.state() === 'handshaking');
    await until(() => link.forward.state().startsWith('up.') && link.forward.transportPid() !== transport);
    expect(link.forward.failure()).toBeNull();
    await until(() => fs.existsSync(remote.socket));
    const signature = await mustRun('gpg', remote.home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', '-'], MESSAGE);
    expect(signature.length).toBeGreaterThan(0);
    expect(link.logs).toContainEqual(expect.objectContaining({ msg: 'link reconnecting', failure: { reason: 'linkDown', cause: expect.stringMatching(/transport was ended by SIGKILL|HTTP\/2/) } }));
  });
});

describe('bridge: one link, many sessions', () => {
  /** An agent stand-in that can send an answer far larger than every buffer on the way: the fault is the client's. */
  function bigAnswerAgent(dir: string): Promise<{ socket: string; server: net.Server }> {
    const socket = path.join(dir, 'S.big');
    const big = Buffer.from(`D ${'x'.repeat(998)}\n`.repeat(8 * 1024));
    const server = net.createServer((c) => {
      c.on('error', () => {});
      c.write('OK ready\n');
      let held = '';
      c.on('data', (chunk: Buffer) => {
        held += chunk.toString('latin1');
        let end: number;
        while ((end = held.indexOf('\n')) >= 0) {
          const line = held.slice(0, end);
          held = held.slice(end + 1);
          if (line === 'BIG') c.write(Buffer.concat([big, Buffer.from('OK\n')]));
          else if (line === 'BYE') c.end('OK closing connection\n');
          else c.write('OK\n');
        }
      });
    });
    return new Promise((resolve) => server.listen(socket, () => resolve({ socket, server })));
  }

  it('100 sessions at once finish while one session on the same link has stopped reading an 8 MiB answer', async () => {
    const dir = makeTempDir('many.');
    fs.chmodSync(dir, 0o700);
    const agentStandIn = await bigAnswerAgent(dir);
    const remoteSocket = path.join(dir, 'far', 'S.gpg-agent');
    const many = await startTestForward({ upstream: agentStandIn.socket, remoteSocket });
    try {
      await up(many);
      await until(() => fs.existsSync(remoteSocket));
      const stalled = await RawClient.connect(remoteSocket);
      expect(await stalled.readLine()).toBe('OK ready');
      stalled.socket.pause();
      stalled.write('BIG\n');
      await until(() => many.forward.sessions().some((s) => s.agentPaused));
      const answers = await Promise.all(
        Array.from({ length: 100 }, async () => {
          const c = await RawClient.connect(remoteSocket);
          const lines = [await c.readLine()];
          for (let i = 0; i < 5; i++) lines.push(...(await c.request('NOP')));
          c.write('BYE\n');
          lines.push(...(await c.rest()));
          return lines.join('|');
        }),
      );
      expect(new Set(answers)).toEqual(new Set(['OK ready|OK|OK|OK|OK|OK|OK closing connection']));
      // The stalled one is still open, still held, and gets its whole answer once it reads.
      await until(() => many.forward.sessionCount === 1);
      stalled.socket.resume();
      const rest = await stalled.response();
      expect(rest.length).toBe(8 * 1024 + 1);
      expect(rest.at(-1)).toBe('OK');
      stalled.destroy();
    } finally {
      await many.close();
      agentStandIn.server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bridge: a session refused here reaches the far client as the same ERR as from a local proxy', () => {
  it('past --max-sessions, and with the agent down', async () => {
    const dir = makeTempDir('refused.');
    const limited = await startTestForward({ upstream: agent.socket, remoteSocket: path.join(dir, 'a', 'S.gpg-agent'), proxy: { maxSessions: 1 } });
    const down = await startTestForward({ upstream: path.join(dir, 'no-agent'), remoteSocket: path.join(dir, 'b', 'S.gpg-agent') });
    try {
      await up(limited);
      await up(down);
      const first = await RawClient.connect(path.join(dir, 'a', 'S.gpg-agent'));
      expect(await first.readLine()).toMatch(/^OK Pleased/);
      const second = await RawClient.connect(path.join(dir, 'a', 'S.gpg-agent'));
      expect(await second.rest()).toEqual(['ERR 67109047 Limit reached <assuan-proxy> - the proxy serves at most 1 sessions at once']);
      first.destroy();
      const noAgent = await RawClient.connect(path.join(dir, 'b', 'S.gpg-agent'));
      expect(await noAgent.rest()).toEqual([`ERR 67109123 IPC connect call failed <assuan-proxy> - cannot connect to gpg-agent at ${path.join(dir, 'no-agent')}: ENOENT`]);
    } finally {
      await limited.close();
      await down.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bridge: the forward command', () => {
  it('forwards until SIGTERM, then exits 0 with the far socket removed; usage errors exit 2', async () => {
    const { runCli, stderrMatch, stopCli } = await import('../support/cli.js');
    const { clientEndCode, NOISY_TRANSPORT } = await import('../support/forward.js');
    const work = makeTempDir('fwd.');
    const codeFile = path.join(work, 'assuan-proxy.mjs');
    fs.writeFileSync(codeFile, await clientEndCode());
    const remoteSocket = path.join(work, 'far', 'S.gpg-agent');
    const cli = runCli(['forward', '--ui', '0', '--log-format', 'json', '--client-end-code', codeFile, '--upstream', agent.socket, '--remote-socket', remoteSocket, '--', ...NOISY_TRANSPORT], {});
    try {
      await stderrMatch(cli, /forwarding gpg-agent at /);
      const liveView = (await stderrMatch(cli, /Live view: (\S+)/))[1]!;
      await until(() => cli.stdout().includes('"msg":"link up.quiet"'));
      const client = await RawClient.connect(remoteSocket);
      expect(await client.readLine()).toMatch(/^OK Pleased/);
      expect(await client.request('GETINFO version')).toEqual([expect.stringMatching(/^D 2\.\d+\.\d+$/), 'OK']);
      // The live view shows the link machine and its state, and the session tagged with its link.
      const init = (await liveViewInit(liveView)) as { diagrams: Array<{ name: string }>; actors: Array<{ actor: string; state: string }>; sessions: Array<{ link?: string }> };
      expect(init.diagrams.map((d) => d.name)).toEqual(['link', 'session']);
      expect(init.actors).toContainEqual(expect.objectContaining({ actor: 'link', state: 'up.quiet' }));
      expect(init.sessions).toEqual([expect.objectContaining({ link: 'link', state: 'ready' })]);
      client.write('BYE\n');
      expect(await client.rest()).toEqual(['OK closing connection']);
    } finally {
      expect(await stopCli(cli)).toBe(0);
    }
    expect(fs.existsSync(remoteSocket)).toBe(false);
    for (const [args, message] of [
      [['forward', '--', ], 'forward needs a transport command after --'],
      [['forward', 'ssh', 'host'], 'forward needs a transport command after --'],
      [['forward', '--listen', '/x', '--', 'ssh'], 'forward listens on the far side: use --remote-socket PATH'],
      [['forward', '--remote-socket', '--', 'ssh'], '--remote-socket needs a value'],
    ] as const) {
      const run = runCli([...args], {});
      expect(await run.exited).toBe(2);
      expect(run.stderr()).toContain(message);
    }
    fs.rmSync(work, { recursive: true, force: true });
  });
});

describe('bridge: over real ssh -T to 127.0.0.1', () => {
  const unavailable = sshdUnavailable();
  if (unavailable) process.stdout.write(`bridge over ssh: skipped: ${unavailable}\n`);

  it.skipIf(unavailable !== undefined)('gpg signs through a link whose transport is ssh (the loader passes the remote shell unchanged)', async () => {
    const sshd = await startSshd();
    const far = await createClientHome(agent.home);
    const overSsh = await startTestForward({ upstream: agent.socket, remoteSocket: far.socket, transport: sshd.ssh });
    try {
      await up(overSsh);
      const signature = await mustRun('gpg', far.home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', '-'], MESSAGE);
      const dir = makeTempDir('sig.');
      fs.writeFileSync(path.join(dir, 'msg'), MESSAGE);
      fs.writeFileSync(path.join(dir, 'msg.sig'), signature);
      expect((await mustRun('gpg', agent.home, ['--batch', '--status-fd', '1', '--verify', path.join(dir, 'msg.sig'), path.join(dir, 'msg')])).toString()).toMatch(/GOODSIG/);
      fs.rmSync(dir, { recursive: true, force: true });
    } finally {
      expect(await overSsh.close()).toBe('closed');
      expect(fs.existsSync(far.socket)).toBe(false);
      sshd.stop();
      far.cleanup();
    }
  });
});
