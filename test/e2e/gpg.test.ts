/**
 * Real gpg through the proxy, each operation compared with the same operation done directly against the agent.
 * The agent runs in a throw-away GNUPGHOME with keys generated here: an unprotected ed25519/cv25519 key and a
 * passphrase-protected rsa3072 key (its exported secret key is a D block of over 1 KB).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectionEvent } from 'xstate';
import type { SessionEvent } from '../../machines/session.js';
import { RawClient } from '../support/assuanClient.js';
import {
  createAgentHome,
  createClientHome,
  generateKey,
  mustRun,
  runTool,
  type AgentHome,
  type KeyInfo,
} from '../support/gnupg.js';
import { rejectedEvents, sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';

const execFileAsync = promisify(execFile);
const PASSPHRASE = 'correct horse battery staple 7';
const MESSAGE = Buffer.from('the quick brown fox\n\u00ff\u0000 binary tail', 'latin1');

let agent: AgentHome;
let client: Awaited<ReturnType<typeof createClientHome>>;
let proxy: TestProxy;
let plain: KeyInfo;
let protectedKey: KeyInfo;
const events: SessionEvent[] = [];
/** Every inspection event's event and snapshot context, unsanitized, as an inspector would serialize them. */
const inspected: string[] = [];
/** The value PKDECRYPT returned through the proxy: secret, like a session key. */
let decryptedValue: Buffer | undefined;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  agent = await createAgentHome();
  cleanups.push(() => agent.cleanup());
  plain = await generateKey(agent.home, 'Plain <plain@example.org>', 'future-default', '');
  protectedKey = await generateKey(agent.home, 'Protected <protected@example.org>', 'rsa3072', PASSPHRASE);
  client = await createClientHome(agent.home);
  cleanups.push(() => client.cleanup());
  proxy = await startTestProxy({
    // As users run it: sessions take the connection dialed and greeted ahead of them.
    spareConnection: true,
    upstream: agent.socket,
    listen: client.socket,
    traceTransitions: true,
    inspect: (ev: InspectionEvent) => {
      if (ev.type === '@xstate.event') events.push(ev.event as SessionEvent);
      const snapshot = (ev as { snapshot?: { context?: unknown } }).snapshot;
      inspected.push(JSON.stringify({ type: ev.type, event: (ev as { event?: unknown }).event, context: snapshot?.context }, bytesAsText));
    },
  });
  cleanups.push(() => proxy.close());
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** Buffers and byte arrays written out as text, so that a leaked byte would show in the dump. */
function bytesAsText(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('latin1');
  if (value && typeof value === 'object' && (value as { type?: string }).type === 'Buffer') return Buffer.from((value as { data: number[] }).data).toString('latin1');
  return value;
}

/** D line payloads joined and unescaped (%XX). */
function dPayload(lines: Buffer[]): Buffer {
  const raw = Buffer.concat(lines.filter((l) => l.subarray(0, 2).toString('latin1') === 'D ').map((l) => l.subarray(2, l.length - 1)));
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x25) {
      out.push(parseInt(raw.toString('latin1', i + 1, i + 3), 16));
      i += 2;
    } else out.push(raw[i]!);
  }
  return Buffer.from(out);
}

/** Every byte outside printable ASCII (and `%`) escaped, for a D line we send. */
function escapeData(bytes: Buffer): string {
  let text = '';
  for (const b of bytes) text += b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).padStart(2, '0').toUpperCase()}` : String.fromCharCode(b);
  return text;
}

/** The bytes of the canonical S-expression atom after `(1:<name>`. */
function sexpAtom(sexp: Buffer, name: string): Buffer {
  const at = sexp.indexOf(`(${name.length}:${name}`);
  let i = at + 2 + String(name.length).length + name.length;
  let digits = '';
  while (sexp[i] !== 0x3a) digits += String.fromCharCode(sexp[i++]!);
  return sexp.subarray(i + 1, i + 1 + Number(digits));
}

const toBigInt = (bytes: Buffer) => BigInt(`0x${bytes.toString('hex') || '0'}`);
function modPow(base: bigint, exponent: bigint, modulus: bigint): bigint {
  let result = 1n;
  let b = base % modulus;
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % modulus;
    b = (b * b) % modulus;
  }
  return result;
}

/** Forgets cached passphrases, so the next use of the protected key must INQUIRE PASSPHRASE again. */
async function forgetPassphrases(): Promise<void> {
  await execFileAsync('gpgconf', ['--reload', 'gpg-agent'], { env: { ...process.env, GNUPGHOME: agent.home } });
}

const inquiries = () => events.filter((e) => e.type === 'AGENT.INQUIRE').map((e) => (e as { keyword: string }).keyword);
const commandLog = (verb: string) => proxy.logs.filter((r) => r.msg === 'command done' && r.verb === verb);

describe('real gpg through the proxy', () => {
  it('lists secret keys exactly as direct', async () => {
    const args = ['--batch', '--with-colons', '--with-keygrip', '-K'];
    const direct = await mustRun('gpg', agent.home, args);
    const proxied = await mustRun('gpg', client.home, args);
    expect(proxied.toString()).toBe(direct.toString());
    expect(proxied.toString()).toContain(plain.fingerprint);
    expect(proxied.toString()).toContain(protectedKey.fingerprint);
  });

  it('detach-signs; the signature verifies, as one made directly does', async () => {
    const verify = async (signature: Buffer) => {
      const fs = await import('node:fs');
      const file = `${client.home}/sig-${Date.now()}.sig`;
      fs.writeFileSync(file, signature);
      const out = await mustRun('gpg', client.home, ['--batch', '--status-fd', '1', '--verify', file, '-'], MESSAGE);
      return /^\[GNUPG:\] GOODSIG \S+ .*$/m.exec(out.toString())?.[0];
    };
    const args = ['--batch', '-u', plain.fingerprint, '--detach-sign', '-o', '-'];
    const viaProxy = await mustRun('gpg', client.home, args, MESSAGE);
    const direct = await mustRun('gpg', agent.home, args, MESSAGE);
    expect(await verify(viaProxy)).toBeDefined();
    expect(await verify(viaProxy)).toBe(await verify(direct));
    expect(commandLog('PKSIGN').length).toBeGreaterThan(0);
  });

  it('decrypts (INQUIRE CIPHERTEXT) to the same plaintext as direct', async () => {
    const ciphertext = await mustRun('gpg', agent.home, ['--batch', '--trust-model', 'always', '-r', plain.fingerprint, '-e', '-o', '-'], MESSAGE);
    const viaProxy = await mustRun('gpg', client.home, ['--batch', '-d', '-o', '-'], ciphertext);
    const direct = await mustRun('gpg', agent.home, ['--batch', '-d', '-o', '-'], ciphertext);
    expect(viaProxy.equals(MESSAGE)).toBe(true);
    expect(viaProxy.equals(direct)).toBe(true);
    expect(inquiries()).toContain('CIPHERTEXT');
  });

  it('signs with the passphrase key through --pinentry-mode loopback (INQUIRE PASSPHRASE), and refuses a wrong one', async () => {
    const sign = (home: string, passphrase: string) =>
      runTool('gpg', home, ['--batch', '--pinentry-mode', 'loopback', '--passphrase', passphrase, '-u', protectedKey.fingerprint, '--detach-sign', '-o', '-'], MESSAGE);
    await forgetPassphrases();
    const wrongViaProxy = await sign(client.home, 'wrong passphrase');
    await forgetPassphrases();
    const wrongDirect = await sign(agent.home, 'wrong passphrase');
    expect(wrongViaProxy.code).not.toBe(0);
    expect(wrongViaProxy.code).toBe(wrongDirect.code);
    expect(wrongViaProxy.stderr).toContain('Bad passphrase');

    await forgetPassphrases();
    const before = inquiries().filter((k) => k === 'PASSPHRASE').length;
    const viaProxy = await sign(client.home, PASSPHRASE);
    expect(viaProxy.stderr).toBe('');
    expect(viaProxy.code).toBe(0);
    expect(inquiries().filter((k) => k === 'PASSPHRASE').length).toBeGreaterThan(before);
    await forgetPassphrases();
    const direct = await sign(agent.home, PASSPHRASE);
    expect(direct.code).toBe(0);
    const fs = await import('node:fs');
    for (const [name, sig] of [['proxy', viaProxy.stdout], ['direct', direct.stdout]] as const) {
      const file = `${client.home}/pass-${name}.sig`;
      fs.writeFileSync(file, sig);
      await mustRun('gpg', client.home, ['--batch', '--verify', file, '-'], MESSAGE);
    }
  });

  it('exports the protected secret key (a D block over 1 KB) and imports it (INQUIRE KEYDATA) elsewhere, as direct', async () => {
    const exportArgs = ['--batch', '--pinentry-mode', 'loopback', '--passphrase', PASSPHRASE, '--export-secret-keys', protectedKey.fingerprint];
    await forgetPassphrases();
    const viaProxy = await mustRun('gpg', client.home, exportArgs);
    await forgetPassphrases();
    const direct = await mustRun('gpg', agent.home, exportArgs);
    const exportCommands = commandLog('EXPORT_KEY');
    // The passphrase went in the same command, so its record gives no sizes; the key itself shows the D block's size.
    expect(exportCommands.at(-1)).toMatchObject({ outcome: 'ok', sizes: 'withheld' });
    expect(viaProxy.length).toBeGreaterThan(1024);
    expect(viaProxy.length).toBe(direct.length);

    // Import each export into its own fresh agent: the proxied one through a second proxy.
    const listings: string[] = [];
    for (const [exported, throughProxy] of [[viaProxy, true], [direct, false]] as const) {
      const target = await createAgentHome();
      cleanups.push(() => target.cleanup());
      await mustRun('gpg', target.home, ['--batch', '--import'], await mustRun('gpg', agent.home, ['--export', protectedKey.fingerprint]));
      let home = target.home;
      if (throughProxy) {
        const targetClient = await createClientHome(target.home);
        cleanups.push(() => targetClient.cleanup());
        const second = await startTestProxy({ upstream: target.socket, listen: targetClient.socket });
        cleanups.push(() => second.close());
        home = targetClient.home;
        await mustRun('gpg', home, ['--batch', '--import'], exported);
        const imports = second.logs.filter((r) => r.msg === 'command done' && r.verb === 'IMPORT_KEY');
        // KEYDATA is a secret answer: no sizes in the record (the listing below shows the key arrived whole).
        expect(imports.at(-1)).toMatchObject({ outcome: 'ok', sizes: 'withheld' });
      } else {
        await mustRun('gpg', home, ['--batch', '--import'], exported);
      }
      const listing = await mustRun('gpg', target.home, ['--batch', '--with-colons', '--with-keygrip', '-K']);
      listings.push(listing.toString().split('\n').filter((l) => /^(fpr|grp):/.test(l)).join('\n'));
    }
    expect(listings[0]).toContain(protectedKey.keygrip);
    expect(listings[0]).toBe(listings[1]);
  });

  it('gpg-preset-passphrase (writes BYE, closes without reading) presets through the proxy', async () => {
    await forgetPassphrases();
    const preset = await runTool('/usr/lib/gnupg/gpg-preset-passphrase', client.home, ['--preset', protectedKey.keygrip], `${PASSPHRASE}\n`);
    expect(preset.stderr).toBe('');
    expect(preset.code).toBe(0);
    // Signing now needs no passphrase at all: the agent has it cached from the preset.
    const sign = await runTool('gpg', client.home, ['--batch', '--pinentry-mode', 'error', '-u', protectedKey.fingerprint, '--detach-sign', '-o', '-'], MESSAGE);
    expect(sign.stderr).toBe('');
    expect(sign.code).toBe(0);
    expect(commandLog('PRESET_PASSPHRASE').at(-1)).toMatchObject({ outcome: 'ok' });
  });

  it('no session leaks: every session ended', async () => {
    await sessionsDrained(proxy.proxy);
    const opened = proxy.logs.filter((r) => r.msg === 'session opened').map((r) => r.session);
    const ended = proxy.logs.filter((r) => r.msg === 'session ended');
    expect(opened.length).toBeGreaterThan(0);
    expect(ended.map((r) => r.session).sort()).toEqual([...opened].sort());
    expect(ended.filter((r) => r.outcome !== 'closed')).toEqual([]);
    expect(rejectedEvents(proxy.logs)).toEqual([]);
  });

  it('PKDECRYPT of an RSA ciphertext made here returns its value through the proxy (loopback passphrase)', async () => {
    await forgetPassphrases();
    const session = await RawClient.connect(proxy.socket);
    await session.readLine();
    session.write(`READKEY ${protectedKey.keygrip}\n`);
    const sexp = dPayload(await session.responseBytes());
    const n = toBigInt(sexpAtom(sexp, 'n'));
    const e = toBigInt(sexpAtom(sexp, 'e'));
    // A value of our own, encrypted with the raw public key: PKDECRYPT must give exactly these bytes back.
    const secret = Buffer.concat([Buffer.from([0x02]), Buffer.from(Array.from({ length: 47 }, (_, i) => (i * 37 + 11) & 0xff))]);
    const c = modPow(toBigInt(secret), e, n).toString(16);
    const cipher = Buffer.from(c.length % 2 ? `0${c}` : c, 'hex');
    const ciphertext = Buffer.concat([Buffer.from(`(7:enc-val(3:rsa(1:a${cipher.length}:`), cipher, Buffer.from(')))')]);
    expect((await session.request('OPTION pinentry-mode=loopback')).at(-1)).toBe('OK');
    expect((await session.request(`SETKEY ${protectedKey.keygrip}`)).at(-1)).toBe('OK');
    expect((await session.request('PKDECRYPT')).at(-1)).toBe('INQUIRE CIPHERTEXT');
    session.write(`D ${escapeData(ciphertext)}\nEND\n`);
    let answer = await session.responseBytes();
    if (answer.at(-1)!.toString('latin1').startsWith('INQUIRE PASSPHRASE')) {
      session.write(`D ${PASSPHRASE}\nEND\n`);
      answer = await session.responseBytes();
    }
    expect(answer.at(-1)!.toString('latin1')).toBe('OK\n');
    const value = sexpAtom(dPayload(answer), 'value');
    expect(value.equals(secret)).toBe(true);
    decryptedValue = value;
    session.destroy();
  });

  it('no secret reaches a log line (trace level, transition trace on) or an inspection event', async () => {
    expect(decryptedValue).toBeDefined();
    const hex = Buffer.from(PASSPHRASE).toString('hex');
    const log = proxy.rawLog();
    expect(log).toContain('"msg":"transition"');
    expect(proxy.logs.some((r) => r.level === 10 || r.level === 20)).toBe(true);
    const secrets: Array<[string, string]> = [
      ['passphrase', PASSPHRASE],
      ['passphrase (part)', 'correct horse'],
      ['passphrase hex', hex],
      ['passphrase HEX', hex.toUpperCase()],
      ['PKDECRYPT value', decryptedValue!.subarray(1, 40).toString('latin1')],
      ['PKDECRYPT value hex', decryptedValue!.subarray(1, 40).toString('hex')],
      ['PKDECRYPT value HEX', decryptedValue!.subarray(1, 40).toString('hex').toUpperCase()],
      ['PKDECRYPT value base64', decryptedValue!.subarray(1, 40).toString('base64')],
    ];
    const texts = { log, inspection: inspected.join('\n') };
    for (const [where, text] of Object.entries(texts)) {
      expect(text.length, where).toBeGreaterThan(1000);
      for (const [name, secret] of secrets) expect(text.includes(secret), `${where} contains the ${name}`).toBe(false);
    }
  });
});

describe('the agent killed in the middle of a session', () => {
  it('the client gets one ERR and a close; after the agent restarts, new sessions work without restarting the proxy', async () => {
    const session = await RawClient.connect(proxy.socket);
    expect(await session.readLine()).toMatch(/^OK Pleased/);
    expect((await session.request('PKDECRYPT')).at(-1)).toBe('INQUIRE CIPHERTEXT');
    process.kill(await agent.pid(), 'SIGKILL');
    const rest = await session.rest();
    expect(rest).toHaveLength(1);
    expect(rest[0]).toMatch(/^ERR 67125247 End of file <assuan-proxy> - gpg-agent closed the connection \((EOF|ECONNRESET)\)$/);

    // With the agent dead, gpg through the proxy fails with the proxy's reason (not a hang).
    const failed = await runTool('gpg', client.home, ['--batch', '-K']);
    const refused = await RawClient.connect(proxy.socket);
    expect(await refused.rest()).toEqual([
      `ERR 67109123 IPC connect call failed <assuan-proxy> - cannot connect to gpg-agent at ${agent.socket}: ECONNREFUSED`,
    ]);
    expect(failed.stdout.toString()).not.toContain('sec');

    await agent.launch();
    const listing = await mustRun('gpg', client.home, ['--batch', '--with-colons', '-K']);
    expect(listing.toString()).toContain(plain.fingerprint);
  });
});
