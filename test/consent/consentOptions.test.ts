/** `--confirm OPS` and `--confirm-window OP=SECONDS`: what is accepted, and what stops the start. */
import { describe, expect, it } from 'vitest';
import { ConsentOptionError, parseConsentOperations, parseConsentWindows } from '../../src/consent/consentOptions.js';
import type { ConsentOperation } from '../../src/consent/consentRequest.js';

const sorted = (set: ReadonlySet<string>) => [...set].sort();
const ops = (...names: ConsentOperation[]) => new Set<ConsentOperation>(names);

describe('parseConsentOperations', () => {
  it.each<[string[], string[]]>([
    [['sign,decrypt'], ['decrypt', 'sign']],
    [['sign'], ['sign']],
    [['auth'], ['auth']],
    [['all'], ['auth', 'decrypt', 'sign']],
    [['ALL'], ['auth', 'decrypt', 'sign']],
    [[' SIGN '], ['sign']],
    [['Sign, Decrypt ,AUTH'], ['auth', 'decrypt', 'sign']],
    [['sign,,sign,'], ['sign']],
    [['sign', 'decrypt'], ['decrypt', 'sign']],
    [['all,sign'], ['auth', 'decrypt', 'sign']],
  ])('%j → %j', (entries, expected) => {
    expect(sorted(parseConsentOperations(entries))).toEqual(expected);
  });

  it.each<[string[], RegExp]>([
    [['bogus'], /'bogus' is not an operation/],
    [['sign,bogus'], /'bogus' is not an operation/],
    [['signs'], /'signs' is not an operation/],
    [['sign decrypt'], /is not an operation/],
    [['pksign'], /is not an operation/],
    [[''], /takes operations/],
    [[' , ,'], /takes operations/],
    [[], /takes operations/],
  ])('%j is refused', (entries, message) => {
    expect(() => parseConsentOperations(entries)).toThrow(ConsentOptionError);
    expect(() => parseConsentOperations(entries)).toThrow(message);
  });
});

describe('parseConsentWindows', () => {
  const all = ops('sign', 'decrypt', 'auth');

  it.each<[string[], ReadonlySet<ConsentOperation>, Partial<Record<ConsentOperation, number>>]>([
    [['sign=0,decrypt=300'], all, { sign: 0, decrypt: 300 }],
    [['decrypt=300'], ops('decrypt'), { decrypt: 300 }],
    [['auth=86400'], all, { auth: 86400 }],
    [[' DECRYPT=5 , Sign=7 '], all, { decrypt: 5, sign: 7 }],
    [['sign=000300'], all, { sign: 300 }],
    [['sign=1', 'sign=2'], all, { sign: 2 }],
    [[], all, {}],
    [[''], all, {}],
    [[',,'], all, {}],
  ])('%j (confirm %j) → %j', (entries, operations, expected) => {
    expect(parseConsentWindows(entries, operations)).toEqual(expected);
  });

  it.each<[string[], ReadonlySet<ConsentOperation>, RegExp]>([
    [['bogus=5'], all, /'bogus=5' is not OPERATION=SECONDS/],
    [['all=300'], all, /is not OPERATION=SECONDS/],
    [['decrypt=300'], ops('sign'), /decrypt is not asked for \(add it to --confirm\)/],
    [['sign=5,auth=5'], ops('sign', 'decrypt'), /auth is not asked for/],
    [['sign=86401'], all, /at most 86400 seconds/],
    [['sign=999999'], all, /at most 86400 seconds/],
    [['sign=1000000'], all, /is not OPERATION=SECONDS/],
    [['sign=abc'], all, /is not OPERATION=SECONDS/],
    [['sign=5m'], all, /is not OPERATION=SECONDS/],
    [['sign=1.5'], all, /is not OPERATION=SECONDS/],
    [['sign=1e3'], all, /is not OPERATION=SECONDS/],
    [['sign=0x10'], all, /is not OPERATION=SECONDS/],
    [['sign=-1'], all, /is not OPERATION=SECONDS/],
    [['sign=-0'], all, /is not OPERATION=SECONDS/],
    [['sign=+5'], all, /is not OPERATION=SECONDS/],
    [['sign='], all, /is not OPERATION=SECONDS/],
    [['sign'], all, /is not OPERATION=SECONDS/],
    [['=300'], all, /is not OPERATION=SECONDS/],
    [['sign = 300'], all, /is not OPERATION=SECONDS/],
    [['sign=300=1'], all, /is not OPERATION=SECONDS/],
    [['sign=\u0663'], all, /is not OPERATION=SECONDS/], // an Arabic-Indic digit is no \d
  ])('%j (confirm %j) is refused', (entries, operations, message) => {
    expect(() => parseConsentWindows(entries, operations)).toThrow(ConsentOptionError);
    expect(() => parseConsentWindows(entries, operations)).toThrow(message);
  });

  it('a window for an operation --confirm does not name is refused even with 0 seconds', () => {
    expect(() => parseConsentWindows(['auth=0'], ops('sign'))).toThrow(/auth is not asked for/);
  });

  it('the error names the entry as given', () => {
    expect(() => parseConsentWindows(['Sign=86401'], all)).toThrow(/'Sign=86401'/);
  });
});
