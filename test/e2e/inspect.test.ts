/** `--inspect`: a real gpg session streamed to a WebSocket receiver through our loopback relay, sanitized. */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startInspectorRelay, type InspectorRelay } from '../../src/inspect/relay.js';
import { listening, runCli, stderrMatch, stopCli } from '../support/cli.js';
import { createAgentHome, createClientHome, generateKey, makeTempDir, runTool, type AgentHome, type KeyInfo } from '../support/gnupg.js';
import { until } from '../support/sessions.js';

const PASSPHRASE = 'inspector-must-not-see-this 7f3a';
let agent: AgentHome;
let key: KeyInfo;
let client: { home: string; socket: string; cleanup(): void };
let relay: InspectorRelay;

beforeAll(async () => {
  agent = await createAgentHome();
  key = await generateKey(agent.home, 'Inspect <inspect@example.org>', 'ed25519', PASSPHRASE);
  client = await createClientHome(agent.home);
  relay = await startInspectorRelay(0);
});
afterAll(async () => {
  await relay?.close();
  client?.cleanup();
  await agent?.cleanup();
});

interface Message {
  type: string;
  sessionId?: string;
  name?: string;
  event?: { type: string; [field: string]: unknown };
  snapshot?: { status?: string; value?: unknown; context?: Record<string, unknown> };
}

function get(path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: relay.port, path, headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

describe('--inspect', () => {
  it('streams actor, event and snapshot messages of a real gpg signing session, with no passphrase in any of them', async () => {
    // A viewer on the relay, as the inspector page is.
    const viewer = new WebSocket(relay.viewerUrl);
    await once(viewer, 'open');
    const raw: string[] = [];
    viewer.on('message', (data) => raw.push(data.toString()));

    const run = runCli(['--listen', client.socket, '--upstream', agent.socket, '--inspect', relay.streamUrl, '--log-level', 'trace', '--trace-transitions'], {});
    try {
      await listening(run);
      expect(run.stderr()).toContain(`Inspector: streaming to ${relay.streamUrl}`);
      // The passphrase is not cached (never used through this agent since generation is forgotten below).
      await runTool('gpg-connect-agent', agent.home, ['RELOADAGENT', '/bye']);
      const data = fs.mkdtempSync('/tmp/insp.');
      fs.writeFileSync(`${data}/msg`, 'inspected message\n');
      const sign = await runTool('gpg', client.home, ['--batch', '--pinentry-mode', 'loopback', '--passphrase', PASSPHRASE, '-u', key.fingerprint, '--detach-sign', '-o', `${data}/msg.sig`, `${data}/msg`]);
      expect(sign.stderr).toBe('');
      expect(sign.code).toBe(0);
      fs.rmSync(data, { recursive: true, force: true });

      const messages = () => raw.map((text) => JSON.parse(text) as Message);
      // Messages are sent after the actor's step (deferred by the library): wait for the session's last snapshot.
      await until(() => messages().some((m) => m.type === '@xstate.snapshot' && m.snapshot?.status === 'done' && m.snapshot?.context?.sessionId !== undefined));
      const all = messages();
      const actorMessages = all.filter((m) => m.type === '@xstate.actor');
      expect(actorMessages.map((m) => m.name)).toEqual(expect.arrayContaining(['server', expect.stringMatching(/^session-\d+$/)]));
      const events = all.filter((m) => m.type === '@xstate.event').map((m) => m.event!);
      expect(events).toContainEqual(expect.objectContaining({ type: 'CLIENT.COMMAND', verb: 'PKSIGN' }));
      expect(events).toContainEqual(expect.objectContaining({ type: 'AGENT.INQUIRE', keyword: 'PASSPHRASE' }));
      // The passphrase went through as a D line: the inspector sees its kind only, not even its size.
      expect(events).toContainEqual({ type: 'CLIENT.DATA', verb: 'D', line: {} });
      expect(events.filter((e) => e.type === 'CLIENT.DATA').every((e) => !('bytes' in e))).toBe(true);
      const snapshots = all.filter((m) => m.type === '@xstate.snapshot');
      expect(snapshots.map((m) => m.snapshot?.value)).toContainEqual({ command: { bufferingInquire: 'answering' } });

      const everything = [raw.join('\n'), run.stderr(), run.stdout()].join('\n');
      for (const secret of [PASSPHRASE, Buffer.from(PASSPHRASE).toString('hex'), Buffer.from(PASSPHRASE).toString('hex').toUpperCase(), encodeURIComponent(PASSPHRASE)]) {
        expect(everything).not.toContain(secret);
      }
    } finally {
      viewer.close();
      expect(await stopCli(run)).toBe(0);
    }
  });

  it('the relay serves its page and socket to loopback names only, and refuses other sites in the browser', async () => {
    const withToken = new URL(relay.pageUrl);
    const pathWithToken = withToken.pathname + withToken.search;
    // The token is right: a redirect that sets the cookie.
    expect(await get(pathWithToken, { Host: `localhost:${relay.port}` })).toBe(302);
    expect(await get(pathWithToken, { Host: `127.0.0.1:${relay.port}` })).toBe(302);
    // DNS rebinding: a foreign name pointing at 127.0.0.1, even with the token.
    expect(await get(pathWithToken, { Host: `attacker.example:${relay.port}` })).toBe(403);
    // A page from another site opening a WebSocket to the relay, viewer or publisher.
    for (const url of [relay.viewerUrl, relay.streamUrl]) {
      const foreign = new WebSocket(url, { origin: 'https://attacker.example' });
      const [err] = (await once(foreign, 'error')) as [Error];
      expect(err.message).toContain('403');
    }
    const local = new WebSocket(relay.viewerUrl, { origin: `http://localhost:${relay.port}` });
    await once(local, 'open');
    local.close();
  });

  it.each([['ftp://example.org'], ['not a url']])('refuses --inspect %s with a clear message', async (url) => {
    const run = runCli(['--inspect', url], {});
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain('--inspect takes a ws:// or wss:// URL');
  });

  it.each([
    [['--inspect', '--inspect-port', 'http'], "--inspect-port takes a TCP port number, not 'http'"],
    [['--inspect', 'ws://127.0.0.1:9', '--inspect-port', '0'], '--inspect-port is the port of the relay --inspect starts when given no URL'],
    [['--inspect-port', '0'], '--inspect-port is the port of the relay --inspect starts when given no URL'],
  ])('refuses %j with a clear message and exit 2', async (args, message) => {
    const run = runCli(args, {});
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain(message);
  });
});

/** Holds 127.0.0.1:port (or finds it held already): either way the port is busy for the proxy. */
async function busyPort(port: number): Promise<{ port: number; release(): void }> {
  const holder = net.createServer();
  const error = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    holder.once('error', resolve);
    holder.listen(port, '127.0.0.1', () => resolve(undefined));
  });
  if (error && error.code !== 'EADDRINUSE') throw error;
  return { port: error ? port : (holder.address() as net.AddressInfo).port, release: () => holder.close() };
}

describe('--inspect relay port', () => {
  it.each([
    ['the default port 8080', () => ['--inspect'], 8080],
    ['--inspect-port PORT', (port: number) => ['--inspect', '--inspect-port', String(port)], 0],
  ] as const)('with %s busy: exit 1 with a one-line message, no stack trace, no socket left', async (_, args, wanted) => {
    const busy = await busyPort(wanted);
    const dir = makeTempDir('ibusy.');
    try {
      const socket = path.join(dir, 'S.gpg-agent');
      const run = runCli(['--listen', socket, '--upstream', agent.socket, ...args(busy.port)], {});
      // Before the fix the default port gave an unhandled EADDRINUSE with a stack, and --inspect-port did not exist.
      expect(await run.exited).toBe(1);
      expect(run.stderr()).toBe(`assuan-proxy: cannot start the inspector relay on 127.0.0.1:${busy.port}: the port is in use (choose another one, e.g. --inspect-port 0)\n`);
      expect(fs.existsSync(socket)).toBe(false);
    } finally {
      busy.release();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--inspect-port 0 starts the relay on a free port, named in the page URL it prints', async () => {
    const dir = makeTempDir('iport.');
    const run = runCli(['--listen', path.join(dir, 'S.gpg-agent'), '--upstream', agent.socket, '--inspect', '--inspect-port', '0'], {});
    try {
      const [, port, token] = await stderrMatch(run, /Inspector: open http:\/\/localhost:(\d+)\/\?token=([A-Za-z0-9_-]{43}) /);
      expect(Number(port)).toBeGreaterThan(0);
      const page = (path: string) =>
        new Promise<number>((resolve, reject) =>
          http.get({ host: '127.0.0.1', port: Number(port), path, headers: { Host: `localhost:${port}` } }, (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          }).on('error', reject),
        );
      expect(await page(`/?token=${token}`)).toBe(302);
      expect(await page('/')).toBe(401);
    } finally {
      expect(await stopCli(run)).toBe(0);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
