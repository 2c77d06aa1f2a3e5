import { describe, expect, it } from 'vitest';
import { createCommandPolicy, parseVerbs, PolicyError, type PolicyOptions, type Verdict } from '../src/policy.js';
import { classifyClientLine } from '../src/protocol/classify.js';

function verdict(options: PolicyOptions, line: string): Verdict {
  const policy = createCommandPolicy(options);
  if (!policy) return 'forward';
  const bytes = Buffer.from(`${line}\n`, 'latin1');
  return policy(bytes, classifyClientLine(bytes).verb);
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
    ['GETINFO restricted', 'restrictedQuery'],
    ['GETINFO pid', 'forbid'],
    ['GETINFO socket_name', 'forbid'],
    ['GETINFO VERSION', 'forbid'], // the agent's subcommands are case-sensitive
    ['GETINFO', 'forbid'],
    ['OPTION agent-awareness=2.1.0', 'forward'],
    ['OPTION --agent-awareness=2.1.0', 'forward'],
    ['OPTION agent-awareness 2.1.0', 'forward'],
    ['OPTION pinentry-mode=loopback', 'forbid'],
    ['OPTION putenv=DISPLAY=:0', 'forbid'],
    ['OPTION agent-awareness-x=1', 'forbid'],
    ['PRESET_PASSPHRASE 0123 -1 41', 'forbid'],
    ['KILLAGENT', 'forbid'],
    ['EXPORT_KEY 0123', 'forbid'],
    ['SCD GETINFO version', 'forbid'],
    ['PKSIGN\0trailing', 'forward'], // libassuan's dispatcher stops at the NUL: this is PKSIGN
    ['KILLAGENT\0x', 'forbid'], // and this is KILLAGENT
    ['FROBNICATE', 'forbid'], // unknown to us: not allowed on a restricted socket
  ] as const)('--restricted: %j → %s', (line, expected) => {
    expect(verdict({ restricted: true }, line)).toBe(expected);
  });

  it('--deny forbids the named verbs whatever their case or arguments, and nothing else', () => {
    const options = { deny: ['pksign', 'PKDECRYPT'] };
    expect(verdict(options, 'PKSIGN')).toBe('forbid');
    expect(verdict(options, 'pksign -- x')).toBe('forbid');
    expect(verdict(options, 'PKSIGN\0x')).toBe('forbid');
    expect(verdict(options, 'PKDECRYPT')).toBe('forbid');
    expect(verdict(options, 'HAVEKEY x')).toBe('forward');
    expect(verdict(options, 'GETINFO restricted')).toBe('forward'); // not restricted: the agent answers
  });

  it('--allow lets only the named verbs through, plus BYE, NOP and RESET', () => {
    const options = { allow: ['HAVEKEY,GETINFO'] };
    for (const line of ['HAVEKEY x', 'GETINFO version', 'BYE', 'NOP', 'RESET']) expect(verdict(options, line)).toBe('forward');
    for (const line of ['PKSIGN', 'KEYINFO --list', 'FROBNICATE']) expect(verdict(options, line)).toBe('forbid');
  });

  it('--allow and --deny narrow --restricted, never widen it', () => {
    expect(verdict({ restricted: true, allow: ['KILLAGENT', 'PKSIGN'] }, 'KILLAGENT')).toBe('forbid');
    expect(verdict({ restricted: true, allow: ['PKSIGN'] }, 'PKSIGN')).toBe('forward');
    expect(verdict({ restricted: true, allow: ['PKSIGN'] }, 'PKDECRYPT')).toBe('forbid');
    expect(verdict({ restricted: true, deny: ['PKSIGN'] }, 'PKSIGN')).toBe('forbid');
  });

  it('refuses unknown verb names with the list of known ones', () => {
    expect(() => parseVerbs(['PKSIGN,FROB'], '--allow')).toThrow(PolicyError);
    expect(() => parseVerbs(['PKSIGN,FROB'], '--allow')).toThrow(/--allow: unknown command FROB \(known: AUTH BYE/);
    expect(parseVerbs([' pksign , havekey', 'NOP'], '--deny')).toEqual(['PKSIGN', 'HAVEKEY', 'NOP']);
  });
});
