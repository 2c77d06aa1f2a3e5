/**
 * Upstreams behind socket files, through the whole proxy: Gpg4win's Windows form (port + nonce; what WSL reaches),
 * the Cygwin/MSYS form (nonce echo and credentials), and `%Assuan%` redirect files. Real gpg signs through a
 * Windows-form file whose port leads to a TCP relay of a real agent; servers that get the handshake wrong, and
 * malformed files, each end the session with an ERR that names the defect, never the nonce.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { startEmulatedAgent, cygwinSocketFile, windowsSocketFile, type EmulatedAgent } from '../support/emulatedAgent.js';
import { createAgentHome, createClientHome, generateKey, makeTempDir, mustRun, type AgentHome, type KeyInfo } from '../support/gnupg.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

const MESSAGE = Buffer.from('signed through a socket file\n');

let agent: AgentHome;
let key: KeyInfo;
let dir: string;

beforeAll(async () => {
  agent = await createAgentHome();
  key = await generateKey(agent.home, 'Socket File <sf@example.org>', 'future-default', '');
  dir = makeTempDir('apx-sf.');
});
afterAll(async () => {
  await agent.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The session's first line: the greeting, or the ERR that ends it. */
async function firstAnswer(proxy: TestProxy): Promise<{ lines: string[] }> {
  const client = await RawClient.connect(proxy.socket);
  const first = await client.readLine();
  if (first.startsWith('ERR')) return { lines: [first, ...(await client.rest())] };
  const pid = await client.request('GETINFO pid');
  client.destroy();
  return { lines: [first, ...pid] };
}

function hexAndRaw(nonce: Buffer): string[] {
  return [nonce.toString('hex'), nonce.toString('hex').toUpperCase(), nonce.toString('latin1')];
}

describe('Windows form (Gpg4win, and WSL reaching it)', () => {
  let emulated: EmulatedAgent;
  let proxy: TestProxy;
  beforeAll(async () => {
    emulated = await startEmulatedAgent({ form: 'windows', directory: dir, fileName: 'S.win', relayTo: agent.socket });
    proxy = await startTestProxy({ upstream: emulated.file, warmUpSessions: 0 });
  });
  afterAll(async () => {
    await proxy.close();
    await emulated.close();
  });

  it('real gpg signs through the proxy, the nonce going first to 127.0.0.1', async () => {
    const client = await createClientHome(agent.home);
    const proxyForClient = await startTestProxy({ upstream: emulated.file, warmUpSessions: 0, listen: client.socket });
    try {
      const signature = await mustRun('gpg', client.home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', '-'], MESSAGE);
      const file = path.join(dir, 'sig');
      fs.writeFileSync(file, signature);
      const verified = (await mustRun('gpg', agent.home, ['--batch', '--status-fd', '1', '--verify', file, '-'], MESSAGE)).toString();
      expect(verified).toContain(`[GNUPG:] VALIDSIG ${key.fingerprint}`);
      expect(emulated.connections.length).toBeGreaterThan(0);
      expect(emulated.connections.every((c) => c.nonceMatched === true)).toBe(true);
      // The nonce is never logged.
      for (const form of hexAndRaw(emulated.nonce)) expect(proxyForClient.rawLog()).not.toContain(form);
    } finally {
      await proxyForClient.close();
      client.cleanup();
    }
  });

  it('the file is read again for each connection: a restarted agent on a new port is followed', async () => {
    const first = await firstAnswer(proxy);
    const oldPort = emulated.port;
    await emulated.restart();
    expect(emulated.port).not.toBe(oldPort);
    const second = await firstAnswer(proxy);
    for (const answer of [first, second]) {
      expect(answer.lines[0]).toMatch(/^OK /);
      expect(answer.lines.at(-1)).toBe('OK');
    }
    expect(second.lines[1]).toBe(`D ${await agent.pid()}`);
  });

  it('a stale nonce is dropped by the server unanswered: the client is told the agent closed the connection', async () => {
    const stale = path.join(dir, 'S.stale');
    fs.writeFileSync(stale, windowsSocketFile(emulated.port, Buffer.alloc(16, 7)));
    const staleProxy = await startTestProxy({ upstream: stale, warmUpSessions: 0 });
    try {
      const { lines } = await firstAnswer(staleProxy);
      expect(lines).toEqual([
        expect.stringMatching(/^ERR \d+ .* - gpg-agent closed the connection before its greeting \(EOF\): the server behind .*S\.stale does that to a wrong nonce; is the file stale/),
      ]);
      expect(emulated.connections.at(-1)!.nonceMatched).toBe(false);
    } finally {
      await staleProxy.close();
    }
  });
});

describe('Cygwin form (MSYS, Git for Windows)', () => {
  it('echo and credentials are exchanged before the greeting, and the session is served', async () => {
    const emulated = await startEmulatedAgent({ form: 'cygwin', directory: dir, fileName: 'S.cyg', relayTo: agent.socket });
    const proxy = await startTestProxy({ upstream: emulated.file, warmUpSessions: 0 });
    try {
      const { lines } = await firstAnswer(proxy);
      expect(lines[0]).toMatch(/^OK /);
      expect(lines[1]).toBe(`D ${await agent.pid()}`);
      // The last: the first was the proxy's check at start that something answers.
      const connection = emulated.connections.at(-1)!;
      expect(connection.nonceMatched).toBe(true);
      // libassuan sends its pid (little-endian) and four zero bytes.
      expect(connection.credentials!.readUInt32LE(0)).toBe(process.pid);
      expect(connection.credentials!.subarray(4)).toEqual(Buffer.alloc(4));
      for (const form of hexAndRaw(emulated.nonce)) expect(proxy.rawLog()).not.toContain(form);
    } finally {
      await proxy.close();
      await emulated.close();
    }
  });

  /** A server at a Cygwin-form file that answers the nonce with `reply`, then closes. */
  async function misbehavingServer(reply: Buffer): Promise<{ file: string; close(): void }> {
    const server = net.createServer((socket) => {
      socket.once('data', () => socket.end(reply));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const file = path.join(dir, `S.bad${(server.address() as net.AddressInfo).port}`);
    fs.writeFileSync(file, cygwinSocketFile((server.address() as net.AddressInfo).port, Buffer.alloc(16, 0x5a)));
    return { file, close: () => server.close() };
  }

  it.each([
    ['echoes a different nonce', Buffer.alloc(16, 0x01), /failed the handshake: .*nonce/i],
    ['closes before echoing', Buffer.alloc(0), /failed the handshake: .*closed/i],
  ])('a server that %s ends the session with an ERR naming the handshake', async (_, reply, message) => {
    const server = await misbehavingServer(reply);
    const proxy = await startTestProxy({ upstream: server.file, warmUpSessions: 0 });
    try {
      const { lines } = await firstAnswer(proxy);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(message);
      expect(lines[0]).toContain(server.file);
      for (const form of hexAndRaw(Buffer.alloc(16, 0x5a))) expect(lines[0]).not.toContain(form);
    } finally {
      await proxy.close();
      server.close();
    }
  });
});

describe('redirect files and malformed files', () => {
  it('a %Assuan% redirect file leads to the socket it names (${VAR} expanded)', async () => {
    const file = path.join(dir, 'S.redirect');
    fs.writeFileSync(file, `%Assuan%\nsocket=\${APX_AGENT_HOME}/${path.basename(agent.socket)}\n`);
    const proxy = await startTestProxy({ upstream: file, warmUpSessions: 0, env: { ...process.env, APX_AGENT_HOME: path.dirname(agent.socket) } });
    try {
      const { lines } = await firstAnswer(proxy);
      expect(lines[1]).toBe(`D ${await agent.pid()}`);
    } finally {
      await proxy.close();
    }
  });

  it.each([
    ['a nonce one byte short', Buffer.concat([Buffer.from('4242\n'), Buffer.alloc(15, 1)])],
    ['port 0', Buffer.concat([Buffer.from('0\n'), Buffer.alloc(16, 1)])],
    ['port 70000', Buffer.concat([Buffer.from('70000\n'), Buffer.alloc(16, 1)])],
    ['no LF', Buffer.from('4242')],
    ['a Cygwin file without its NUL', Buffer.from('!<socket >4242 s 00000001-00000002-00000003-00000004')],
    ['a redirect with a blank in it', Buffer.from('%Assuan%\nsocket= /tmp/x\n')],
  ])('%s: the session ends with an ERR naming the file and the defect, each its own', async (_, content) => {
    const file = path.join(dir, 'S.malformed');
    fs.writeFileSync(file, content);
    const proxy = await startTestProxy({ upstream: file, warmUpSessions: 0 });
    try {
      const { lines } = await firstAnswer(proxy);
      expect(lines).toEqual([expect.stringMatching(new RegExp(`^ERR \\d+ .* - cannot use the socket file ${file}: \\S`))]);
      expect(proxy.logs.some((l) => l.file === file && typeof l.defect === 'string')).toBe(true);
      messages.add(lines[0]!);
    } finally {
      await proxy.close();
    }
  });
  const messages = new Set<string>();
  afterAll(() => expect(messages.size).toBe(6));
});
