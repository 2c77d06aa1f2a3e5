/**
 * `--restricted`, `--allow`, `--deny`: the agent itself is told the connection is remote, the proxy answers
 * forbidden commands itself as gpg-agent's own extra socket does, and a forwarded restricted socket still signs
 * and decrypts with real gpg.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { createAgentHome, createClientHome, generateKey, gpgconfDir, makeTempDir, mustRun, runTool, type AgentHome, type KeyInfo } from '../support/gnupg.js';
import { sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent, type ScriptedConnection } from '../support/scriptedAgent.js';
import { greetedSession, until } from '../support/sessions.js';

const FORBIDDEN = 'ERR 67109115 Forbidden';
const ZERO_GRIP = '0'.repeat(40);

let agent: AgentHome;
let key: KeyInfo;
let extraSocket: string;
let restricted: TestProxy;
const cleanups: Array<() => unknown> = [];

beforeAll(async () => {
  agent = await createAgentHome();
  key = await generateKey(agent.home, 'Restricted <restricted@example.org>', 'future-default', '');
  extraSocket = await gpgconfDir(agent.home, 'agent-extra-socket');
  restricted = await startTestProxy({ upstream: agent.socket, restricted: true });
});
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await restricted?.close();
  await agent?.cleanup();
});

/** A --restricted proxy in front of a scripted agent, and a client it has greeted (removed after the file). */
async function restrictedInFrontOfScripted(options: { greetingTimeoutMs?: number } = {}) {
  const scripted: ScriptedAgent = await createScriptedAgent();
  cleanups.push(() => scripted.close());
  const proxy = await startTestProxy({ upstream: scripted.socket, restricted: true, ...options });
  cleanups.push(() => proxy.close());
  return { scripted, proxy, ...(await greetedSession(proxy.socket, scripted)) };
}

/** Sends one command on a fresh connection and returns its final line (an INQUIRE is cancelled). */
async function finalLine(socket: string, command: string): Promise<string> {
  const client = await RawClient.connect(socket);
  try {
    await client.readLine(); // greeting
    client.write(`${command}\n`);
    for (;;) {
      const lines = await client.response();
      const last = lines.at(-1)!;
      if (!last.startsWith('INQUIRE')) return last;
      client.write('CAN\n');
    }
  } finally {
    client.destroy();
  }
}

/** Every command gpg-agent 2.2 knows, with arguments that do no harm where it runs. */
const PROBES = [
  'GETEVENTCOUNTER', 'LISTTRUSTED', `MARKTRUSTED ${ZERO_GRIP} S`, 'GENKEY', `READKEY ${ZERO_GRIP}`, 'KEYINFO --list',
  'GET_PASSPHRASE --no-ask probe X X X', `PRESET_PASSPHRASE ${ZERO_GRIP} -1 41`, 'CLEAR_PASSPHRASE probe', 'GET_CONFIRMATION probe',
  'LEARN', `PASSWD ${ZERO_GRIP}`, 'SCD GETINFO version', 'KEYWRAP_KEY --import', `EXPORT_KEY ${ZERO_GRIP}`,
  `DELETE_KEY ${ZERO_GRIP}`, 'KEYTOCARD', 'GETVAL probe', 'PUTVAL probe x', 'UPDATESTARTUPTTY', 'KILLAGENT', 'RELOADAGENT',
  'NOP', 'RESET', 'HELP', 'CANCEL', 'AUTH', `ISTRUSTED ${ZERO_GRIP}`, `HAVEKEY ${ZERO_GRIP}`, `SIGKEY ${ZERO_GRIP}`,
  `SETKEY ${ZERO_GRIP}`, `SETHASH --hash=sha256 ${'ab'.repeat(32)}`, 'PKSIGN', 'PKDECRYPT', 'SETKEYDESC probe', 'INPUT FD=99',
  'OUTPUT FD=99', 'GETINFO version', 'GETINFO cmd_has_option PKSIGN x', 'GETINFO s2k_count', 'GETINFO restricted', 'GETINFO pid',
  'GETINFO socket_name', 'GETINFO getenv HOME', 'OPTION agent-awareness=2.1.0', 'OPTION --agent-awareness=2.1.0',
  'OPTION pinentry-mode=loopback', 'OPTION ttyname=/dev/null', 'OPTION putenv=PROBE=1', 'OPTION allow-pinentry-notify', 'havekey 00',
  // IMPORT_KEY last: on the extra socket it is refused before its INQUIRE.
  'IMPORT_KEY',
];

describe('--restricted', () => {
  it('answers each command as gpg-agent\'s own extra socket does: Forbidden, or relayed', async () => {
    const mismatches: string[] = [];
    for (const command of PROBES) {
      const extra = await finalLine(extraSocket, command);
      const proxied = await finalLine(restricted.socket, command);
      const extraForbids = extra.startsWith(FORBIDDEN);
      const proxyForbids = proxied.startsWith(FORBIDDEN);
      if (extraForbids !== proxyForbids) mismatches.push(`${command}: extra socket "${extra}", proxy "${proxied}"`);
      if (proxyForbids) expect(proxied).toContain('<assuan-proxy>');
      if (command === 'GETINFO restricted') expect([extra, proxied]).toEqual(['OK', 'OK']);
    }
    expect(mismatches).toEqual([]);
    await sessionsDrained(restricted.proxy);
    // The agent is alive: KILLAGENT and RELOADAGENT never reached it.
    expect(await finalLine(restricted.socket, 'GETINFO version')).toBe('OK');
  });

  it("in front of the agent's extra socket too: the agent forbids the restricting OPTION there (the connection is restricted already) and the session goes on", async () => {
    const inFrontOfExtra = await startTestProxy({ upstream: extraSocket, restricted: true });
    cleanups.push(() => inFrontOfExtra.close());
    // Before the fix: OK greeting, then ERR 67109123 "gpg-agent refused to run the connection restricted", and the close.
    for (const command of PROBES) {
      const extra = await finalLine(extraSocket, command);
      const proxied = await finalLine(inFrontOfExtra.socket, command);
      expect(proxied.startsWith(FORBIDDEN), `${command}: extra socket "${extra}", proxy "${proxied}"`).toBe(extra.startsWith(FORBIDDEN));
    }
    await sessionsDrained(inFrontOfExtra.proxy);
    expect(inFrontOfExtra.logs.filter((r) => r.msg === 'session ended' && r.outcome !== 'closed')).toEqual([]);
  });

  it('the agent is told first; a forbidden command never reaches it, in any state', async () => {
    const { scripted, proxy, client, upstream } = await restrictedInFrontOfScripted();
    // Before any client line: the agent itself is asked to run the connection restricted.
    client.write('KILLAGENT\nGETINFO pid\nOPTION pinentry-mode=loopback\nFROBNICATE\nGETINFO restricted\nNOP\n');
    expect(await upstream.readLine()).toBe('OPTION pretend-request-origin=remote');
    upstream.send('S PROGRESS x\nOK\n');
    for (const expected of ['KILLAGENT', 'GETINFO', 'OPTION', 'UNKNOWN']) {
      expect(await client.response()).toEqual([`${FORBIDDEN} <assuan-proxy> - ${expected} is not allowed through this socket`]);
    }
    // The restricted agent answers this one itself, as its extra socket does.
    expect(await upstream.readLine()).toBe('GETINFO restricted');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.response()).toEqual(['OK']);

    // The same when the line arrives in pieces (the session waits in bufferingCommand).
    const state = () => proxy.proxy.sessions()[0]?.state;
    client.write('KILLAG');
    await until(() => state() === 'bufferingCommand');
    client.write('ENT\n');
    expect(await client.response()).toEqual([`${FORBIDDEN} <assuan-proxy> - KILLAGENT is not allowed through this socket`]);

    // In an INQUIRE the agent would consume the line unexecuted; the proxy does not send it at all, but CAN.
    client.write('PKDECRYPT\n');
    expect(await upstream.readLine()).toBe('PKDECRYPT');
    upstream.send('INQUIRE CIPHERTEXT\n');
    expect(await client.response()).toEqual(['INQUIRE CIPHERTEXT']);
    client.write('KILLAGENT\n');
    expect(await upstream.readLine()).toBe('CAN');
    upstream.send('ERR 67109141 IPC call has been cancelled <GPG Agent>\n');
    expect(await client.response()).toEqual([`${FORBIDDEN} <assuan-proxy> - KILLAGENT is not allowed through this socket`]);
    client.destroy();
    expect(scripted.journal.filter((e) => e.startsWith('recv'))).toEqual([
      'recv OPTION pretend-request-origin=remote', 'recv GETINFO restricted', 'recv NOP', 'recv PKDECRYPT', 'recv CAN',
    ]);
  });

  it('what the agent says before its OK to the proxy\'s OPTION is the proxy\'s: none of it reaches the client', async () => {
    const { client, upstream } = await restrictedInFrontOfScripted();
    expect(await upstream.readLine()).toBe('OPTION pretend-request-origin=remote');
    upstream.send('S PROGRESS x\n# a comment\nD data\nEND\nOK\n');
    client.write('NOP\n');
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK from NOP\n');
    expect(await client.response()).toEqual(['OK from NOP']);
    client.destroy();
  });

  it('an agent that never answers the proxy\'s OPTION: the greeting timeout ends the session with one ERR', async () => {
    const { client, upstream } = await restrictedInFrontOfScripted({ greetingTimeoutMs: 50 });
    expect(await upstream.readLine()).toBe('OPTION pretend-request-origin=remote');
    expect(await client.rest()).toEqual(['ERR 67108926 Timeout <assuan-proxy> - gpg-agent did not answer the request to run the connection restricted in time']);
  });

  it.each([
    ['refuses to run the connection restricted', (u: ScriptedConnection) => u.send('ERR 67109038 Unknown option <GPG Agent>\n'), 'ERR 67109123 IPC connect call failed <assuan-proxy> - gpg-agent refused to run the connection restricted (pretend-request-origin)'],
    ['answers the OPTION with a line that is no answer', (u: ScriptedConnection) => u.send('INQUIRE WHAT\n'), 'ERR 67109124 Invalid IPC response <assuan-proxy> - gpg-agent sent a line that is not valid here'],
  ] as const)('an agent that %s: the client gets one ERR and a close, and no line of its reaches the agent', async (_, answer, expected) => {
    const { scripted, client, upstream } = await restrictedInFrontOfScripted();
    client.write('NOP\n');
    expect(await upstream.readLine()).toBe('OPTION pretend-request-origin=remote');
    answer(upstream);
    expect(await client.rest()).toEqual([expected]);
    expect(scripted.journal.filter((e) => e.startsWith('recv'))).toEqual(['recv OPTION pretend-request-origin=remote']);
  });

  it('signs and decrypts with real gpg through the restricted socket (the key has no passphrase)', async () => {
    const client = await createClientHome(agent.home);
    cleanups.push(() => client.cleanup());
    const proxy = await startTestProxy({ upstream: agent.socket, listen: client.socket, restricted: true });
    cleanups.push(() => proxy.close());
    const dir = makeTempDir('restr.');
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const message = path.join(dir, 'msg');
    fs.writeFileSync(message, 'signed through a restricted socket\n');

    const sign = await runTool('gpg', client.home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', `${message}.sig`, message]);
    expect(sign.code).toBe(0);
    await mustRun('gpg', agent.home, ['--batch', '--verify', `${message}.sig`, message]);

    await mustRun('gpg', agent.home, ['--batch', '--trust-model', 'always', '-r', key.fingerprint, '-o', `${message}.gpg`, '--encrypt', message]);
    const decrypt = await runTool('gpg', client.home, ['--batch', '--decrypt', `${message}.gpg`]);
    expect(decrypt.code).toBe(0);
    expect(decrypt.stdout.toString()).toBe('signed through a restricted socket\n');

    // gpg's environment OPTIONs were refused, and it asked GETINFO restricted, as on a real extra socket.
    const commands = proxy.logs.filter((r) => r.msg === 'command done');
    expect(commands).toContainEqual(expect.objectContaining({ verb: 'OPTION', outcome: 'refused' }));
    expect(commands).toContainEqual(expect.objectContaining({ verb: 'GETINFO', outcome: 'ok' }));
    expect(commands).toContainEqual(expect.objectContaining({ verb: 'PKSIGN', outcome: 'ok' }));
    expect(commands).toContainEqual(expect.objectContaining({ verb: 'PKDECRYPT', outcome: 'ok' }));
  });
});

describe('--allow and --deny', () => {
  it('--deny PKSIGN: gpg cannot sign through the socket, but can decrypt', async () => {
    const client = await createClientHome(agent.home);
    cleanups.push(() => client.cleanup());
    const proxy = await startTestProxy({ upstream: agent.socket, listen: client.socket, deny: ['PKSIGN'] });
    cleanups.push(() => proxy.close());
    const dir = makeTempDir('deny.');
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const message = path.join(dir, 'msg');
    fs.writeFileSync(message, 'no signing here\n');
    const sign = await runTool('gpg', client.home, ['--batch', '-u', key.fingerprint, '--detach-sign', '-o', `${message}.sig`, message]);
    expect(sign.code).not.toBe(0);
    expect(sign.stderr).toContain('Forbidden');
    await mustRun('gpg', agent.home, ['--batch', '--trust-model', 'always', '-r', key.fingerprint, '-o', `${message}.gpg`, '--encrypt', message]);
    const decrypt = await runTool('gpg', client.home, ['--batch', '--decrypt', `${message}.gpg`]);
    expect(decrypt.code).toBe(0);
  });

  it('--allow lets through only what it names (and BYE, NOP, RESET)', async () => {
    const proxy = await startTestProxy({ upstream: agent.socket, allow: ['GETINFO'] });
    cleanups.push(() => proxy.close());
    expect(await finalLine(proxy.socket, 'GETINFO version')).toBe('OK');
    expect(await finalLine(proxy.socket, 'NOP')).toBe('OK');
    expect(await finalLine(proxy.socket, `HAVEKEY ${key.keygrip}`)).toMatch(/^ERR 67109115 Forbidden <assuan-proxy> - HAVEKEY/);
  });

  it('an unknown verb in --allow or --deny stops the start with a clear message', async () => {
    await expect(startTestProxy({ upstream: agent.socket, deny: ['PKSIGN', 'FROBNICATE'] })).rejects.toThrow('deny: unknown command FROBNICATE');
  });
});
