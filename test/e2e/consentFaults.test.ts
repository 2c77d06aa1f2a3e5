/**
 * The consent wait against a scripted agent, for what a real gpg-agent cannot be made to do on cue: the client
 * half-closes, the server drains, or the agent speaks while a key use waits for the person; a prompt that cannot be
 * shown. The person is a scripted prompt the test answers. Whatever happens, the held command reaches the agent only
 * once approved, and a prompt nobody needs any more is taken down.
 */
import fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConsentRequest } from '../../src/consent/consentRequest.js';
import type { PromptVerdict } from '../../src/consent/agentPrompt.js';
import { createAgentHome, gpgconfDir } from '../support/gnupg.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent } from '../support/scriptedAgent.js';
import { greetedSession, until } from '../support/sessions.js';

/** A person the test speaks for: each prompt waits until the test answers it. */
function scriptedPerson() {
  const shown: Array<{ request: ConsentRequest; signal: AbortSignal; answer(verdict: PromptVerdict): void }> = [];
  return {
    shown,
    prompt: (request: ConsentRequest, signal: AbortSignal) =>
      new Promise<PromptVerdict>((resolve) => {
        shown.push({ request, signal, answer: resolve });
        signal.addEventListener('abort', () => resolve('timedOut'));
      }),
  };
}

let agent: ScriptedAgent;
let proxy: TestProxy;
let person: ReturnType<typeof scriptedPerson>;

beforeEach(async () => {
  agent = await createScriptedAgent();
  person = scriptedPerson();
  proxy = await startTestProxy({ upstream: agent.socket, confirm: ['all'], confirmPrompt: person.prompt, checkArguments: true, warmUpSessions: 0 });
});
afterEach(async () => {
  await proxy?.close();
  await agent?.close();
});

const waitingForPerson = async () => {
  await until(() => person.shown.length > 0);
  expect(proxy.proxy.sessions()[0]).toMatchObject({ state: 'awaitingConsent', pendingConsent: { operation: expect.any(String) } });
};

describe('a key use waiting for the person', () => {
  it('the client half-closes: once approved, the command and then the EOF reach the agent, and the answer the client', async () => {
    const { client, upstream } = await greetedSession(proxy.socket, agent);
    client.write('SCD PKAUTH OPENPGP.3\n');
    client.socket.end();
    await waitingForPerson();
    expect(person.shown[0]!.request.operation).toBe('auth');
    expect(agent.journal).toEqual(['send OK hi']);
    person.shown[0]!.answer('approved');
    expect(await upstream.readLine()).toBe('SCD PKAUTH OPENPGP.3');
    upstream.send('D signature\nOK\n');
    expect(await client.readLine()).toBe('D signature');
    expect(await client.readLine()).toBe('OK');
    // The agent read our EOF behind the command, as it would the client's directly.
    await upstream.closed;
    await client.closed;
  });

  it('the server drains: the held command is still decided and answered, then the session closes', async () => {
    const { client, upstream } = await greetedSession(proxy.socket, agent);
    client.write('PKDECRYPT\n');
    await waitingForPerson();
    const closing = proxy.proxy.close();
    person.shown[0]!.answer('refused');
    expect(await client.readLine()).toMatch(/^ERR 67108963 Operation cancelled <assuan-proxy> - PKDECRYPT was refused at the consent prompt$/);
    await closing;
    await client.closed;
    // Refused: the agent never read it.
    expect(agent.journal.filter((entry) => entry.startsWith('recv '))).toEqual([]);
    void upstream;
  });

  it('the agent speaks unasked: the session fails, and the prompt it no longer needs is withdrawn', async () => {
    const { client, upstream } = await greetedSession(proxy.socket, agent);
    client.write('PKSIGN\n');
    await waitingForPerson();
    upstream.send('S PROGRESS x\n');
    expect(await client.readLine()).toMatch(/^ERR \d+ Invalid IPC response <assuan-proxy> - gpg-agent sent output with no command pending$/);
    await until(() => person.shown[0]!.signal.aborted);
    await client.closed;
    expect(agent.journal.filter((entry) => entry.startsWith('recv '))).toEqual([]);
  });

  it('no prompt can be shown: Not confirmed, and the command never reaches the agent', async () => {
    const { client, upstream } = await greetedSession(proxy.socket, agent);
    client.write('PKSIGN --hash=sha256\n');
    await waitingForPerson();
    person.shown[0]!.answer('unavailable');
    expect(await client.readLine()).toMatch(/^ERR 67108978 Not confirmed <assuan-proxy> - PKSIGN was not approved/);
    // The listing (and the live view) shows the decision, and no prompt pending.
    expect(proxy.proxy.sessions()[0]).toMatchObject({ state: 'ready', lastConsent: { operation: 'sign', decision: 'unavailable' } });
    expect(proxy.proxy.sessions()[0]).not.toHaveProperty('pendingConsent');
    // The session goes on: the next command is relayed, and it is the first line the agent reads.
    client.write('NOP\n');
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.readLine()).toBe('OK');
    expect(agent.journal.filter((entry) => entry.startsWith('recv '))).toEqual(['recv NOP']);
  });
});

describe("OPTIONs for the pinentry's environment, with argument checks on", () => {
  it('are answered OK by the proxy and never sent: the agent keeps its own display and terminal', async () => {
    const { client, upstream } = await greetedSession(proxy.socket, agent);
    client.write('OPTION ttyname=/dev/pts/9\nOPTION display=:7\nNOP\n');
    expect(await client.readLine()).toBe('OK');
    expect(await client.readLine()).toBe('OK');
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.readLine()).toBe('OK');
    expect(agent.journal.filter((entry) => entry.startsWith('recv '))).toEqual(['recv NOP']);
  });
});

describe('--confirm-socket', () => {
  it("refuses gpg-agent's extra socket, which forbids the prompt", async () => {
    const home = await createAgentHome();
    try {
      const extra = await gpgconfDir(home.home, 'agent-extra-socket');
      await expect(
        startTestProxy({ upstream: home.socket, confirm: ['sign'], confirmSocket: extra, env: { ...process.env, GNUPGHOME: home.home }, warmUpSessions: 0 }),
      ).rejects.toThrow(/is gpg-agent's extra socket, which forbids the prompt/);
    } finally {
      await home.cleanup();
    }
  });
});

describe('raw card commands with --confirm', () => {
  it('SCD APDU, a key use no prompt could name, is refused and never reaches the agent', async () => {
    const { client, upstream } = await greetedSession(proxy.socket, agent);
    client.write('scd \t apdu 00880000\nNOP\n');
    expect(await client.readLine()).toMatch(/^ERR 67109115 Forbidden <assuan-proxy>/);
    expect(await upstream.readLine()).toBe('NOP');
    upstream.send('OK\n');
    expect(await client.readLine()).toBe('OK');
    expect(person.shown).toEqual([]);
    expect(agent.journal.filter((entry) => entry.startsWith('recv '))).toEqual(['recv NOP']);
  });
});

describe('--preset yubikey', () => {
  it("refuses to start in front of the agent's extra socket, even under another name", async () => {
    const home = await createAgentHome();
    try {
      const extra = await gpgconfDir(home.home, 'agent-extra-socket');
      const link = `${home.home}/plain-looking-socket`;
      fs.symlinkSync(extra, link);
      await expect(startTestProxy({ upstream: link, preset: 'yubikey', env: { ...process.env, GNUPGHOME: home.home }, warmUpSessions: 0 })).rejects.toThrow(
        /--preset yubikey works through SCD, which gpg-agent forbids on .*plain-looking-socket \('gpgconf --list-dirs agent-extra-socket'\)/,
      );
      // Its standard socket is fine.
      const fine = await startTestProxy({ upstream: home.socket, preset: 'yubikey', env: { ...process.env, GNUPGHOME: home.home }, warmUpSessions: 0 });
      await fine.close();
    } finally {
      await home.cleanup();
    }
  });
});

describe('--confirm in front of another daemon', () => {
  it('is refused at start: scdaemon takes card commands bare, and they would pass unasked', async () => {
    const dir = fs.mkdtempSync('/tmp/apx-scd.');
    try {
      await expect(startTestProxy({ upstream: `${dir}/S.scdaemon`, confirm: ['all'], confirmPrompt: person.prompt, warmUpSessions: 0 })).rejects.toThrow(
        /--confirm asks about the key uses gpg-agent is sent; in front of scdaemon .* they would pass unasked/,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
