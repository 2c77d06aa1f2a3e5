/** `--check`: the policy over a transcript, with the agent's reader followed through INQUIREs. */
import { describe, expect, it } from 'vitest';
import { createCommandPolicy } from '../src/policy.js';
import { checkTranscript, formatVerdicts } from '../src/policyCheck.js';

const GRIP = 'C'.repeat(40);

describe('--check', () => {
  it('judges each client line as the command the agent would read, naming the rule', () => {
    const policy = createCommandPolicy({ restricted: true, deny: ['PKDECRYPT'] });
    const verdicts = checkTranscript(Buffer.from(`GETINFO version\nPKDECRYPT\nEXPORT_KEY ${GRIP}\n# note\n\nD stray\nKILLAGENT`), policy);
    expect(verdicts).toEqual([
      { line: 1, verb: 'GETINFO', verdict: 'relayed' },
      { line: 2, verb: 'PKDECRYPT', verdict: 'refused', reason: 'deny' },
      { line: 3, verb: 'EXPORT_KEY', verdict: 'refused', reason: 'restricted', keygrips: [GRIP] },
      { line: 4, verb: '', verdict: 'skipped', reason: 'comment' },
      { line: 5, verb: '', verdict: 'skipped', reason: 'comment' },
      // Outside an INQUIRE a D line is a command to the agent, judged like any other.
      { line: 6, verb: 'D', verdict: 'refused', reason: 'restricted' },
      { line: 7, verb: 'KILLAGENT', verdict: 'refused', reason: 'restricted' },
    ]);
    expect(formatVerdicts(verdicts)).toContain("line 3: EXPORT_KEY [" + GRIP + "]: refused, forbidden on gpg-agent's extra socket (--restricted)\n");
  });

  it('with --confirm, a key use is held for the person; an OPTION for the pinentry is answered by the proxy', () => {
    const policy = createCommandPolicy({ arguments: {}, refuseRawCardAccess: true });
    const transcript = Buffer.from('OPTION ttyname=/dev/pts/1\nPKSIGN\nscd pkauth OPENPGP.3\nSCD APDU 00\nPKDECRYPT\nS: INQUIRE PINENTRY_LAUNCHED 1 curses\nPKSIGN\n');
    const verdicts = checkTranscript(transcript, policy, new Set(['sign', 'auth']));
    expect(verdicts).toEqual([
      { line: 1, verb: 'OPTION', verdict: 'answered', reason: 'environment' },
      { line: 2, verb: 'PKSIGN', verdict: 'held', reason: 'sign' },
      { line: 3, verb: 'SCD', verdict: 'held', reason: 'auth' },
      { line: 4, verb: 'SCD', verdict: 'refused', reason: 'confirm' },
      // decrypt is not asked for here.
      { line: 5, verb: 'PKDECRYPT', verdict: 'relayed' },
      // Inside an INQUIRE that takes no data the line ends it, unexecuted: judged by the policy, nothing to ask.
      { line: 7, verb: 'PKSIGN', verdict: 'relayed' },
    ]);
    expect(formatVerdicts(verdicts)).toContain("line 2: PKSIGN: held for the person's approval (--confirm sign), relayed if approved\n");
    expect(formatVerdicts(verdicts)).toContain('line 1: OPTION: answered OK by the proxy, not sent');
  });

  it("follows the agent's reader: an INQUIRE's answer is not judged, a command inside it is, and OK ends the command", () => {
    const policy = createCommandPolicy({ deny: ['KEYINFO'] });
    const transcript = ['PKSIGN', 'S: INQUIRE PASSPHRASE', 'D secret', 'END', 'S: OK', 'PKSIGN', 'S: INQUIRE PASSPHRASE', 'KEYINFO --list', 'S: ERR 67109141 cancelled', 'KEYINFO --list'].join('\n');
    expect(checkTranscript(Buffer.from(transcript), policy).map((v) => [v.line, v.verdict, v.reason])).toEqual([
      [1, 'relayed', undefined],
      [3, 'skipped', 'inquiry answer'],
      [4, 'skipped', 'inquiry answer'],
      [6, 'relayed', undefined],
      [8, 'refused', 'deny'],
      [10, 'refused', 'deny'],
    ]);
  });

  it('never prints more of a line than its verb and the keygrips it names', () => {
    const out = formatVerdicts(checkTranscript(Buffer.from('PKSIGN\nS: INQUIRE PASSPHRASE\nD hunter2\nEND\nS: OK\nPRESET_PASSPHRASE x -1 68756e74657232\n'), createCommandPolicy({ restricted: true })));
    expect(out).not.toMatch(/hunter2|68756e74657232/);
    expect(out).toContain('PRESET_PASSPHRASE: refused');
  });

  it('a line longer than libassuan takes is refused as such', () => {
    expect(checkTranscript(Buffer.from(`NOP ${'x'.repeat(1000)}\n`), undefined)).toEqual([{ line: 1, verb: 'NOP', verdict: 'refused', reason: 'too long' }]);
  });
});
