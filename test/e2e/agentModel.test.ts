/**
 * The proxy's model of where gpg-agent's reader is, checked against the real agent: an INQUIRE that takes no data
 * (PINENTRY_LAUNCHED) ends at a D line, and the lines behind it are read later as commands, so they wait for the
 * command in flight and then go through the policy; half-closes give the client the bytes it gets directly; and
 * restricted mode is the agent's own (a cache of its own, the remote-site note in the pinentry).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawClient } from '../support/assuanClient.js';
import { normalized, transcript, type Step } from '../support/differential.js';
import { createAgentHome, generateKey, type AgentHome, type KeyInfo, type ScriptedPinentry } from '../support/gnupg.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';

const PASSPHRASE = 's3cret';
/** A cache id no key has: PRESET_PASSPHRASE stores under it all the same, and GET_PASSPHRASE --no-ask reads it. */
const PLANTED_GRIP = 'AB'.repeat(20);
const hex = (text: string) => Buffer.from(text, 'latin1').toString('hex').toUpperCase();

let agent: AgentHome & { pinentry: ScriptedPinentry };
let protectedKey: KeyInfo;
let plain: TestProxy;
let denying: TestProxy;
let restricted: TestProxy;

beforeAll(async () => {
  agent = await createAgentHome({ pinentryPassphrase: PASSPHRASE });
  protectedKey = await generateKey(agent.home, 'Protected <protected@example.org>', 'ed25519', PASSPHRASE);
  plain = await startTestProxy({ upstream: agent.socket, spareConnection: true });
  denying = await startTestProxy({ upstream: agent.socket, deny: ['PRESET_PASSPHRASE', 'KEYINFO'] });
  restricted = await startTestProxy({ upstream: agent.socket, restricted: true, spareConnection: true });
});

afterAll(async () => {
  await Promise.all([plain?.close(), denying?.close(), restricted?.close()]);
  await agent?.cleanup();
});

async function session(socket: string): Promise<RawClient> {
  const client = await RawClient.connect(socket);
  expect(await client.readLine()).toMatch(/^OK Pleased to meet you/);
  return client;
}

/** Asks for a passphrase with no cache (`X`): the agent runs the pinentry and, with notify on, INQUIREs first. */
async function openPinentryInquiry(client: RawClient): Promise<void> {
  expect(await client.request('OPTION allow-pinentry-notify')).toEqual(['OK']);
  client.write('GET_PASSPHRASE X X Prompt Desc\n');
  expect((await client.response()).at(-1)).toMatch(/^INQUIRE PINENTRY_LAUNCHED /);
}

async function agentStillAnswers(): Promise<void> {
  const other = await session(agent.socket);
  expect(await other.request('GETINFO version')).toEqual(['D 2.2.40', 'OK']);
  other.destroy();
}

describe('an INQUIRE that takes no data (PINENTRY_LAUNCHED)', () => {
  it('lines sent behind the D line that ends it are commands: the policy refuses the forbidden ones, and the agent never runs them', async () => {
    agent.pinentry.answer(PASSPHRASE);
    const client = await session(denying.socket);
    await openPinentryInquiry(client);
    // One write: the D line ends the inquiry at the agent, which carries on with the pinentry; the rest is read
    // by its command loop once GET_PASSPHRASE is done.
    client.write(`D x\nPRESET_PASSPHRASE ${PLANTED_GRIP} -1 ${hex('planted')}\nKEYINFO --list\nNOP\n`);
    expect(await client.response()).toEqual([`OK ${hex(PASSPHRASE)}`]);
    expect(await client.response()).toEqual(['ERR 67109115 Forbidden <assuan-proxy> - PRESET_PASSPHRASE is not allowed through this socket']);
    expect(await client.response()).toEqual(['ERR 67109115 Forbidden <assuan-proxy> - KEYINFO is not allowed through this socket']);
    expect(await client.response()).toEqual(['OK']);
    client.destroy();

    // By its effect: nothing was planted in the agent's cache.
    const direct = await session(agent.socket);
    expect(await direct.request(`GET_PASSPHRASE --no-ask ${PLANTED_GRIP} X X X`)).toEqual(['ERR 67108922 No data <GPG Agent>']);
    direct.destroy();
    // Every refusal is logged at the default level, with the rule that made it.
    const refusals = denying.logs.filter((r) => r.msg === 'refused by policy');
    expect(refusals).toEqual([
      expect.objectContaining({ level: 30, verb: 'PRESET_PASSPHRASE', rule: 'deny' }),
      expect.objectContaining({ level: 30, verb: 'KEYINFO', rule: 'deny' }),
    ]);
  });

  it('a lone-% D line sent behind it is held for the CIPHERTEXT inquiry it really answers, and refused there: the agent is not wedged', async () => {
    agent.pinentry.answer(PASSPHRASE);
    const client = await session(plain.socket);
    await openPinentryInquiry(client);
    client.write('D x\nPKDECRYPT\nD abc%\nEND\n');
    expect(await client.response()).toEqual([`OK ${hex(PASSPHRASE)}`]);
    expect(await client.response()).toEqual(['S INQUIRE_MAXLEN 4096', 'INQUIRE CIPHERTEXT']);
    expect(await client.response()).toEqual(["ERR 67109140 IPC syntax error <assuan-proxy> - D line has a '%' not followed by two hex digits"]);
    expect(await client.request('GETINFO version')).toEqual(['D 2.2.40', 'OK']);
    client.destroy();
    await agentStillAnswers();
  });

  it('a command sent after the agent ended the command (pinentry cancelled) is answered, not lost', async () => {
    agent.pinentry.answer({ cancel: true });
    const client = await session(plain.socket);
    await openPinentryInquiry(client);
    client.write('D x\n');
    expect(await client.response()).toEqual(['ERR 83886179 Operation cancelled <Pinentry>']);
    expect(await client.request('GETINFO version')).toEqual(['D 2.2.40', 'OK']);
    client.destroy();
  });

  it('END and CAN end it too, and the next command is answered after the one in flight', async () => {
    agent.pinentry.answer(PASSPHRASE);
    for (const answer of ['END', 'CAN', '# a comment\nEND']) {
      const client = await session(plain.socket);
      await openPinentryInquiry(client);
      client.write(`${answer}\nGETINFO version\n`);
      expect(await client.response()).toEqual([`OK ${hex(PASSPHRASE)}`]);
      expect(await client.response()).toEqual(['D 2.2.40', 'OK']);
      client.destroy();
    }
  });
});

describe('the same bytes directly and through the proxy', () => {
  const pinentryLaunched: Step[] = [
    { send: 'OPTION allow-pinentry-notify\n' },
    { until: /^OK\n/m },
    { send: 'GET_PASSPHRASE X X Prompt Desc\n' },
    { until: /^INQUIRE PINENTRY_LAUNCHED .*\n/m },
  ];
  const ciphertext: Step[] = [{ send: 'PKDECRYPT\n' }, { until: /^INQUIRE CIPHERTEXT\n/m }];
  const cases: Array<[string, Step[]]> = [
    ['half-close while ready', []],
    ['half-close in the middle of a command line', [{ send: 'GETINFO vers' }]],
    ['half-close right behind a command', [{ send: 'GETINFO version\n' }]],
    ['half-close behind pipelined commands', [{ send: 'NOP\nGETINFO version\n# c\nBOGUS\n' }]],
    ['half-close inside a data INQUIRE', ciphertext],
    ['half-close inside a data INQUIRE after some data', [...ciphertext, { send: 'D 0102\n# c\n' }]],
    ['half-close inside a data INQUIRE in the middle of a D line', [...ciphertext, { send: 'D abc' }]],
    ['half-close inside an INQUIRE that takes no data', pinentryLaunched],
    ['a D line ends an INQUIRE that takes no data; the lines behind it are commands', [...pinentryLaunched, { send: 'D x\nGETINFO version\nEND\nD y\nNOP\n' }]],
    ['half-close right behind the END of an answer', [...ciphertext, { send: 'D 01\nEND\n' }]],
    ['a command inside a data INQUIRE ends it unexecuted', [...ciphertext, { send: 'D 01\nGETINFO version\nNOP\n' }]],
    ['too much data: the agent reads on to the END', [...ciphertext, { send: `${`D ${'a'.repeat(990)}\n`.repeat(5)}END\nNOP\n` }]],
  ];

  it.each(cases)('%s', async (_, steps) => {
    agent.pinentry.answer(PASSPHRASE);
    const direct = normalized(await transcript(agent.socket, steps));
    const proxied = normalized(await transcript(plain.socket, steps));
    expect(proxied).toBe(direct);
  });
});

describe('an INQUIRE a card daemon makes, passed through by gpg-agent', () => {
  let carded: AgentHome;
  let proxy: TestProxy;
  beforeAll(async () => {
    carded = await createAgentHome({ scdaemon: true });
    proxy = await startTestProxy({ upstream: carded.socket });
  });
  afterAll(async () => {
    await proxy?.close();
    await carded?.cleanup();
  });

  it('KNOWNCARDP takes no data at scdaemon, but gpg-agent reads the answer with a buffer: D lines are data, the same bytes come back', async () => {
    const steps: Step[] = [{ send: 'SCD LEARN\n' }, { until: /^INQUIRE KNOWNCARDP .*\n/m }, { send: 'D 1\nEND\nNOP\n' }];
    const direct = normalized(await transcript(carded.socket, steps));
    expect(direct).toMatch(/INQUIRE KNOWNCARDP .*\nOK\nOK\n$/);
    expect(normalized(await transcript(proxy.socket, steps))).toBe(direct);
  });
});

describe('--restricted: the agent itself runs the connection as its extra socket would', () => {
  const signingCommands = (grip: string) => [
    `SIGKEY ${grip}`,
    'SETKEYDESC Sign+through+the+proxy',
    `SETHASH --hash=sha256 ${'ab'.repeat(32)}`,
  ];

  it('a passphrase the local user cached is not used: the pinentry asks again, and says the request is remote', async () => {
    // The local user's cache holds the passphrase (as after a local signing).
    const local = await session(agent.socket);
    expect(await local.request(`PRESET_PASSPHRASE ${protectedKey.keygrip} -1 ${hex(PASSPHRASE)}`)).toEqual(['OK']);
    local.destroy();
    agent.pinentry.answer(PASSPHRASE);
    const seenBefore = agent.pinentry.lines().length;

    const remote = await session(restricted.socket);
    expect(await remote.request('GETINFO restricted')).toEqual(['OK']);
    for (const command of signingCommands(protectedKey.keygrip)) expect(await remote.request(command)).toEqual(['OK']);
    const signature = await remote.request('PKSIGN');
    expect(signature.at(-1)).toBe('OK');
    expect(signature.some((line) => line.startsWith('D (7:sig-val'))).toBe(true);
    remote.destroy();

    const shown = agent.pinentry.lines().slice(seenBefore);
    expect(shown.some((line) => line.startsWith('GETPIN'))).toBe(true);
    expect(shown.find((line) => line.startsWith('SETDESC '))).toContain('Note: Request from a remote site.');
  });

  it('the agent refuses what its extra socket refuses, even where the proxy lets the line through', async () => {
    const remote = await session(restricted.socket);
    // Allowed by the proxy's own rules (HAVEKEY), answered by the restricted agent as on its extra socket.
    expect(await remote.request(`HAVEKEY ${protectedKey.keygrip}`)).toEqual(['OK']);
    expect(await remote.request('GETINFO pid')).toEqual(['ERR 67109115 Forbidden <assuan-proxy> - GETINFO is not allowed through this socket']);
    remote.destroy();
  });
});
