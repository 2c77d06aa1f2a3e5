import { describe, expect, it } from 'vitest';
import { createCommandPolicy, parseVerbs, PolicyError, type PolicyOptions } from '../src/policy.js';
import { classifyClientLine } from '../src/protocol/classify.js';

/** 'forward', or the rule that forbids the line as a command. */
function verdict(options: PolicyOptions, line: string): string {
  const policy = createCommandPolicy(options);
  const bytes = Buffer.from(`${line}\n`, 'latin1');
  return policy?.(bytes, classifyClientLine(bytes).verb) ?? 'forward';
}

describe('command policy', () => {
  it('is absent (costs nothing) without --restricted, --allow or --deny', () => {
    expect(createCommandPolicy({})).toBeUndefined();
    expect(createCommandPolicy({ restricted: false, deny: [] })).toBeUndefined();
  });

  it.each([
    ['PKSIGN', 'forward'],
    ['pkdecrypt', 'forward'],
    ['HAVEKEY 0123', 'forward'],
    ['GETINFO version', 'forward'],
    ['GETINFO cmd_has_option PKSIGN x', 'forward'],
    ['GETINFO s2k_count', 'forward'],
    ['GETINFO restricted', 'forward'], // the restricted agent answers OK itself
    ['GETINFO pid', 'restricted'],
    ['GETINFO socket_name', 'restricted'],
    ['GETINFO VERSION', 'restricted'], // the agent's subcommands are case-sensitive
    ['GETINFO', 'restricted'],
    ['OPTION agent-awareness=2.1.0', 'forward'],
    ['OPTION --agent-awareness=2.1.0', 'forward'],
    ['OPTION agent-awareness 2.1.0', 'forward'],
    ['OPTION pinentry-mode=loopback', 'restricted'],
    ['OPTION putenv=DISPLAY=:0', 'restricted'],
    ['OPTION agent-awareness-x=1', 'restricted'],
    ['PRESET_PASSPHRASE 0123 -1 41', 'restricted'],
    ['KILLAGENT', 'restricted'],
    ['EXPORT_KEY 0123', 'restricted'],
    ['SCD GETINFO version', 'restricted'],
    ['PKSIGN\0trailing', 'forward'], // libassuan's dispatcher stops at the NUL: this is PKSIGN
    ['KILLAGENT\0x', 'restricted'], // and this is KILLAGENT
    ['FROBNICATE', 'restricted'], // unknown to us: not allowed on a restricted socket
  ] as const)('--restricted: %j → %s', (line, expected) => {
    expect(verdict({ restricted: true }, line)).toBe(expected);
  });

  it('--deny forbids the named verbs whatever their case or arguments, and nothing else', () => {
    const options = { deny: ['pksign', 'PKDECRYPT'] };
    expect(verdict(options, 'PKSIGN')).toBe('deny');
    expect(verdict(options, 'pksign -- x')).toBe('deny');
    expect(verdict(options, 'PKSIGN\0x')).toBe('deny');
    expect(verdict(options, 'PKDECRYPT')).toBe('deny');
    expect(verdict(options, 'HAVEKEY x')).toBe('forward');
    expect(verdict(options, 'GETINFO restricted')).toBe('forward'); // not restricted: the agent answers
  });

  it('--allow lets only the named verbs through, plus BYE, NOP and RESET', () => {
    const options = { allow: ['HAVEKEY,GETINFO'] };
    for (const line of ['HAVEKEY x', 'GETINFO version', 'BYE', 'NOP', 'RESET']) expect(verdict(options, line)).toBe('forward');
    for (const line of ['PKSIGN', 'KEYINFO --list', 'FROBNICATE']) expect(verdict(options, line)).toBe('allow');
  });

  it('judges stray D, END and CAN lines by their verb too: outside an INQUIRE the agent reads them as commands', () => {
    for (const line of ['D 0102', 'd x', 'END', 'CAN', 'CANCEL', 'D 50%']) expect(verdict({ allow: ['HAVEKEY'] }, line), line).toBe('allow');
    expect(verdict({ deny: ['CANCEL'] }, 'CANCEL')).toBe('deny');
    expect(verdict({ deny: ['CANCEL'] }, 'CAN')).toBe('forward');
    expect(verdict({ deny: ['END'] }, 'end')).toBe('deny');
  });

  it('--allow and --deny narrow --restricted, never widen it', () => {
    expect(verdict({ restricted: true, allow: ['KILLAGENT', 'PKSIGN'] }, 'KILLAGENT')).toBe('restricted');
    expect(verdict({ restricted: true, allow: ['PKSIGN'] }, 'PKSIGN')).toBe('forward');
    expect(verdict({ restricted: true, allow: ['PKSIGN'] }, 'PKDECRYPT')).toBe('allow');
    expect(verdict({ restricted: true, deny: ['PKSIGN'] }, 'PKSIGN')).toBe('deny');
  });

  it('refuses unknown verb names with the list of known ones', () => {
    expect(() => parseVerbs(['PKSIGN,FROB'], 'allow')).toThrow(PolicyError);
    expect(() => parseVerbs(['PKSIGN,FROB'], 'allow')).toThrow(/--allow: unknown command FROB \(known: AUTH BYE/);
    expect(parseVerbs([' pksign , havekey', 'NOP'], 'deny')).toEqual(['PKSIGN', 'HAVEKEY', 'NOP']);
  });
});
