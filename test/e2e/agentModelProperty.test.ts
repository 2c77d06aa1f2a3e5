/**
 * Properties over random sessions against a model of gpg-agent's reader (test/support/modelAgent.ts): pipelined
 * commands, INQUIREs that take data and one that takes none, answers ended by END, CAN, a D line or any other
 * line, commands the agent ends early, comment and empty lines, an unfinished last line and a half-close, all
 * written in random pieces.
 * - With no policy, the client reads exactly the bytes it reads directly from the same agent.
 * - With a random policy, no line the agent runs as a command is one the policy forbids.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProxyOptions } from '../../src/config.js';
import { createCommandPolicy } from '../../src/policy.js';
import { classifyClientLine } from '../../src/protocol/classify.js';
import { transcript, type Step } from '../support/differential.js';
import { startModelAgent, type ModelAgent } from '../support/modelAgent.js';
import { startTestProxy, type TestProxy } from '../support/proxy.js';
import { startTestForward, type TestForward } from '../support/forward.js';
import { makeTempDir } from '../support/gnupg.js';
import { until } from '../support/sessions.js';
import fs from 'node:fs';
import path from 'node:path';

const RUNS = Number(process.env.MODEL_PROPERTY_RUNS ?? 300);
/** Each session over a link is a stream through a second process: fewer of them. */
const LINK_RUNS = Math.ceil(RUNS / 3);

const LINES = [
  'NOP', 'GETINFO version', 'KEYINFO --list', 'PKDECRYPT', 'PKDECRYPT --fail', 'PKSIGN', 'GET_PASSPHRASE X X P D',
  'PRESET_PASSPHRASE AB -1 00', 'BOGUS', 'CANCEL', 'CAN', 'can', 'END', 'end', 'D 0102', 'D %41%0a', 'd x', '# c', '',
];
const VERBS = ['NOP', 'GETINFO', 'KEYINFO', 'PKDECRYPT', 'PKSIGN', 'GET_PASSPHRASE', 'PRESET_PASSPHRASE', 'CANCEL', 'CAN', 'END', 'D'];

/** A client's whole side: lines (LF or CR LF), maybe an unfinished last line, cut into random pieces. */
const clientSide = fc
  .tuple(
    fc.array(fc.tuple(fc.constantFrom(...LINES), fc.constantFrom('\n', '\n', '\r\n')), { maxLength: 16 }),
    fc.option(fc.constantFrom('GETINFO vers', 'D 01', 'EN', '#'), { freq: 4 }),
    fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 8 }),
  )
  .map(([lines, partial, cuts]) => {
    const bytes = Buffer.from(lines.map(([l, end]) => l + end).join('') + (partial ?? ''), 'latin1');
    const steps: Step[] = [];
    let at = 0;
    for (let i = 0; at < bytes.length; i++) {
      const size = cuts[i % cuts.length]!;
      steps.push({ send: bytes.subarray(at, at + size) });
      at += size;
    }
    return steps;
  });

let model: ModelAgent;
let plain: TestProxy;

beforeAll(async () => {
  model = await startModelAgent();
  plain = await startTestProxy({ upstream: model.socket });
});

afterAll(async () => {
  await plain?.close();
  await model?.close();
});

const withoutGreetingPid = (text: string) => text.replace(/^OK Pleased to meet you.*$/m, 'OK greeting');

/** Runs `use` against a proxy with these policy options in front of the model agent, whose record starts empty. */
async function withPolicyProxy(options: Pick<ProxyOptions, 'restricted' | 'allow' | 'deny' | 'keys'>, use: (proxy: TestProxy) => Promise<void>): Promise<void> {
  const proxy = await startTestProxy({ upstream: model.socket, ...options });
  try {
    model.executed.length = 0;
    await use(proxy);
  } finally {
    await proxy.close();
  }
}

describe('against a model of the agent\'s reader', () => {
  it(`with no policy, the client reads the same bytes as directly (${RUNS} random sessions)`, async () => {
    await fc.assert(
      fc.asyncProperty(clientSide, async (steps) => {
        const direct = await transcript(model.socket, steps);
        const proxied = await transcript(plain.socket, steps);
        expect(withoutGreetingPid(proxied)).toBe(withoutGreetingPid(direct));
      }),
      { numRuns: RUNS },
    );
  }, 120_000);

  it(`over a bridge link too, the client on the far side reads the same bytes as directly (${LINK_RUNS} random sessions)`, async () => {
    const dir = makeTempDir('link.');
    const remoteSocket = path.join(dir, 'far', 'S.gpg-agent');
    let link: TestForward | undefined;
    try {
      link = await startTestForward({ upstream: model.socket, remoteSocket });
      await until(() => link!.forward.state().startsWith('up.') && fs.existsSync(remoteSocket));
      await fc.assert(
        fc.asyncProperty(clientSide, async (steps) => {
          const direct = await transcript(model.socket, steps);
          const overLink = await transcript(remoteSocket, steps);
          expect(withoutGreetingPid(overLink)).toBe(withoutGreetingPid(direct));
        }),
        { numRuns: LINK_RUNS },
      );
    } finally {
      await link?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);

  it(`with a random policy, no line the agent runs as a command is one the policy forbids (${RUNS} random sessions)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        clientSide,
        fc.subarray(VERBS, { maxLength: 5 }),
        fc.option(fc.subarray(VERBS, { minLength: 1 }), { freq: 3 }),
        fc.boolean(),
        async (steps, deny, allow, restricted) => {
          const options = { deny, ...(allow ? { allow } : {}), restricted };
          const policy = createCommandPolicy(options);
          await withPolicyProxy(options, async (proxy) => {
            await transcript(proxy.socket, steps);
            // In restricted mode the first line is the proxy's own OPTION pretend-request-origin=remote.
            const fromClient = restricted ? model.executed.slice(1) : model.executed;
            if (restricted) expect(model.executed[0]).toBe('OPTION pretend-request-origin=remote');
            for (const line of fromClient) {
              const bytes = Buffer.from(`${line}\n`, 'latin1');
              expect(policy?.(bytes, classifyClientLine(bytes).verb), line).toBeUndefined();
            }
          });
        },
      ),
      { numRuns: RUNS },
    );
  }, 240_000);
});

describe('the policy judges every line the agent would run as a command, in every state', () => {
  it('--allow HAVEKEY: stray D, END and CAN lines are refused like commands, and never reach the agent', async () => {
    await withPolicyProxy({ allow: ['HAVEKEY'] }, async (proxy) => {
      const got = await transcript(proxy.socket, [{ send: 'D 0102\nEND\nCAN\nCANCEL\nd x\nNOP\n' }]);
      const forbidden = (verb: string) => `ERR 67109115 Forbidden <assuan-proxy> - ${verb} is not allowed through this socket\n`;
      expect(got.replace(/^OK Pleased.*\n/, '')).toBe(`${forbidden('D')}${forbidden('END')}${forbidden('CAN')}${forbidden('CANCEL')}${forbidden('D')}OK\n`);
      expect(model.executed).toEqual(['NOP']);
    });
  });

  it('--deny CANCEL refuses CANCEL outside an INQUIRE; inside one, a CANCEL line is the answer\'s cancel, not a command', async () => {
    await withPolicyProxy({ deny: ['CANCEL'] }, async (proxy) => {
      const got = await transcript(proxy.socket, [{ send: 'CANCEL\nPKDECRYPT\n' }, { until: /^INQUIRE CIPHERTEXT\n/m }, { send: 'CANCEL\n' }]);
      expect(got.replace(/^OK Pleased.*\n/, '')).toBe(
        'ERR 67109115 Forbidden <assuan-proxy> - CANCEL is not allowed through this socket\nINQUIRE CIPHERTEXT\nERR 67109141 IPC call has been cancelled <GPG Agent>\n',
      );
      expect(model.executed).toEqual(['PKDECRYPT']);
    });
  });

  it('--keys: a SIGKEY of another key, as a command or inside an INQUIRE, never reaches the agent; the allowed one does', async () => {
    const allowed = 'A'.repeat(40);
    const other = 'B'.repeat(40);
    await withPolicyProxy({ keys: [`&${allowed}`] }, async (proxy) => {
      const got = await transcript(proxy.socket, [
        { send: `SIGKEY ${other}\nSIGKEY ${allowed}\nPKSIGN\n` },
        { until: /^INQUIRE PASSPHRASE\n/m },
        { send: `D 01\nSIGKEY ${other}\nNOP\n` },
      ]);
      const forbidden = 'ERR 67109115 Forbidden <assuan-proxy> - SIGKEY is not allowed through this socket\n';
      expect(got.replace(/^OK Pleased.*\n/, '')).toMatch(new RegExp(`^${forbidden}[^\n]*\nINQUIRE PASSPHRASE\n${forbidden}OK\n$`));
      expect(model.executed.some((line) => line.includes(other))).toBe(false);
      expect(model.executed.filter((line) => line.startsWith('SIGKEY'))).toEqual([`SIGKEY ${allowed}`]);
      expect(proxy.logs.filter((l) => l.msg === 'refused by policy' && l.rule === 'keys').map((l) => l.during)).toEqual(['command', 'inquire']);
    });
  });

  it('a forbidden command inside an INQUIRE never reaches the agent: the agent gets CAN in its place, the client ERR Forbidden', async () => {
    await withPolicyProxy({ deny: ['KEYINFO'] }, async (proxy) => {
      const got = await transcript(proxy.socket, [{ send: 'PKSIGN\n' }, { until: /^INQUIRE PASSPHRASE\n/m }, { send: 'D 01\nKEYINFO --list\nNOP\n' }]);
      expect(got.replace(/^OK Pleased.*\n/, '')).toBe(
        'INQUIRE PASSPHRASE\nERR 67109115 Forbidden <assuan-proxy> - KEYINFO is not allowed through this socket\nOK\n',
      );
      expect(model.executed).toEqual(['PKSIGN', 'NOP']);
      expect(proxy.logs).toContainEqual(expect.objectContaining({ msg: 'refused by policy', verb: 'KEYINFO', rule: 'deny', during: 'inquire' }));
    });
  });
});
