/**
 * consentRequest.ts: which command lines are held for the person's approval, and the GET_CONFIRMATION line that
 * shows a request. The line forms are checked against how gpg-agent 2.2.40 and scdaemon read a command:
 *
 * - libassuan (src/assuan-buffer.c _assuan_read_line) strips the LF and one CR before it; the line is then a C
 *   string, so a NUL ends it.
 * - libassuan (src/assuan-handler.c dispatch_command) diverts only `D ` (upper-case D, then a blank) as data; the
 *   verb is every byte up to the first blank or tab (a line starting with a blank or tab is refused: "leading
 *   white-space"); it is compared exactly, then ASCII-case-insensitively, against the whole command name (so
 *   `PKSIGNX` is an unknown command); the blanks and tabs after the verb are skipped, however many there are.
 * - gpg-agent (agent/command.c cmd_scd → divert_generic_cmd → agent_card_scd) sends the rest of an `SCD` line to
 *   scdaemon as it is (assuan_transact), which dispatches it the same way: `SCD pkauth` runs scdaemon's PKAUTH.
 * - `#` lines are comments (process_next), never dispatched.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CONSENT_OPERATIONS,
  confirmationArgument,
  confirmationCommand,
  consentOperation,
  promptText,
  type ConsentOperation,
  type ConsentRequest,
} from '../../src/consent/consentRequest.js';

const ALL: ReadonlySet<ConsentOperation> = new Set(CONSENT_OPERATIONS);
/** A line as a test title shows it: escapes for control characters, runs of blanks counted. */
const title = (text: string) => JSON.stringify(text).replace(/( |\\t){8,}/g, (run, unit: string) => `<${run.length / unit.length}×${unit === ' ' ? 'blank' : 'tab'}>`);
const rows = <T extends unknown[]>(table: [string, ...T][]) => table.map(([text, ...rest]) => ({ shown: title(text), text, rest }));
const line = (text: string) => Buffer.from(text.endsWith('\n') ? text : `${text}\n`, 'latin1');
const GRIP = 'A1B2C3D4E5F60718293A4B5C6D7E8F9012345678';

describe('consentOperation: forms the agent or scdaemon would run as a key use are held', () => {
  // [line as sent (an LF is added unless there), operation it must be held as, why]
  const held: [string, ConsentOperation, string][] = [
    ['PKSIGN', 'sign', 'the plain form'],
    ['PKDECRYPT', 'decrypt', 'the plain form'],
    ['PKSIGN --hash=sha256', 'sign', 'with an option'],
    ['PKDECRYPT -- 1234', 'decrypt', 'with operands'],
    ['pksign', 'sign', 'libassuan matches verbs case-insensitively'],
    ['PkSign', 'sign', 'mixed case'],
    ['pKdEcRyPt', 'decrypt', 'mixed case'],
    ['PKSIGN\r\n', 'sign', 'libassuan strips one CR before the LF'],
    ['PKSIGN\0x', 'sign', 'a NUL ends the C string: the agent runs PKSIGN with no argument'],
    ['PKSIGN\0', 'sign', 'a NUL right after the verb'],
    ['PKDECRYPT\0garbage PKSIGN', 'decrypt', 'what follows a NUL is never read'],
    ['PKSIGN\t--hash=sha1', 'sign', 'a tab ends the verb as a blank does'],
    ['SCD PKSIGN OPENPGP.1', 'sign', "the card's sign through the agent"],
    ['SCD PKDECRYPT OPENPGP.2', 'decrypt', "the card's decrypt"],
    ['SCD PKAUTH OPENPGP.3', 'auth', "the card's authentication"],
    ['scd  pkauth OPENPGP.3', 'auth', 'agent and scdaemon both match case-insensitively; any blanks between'],
    ['SCD\tPKDECRYPT', 'decrypt', 'a tab separates SCD from its command'],
    ['SCD \t \tPKSIGN', 'sign', 'blanks and tabs mixed, all skipped by dispatch_command'],
    ['SCD PKSIGN\r', 'sign', 'CR at the end'],
    ['SCD PKSIGN\r\n', 'sign', 'CR LF at the end'],
    ['SCD PKSIGN\0rest', 'sign', 'NUL after the card command'],
    ['Scd PkAuth', 'auth', 'mixed case on both words'],
    // dispatch_command skips every blank after the verb, however many: the agent sends `PKSIGN` to scdaemon.
    [`SCD${' '.repeat(61)}PKSIGN`, 'sign', 'the card command starts past byte 64'],
    [`SCD${'\t'.repeat(200)}PKAUTH OPENPGP.3`, 'auth', 'a long run of tabs'],
    [`SCD${' '.repeat(980)}PKDECRYPT`, 'decrypt', 'blanks up to the line limit'],
  ];
  it.each(rows(held))('$shown is held', ({ text, rest: [operation] }) => {
    expect(consentOperation(line(text), ALL)).toBe(operation);
    // Only the operation asked for is held: the same line under a --confirm without it passes.
    const others = new Set(CONSENT_OPERATIONS.filter((o) => o !== operation));
    expect(consentOperation(line(text), others)).toBeUndefined();
    expect(consentOperation(line(text), new Set([operation]))).toBe(operation);
  });

  // Lines the agent would refuse or not run as a key use, but that are held all the same: consentOperation reads
  // wider than the agent, so that no variant slips through; a prompt for a command the agent refuses costs a
  // question, never a key use.
  const overHeld: [string, ConsentOperation, string][] = [
    ['PKSIGNATURE', 'sign', 'a verb beginning with a key use: the agent answers Unknown command'],
    ['PKSIGNX', 'sign', 'run-on verb'],
    ['PKDECRYPT2', 'decrypt', 'run-on verb'],
    [' PKSIGN', 'sign', 'leading blank: libassuan refuses it (leading white-space)'],
    ['\t\tPKDECRYPT', 'decrypt', 'leading tabs: refused by libassuan too'],
    ['\0PKSIGN', 'sign', 'a NUL first: an empty command to the agent'],
    ['PKSIGN\r\r\n', 'sign', 'two CRs: the agent reads the verb PKSIGN\\r, unknown'],
    ['SCD PKSIGNX', 'sign', 'run-on verb through SCD: scdaemon answers Unknown command'],
    ['SCD\0PKSIGN', 'sign', 'the agent sends scdaemon an empty line'],
    ['SCD \rPKSIGN', 'sign', 'scdaemon reads the verb \\rPKSIGN, unknown'],
  ];
  it.each(rows(overHeld))('$shown is held though the agent would not run it', ({ text, rest: [operation] }) => {
    expect(consentOperation(line(text), ALL)).toBe(operation);
  });

  const passed: [string, string][] = [
    ['SIGKEY ' + GRIP, 'selects a key, uses none'],
    ['SETKEY ' + GRIP, 'selects a key'],
    ['SETHASH --hash=sha256 ' + 'AB'.repeat(32), 'sets the hash'],
    ['SETHASH 8 ' + 'AB'.repeat(32), 'sets the hash by number'],
    ['D PKSIGN', 'a data line (only upper-case `D ` is data to libassuan)'],
    ['D PKDECRYPT', 'a data line'],
    ['d PKSIGN', 'the agent reads the verb `d`, unknown; not a key use'],
    ['# PKSIGN', 'a comment: never dispatched'],
    ['#PKSIGN', 'a comment'],
    ['SCD SERIALNO', 'reads the card, uses no key'],
    ['SCD LEARN --force', 'reads the card'],
    ['SCD', 'SCD alone'],
    ['SCD   ', 'SCD and blanks'],
    ['SCDPKSIGN', 'the verb SCDPKSIGN: unknown command'],
    ['SCDX PKSIGN', 'the verb SCDX: unknown command'],
    ['GETINFO version', 'an ordinary command'],
    ['KEYINFO ' + GRIP, 'an ordinary command'],
    ['HAVEKEY ' + GRIP, 'an ordinary command'],
    ['OPTION PKSIGN', 'a key use word as an argument'],
    ['GET_CONFIRMATION PKSIGN', 'a key use word as an argument'],
    ['PK', 'a prefix of a key use name is not one'],
    ['PKSIG', 'a prefix of a key use name is not one'],
    ['PK SIGN', 'split by a blank: the verb is PK'],
    ['PK\0SIGN', 'split by a NUL: the verb is PK'],
    ['SCD PK\0SIGN', 'scdaemon reads PK'],
    ['SCD %50KSIGN', 'command lines are not percent-decoded: scdaemon reads %50KSIGN'],
    ['SCD \vPKSIGN', 'a vertical tab is no blank to dispatch_command: scdaemon reads \\vPKSIGN'],
    ['', 'an empty line'],
    ['\r\n', 'an empty line with CR'],
  ];
  it.each(rows(passed))('$shown is not held', ({ text }) => {
    expect(consentOperation(line(text), ALL)).toBeUndefined();
  });

  it('holds only the operations --confirm names', () => {
    const signOnly = new Set<ConsentOperation>(['sign']);
    expect(consentOperation(line('PKSIGN'), signOnly)).toBe('sign');
    expect(consentOperation(line('SCD PKSIGN'), signOnly)).toBe('sign');
    expect(consentOperation(line('PKDECRYPT'), signOnly)).toBeUndefined();
    expect(consentOperation(line('SCD PKDECRYPT'), signOnly)).toBeUndefined();
    expect(consentOperation(line('SCD PKAUTH OPENPGP.3'), signOnly)).toBeUndefined();
    const decryptAuth = new Set<ConsentOperation>(['decrypt', 'auth']);
    expect(consentOperation(line('PKSIGN'), decryptAuth)).toBeUndefined();
    expect(consentOperation(line('SCD PKAUTH'), decryptAuth)).toBe('auth');
    expect(consentOperation(line('pkdecrypt'), decryptAuth)).toBe('decrypt');
    for (const text of ['PKSIGN', 'PKDECRYPT', 'SCD PKAUTH', 'SCD PKSIGN']) expect(consentOperation(line(text), new Set())).toBeUndefined();
  });

  it('PKAUTH is a card command only: the agent has none', () => {
    // gpg-agent 2.2's command table has no PKAUTH (ssh authentication through the agent is a PKSIGN).
    expect(consentOperation(line('PKAUTH'), ALL)).toBeUndefined();
  });

  it('a line without its LF is read the same', () => {
    expect(consentOperation(Buffer.from('PKSIGN'), ALL)).toBe('sign');
    expect(consentOperation(Buffer.from('scd pkauth'), ALL)).toBe('auth');
  });

  it('property: any case, any blanks and tabs between SCD and the card command, any argument: held', () => {
    const randomCase = (word: string) =>
      fc.array(fc.boolean(), { minLength: word.length, maxLength: word.length }).map((upper) => [...word].map((c, i) => (upper[i] ? c.toUpperCase() : c.toLowerCase())).join(''));
    const cardUse = fc.constantFrom<[string, ConsentOperation]>(['PKSIGN', 'sign'], ['PKDECRYPT', 'decrypt'], ['PKAUTH', 'auth']);
    // Lengths drawn uniformly, so that long runs are as likely as short ones.
    const blanks = fc.integer({ min: 1, max: 900 }).chain((n) => fc.array(fc.constantFrom(' ', '\t'), { minLength: n, maxLength: n }).map((b) => b.join('')));
    const argument = fc.option(fc.stringMatching(/^[ \t][ -~]{0,40}$/), { nil: '' });
    fc.assert(
      fc.property(randomCase('SCD'), blanks, cardUse.chain(([verb, op]) => randomCase(verb).map((v) => [v, op] as const)), argument, fc.constantFrom('\n', '\r\n', ''), (scd, gap, [verb, op], arg, end) => {
        expect(consentOperation(Buffer.from(`${scd}${gap}${verb}${arg}${end}`, 'latin1'), ALL)).toBe(op);
      }),
    );
  });
});

/** What the pinentry shows for a GET_CONFIRMATION argument: gpg-agent's plus_to_blank, then the pinentry's %XX decoding. */
function decodeAsAgentAndPinentry(argument: string): string {
  const blanked = argument.replace(/\+/g, ' ');
  const bytes: number[] = [];
  for (let i = 0; i < blanked.length; i++) {
    if (blanked[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(blanked.slice(i + 1, i + 3))) {
      bytes.push(parseInt(blanked.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(blanked.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** No byte the Assuan line may not hold raw, and every `%` starting an escape. */
function expectLineSafe(argument: string): void {
  expect(argument).not.toMatch(/[ \r\n\0]/);
  expect(argument).not.toMatch(/[\x00-\x1f\x7f-\uffff]/);
  expect(argument).not.toMatch(/%(?![0-9A-F]{2})/);
}

describe('confirmationArgument: what the pinentry shows is the text given', () => {
  const texts: [string, string][] = [
    ['ASCII', 'Allow it? (yes/no) <a@b.example> = 100%; a_b-c/d "q" \'s\' !'],
    ['blanks', '  two  blanks  '],
    ['percent', '100% %41 %%  %'],
    ['plus', 'a+b ++ +%2B+'],
    ['newlines', 'line one\nline two\n\nend\n'],
    ['CR', 'a\rb\r\n'],
    ['NUL', 'before\0after\0'],
    ['Latin-1 range', 'Zoë Müller café ñ ß ÿ'],
    ['é', 'é'],
    ['CJK', '日本語のキー 日本'],
    ['emoji', '🔑 sign 👍🏽 🇯🇵'],
    ['controls', '\x01\x1b[31m\x7f\u0085\u2028'],
    ['backslash and hash', '\\x3a # \\n'],
    ['empty', ''],
  ];
  it.each(texts)('%s round-trips', (_, text) => {
    const argument = confirmationArgument(text);
    expectLineSafe(argument);
    expect(decodeAsAgentAndPinentry(argument)).toBe(text);
  });

  it('a blank is sent as +, a + as %2B, a % as %25', () => {
    expect(confirmationArgument('a b')).toBe('a+b');
    expect(confirmationArgument('+')).toBe('%2B');
    expect(confirmationArgument('%')).toBe('%25');
    expect(confirmationArgument('\n')).toBe('%0A');
    expect(confirmationArgument('é')).toBe('%C3%A9');
  });

  it('property: any text round-trips, and the argument never holds a blank, CR, LF, NUL or a bare %', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        const argument = confirmationArgument(text);
        expectLineSafe(argument);
        expect(decodeAsAgentAndPinentry(argument)).toBe(text);
      }),
    );
  });
});

function request(over: Partial<ConsentRequest> = {}): ConsentRequest {
  return {
    operation: 'sign',
    sessionId: '17',
    keygrip: GRIP,
    userId: 'Signer Person <signer@example.org>',
    hash: 'sha256',
    caller: { key: 'uid 1000 /usr/bin/gpg', text: 'gpg (pid 4242, uid 1000)' },
    at: new Date('2024-05-06T07:08:09.123Z'),
    ...over,
  };
}

/** The prompt the person reads for a GET_CONFIRMATION line. */
function shownBy(command: string): string {
  expect(command.startsWith('GET_CONFIRMATION ')).toBe(true);
  return decodeAsAgentAndPinentry(command.slice('GET_CONFIRMATION '.length));
}

describe('confirmationCommand', () => {
  it('names who asks, what, the key, its keygrip, the hash and when', () => {
    const prompt = shownBy(confirmationCommand(request()));
    const lines = prompt.split('\n');
    expect(lines[0]).toBe('A session through assuan-proxy asks to sign with your key.');
    expect(lines).toContain('Who: gpg (pid 4242, uid 1000)');
    expect(lines).toContain('What: sign (hash sha256)');
    expect(lines).toContain('Key: Signer Person <signer@example.org>');
    expect(lines).toContain(`Keygrip: ${GRIP}`);
    expect(lines).toContain('When: 2024-05-06 07:08:09 UTC, session 17');
    expect(lines.at(-1)).toBe('Allow it?');
  });

  it('says so when no key, user ID or hash is known', () => {
    const prompt = shownBy(confirmationCommand(request({ operation: 'decrypt', keygrip: undefined, userId: undefined, hash: undefined })));
    expect(prompt).toContain('asks to decrypt with your key');
    expect(prompt.split('\n')).toEqual(expect.arrayContaining(['What: decrypt', 'Key: not in the keyring here', 'Keygrip: none selected']));
    expect(shownBy(confirmationCommand(request({ operation: 'auth' })))).toContain('asks to authenticate with your key');
  });

  it('is a single Assuan line of at most 990 bytes with huge, hostile caller and user ID', () => {
    const controls = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('') + '\x7f\u0085\u2028\u2029';
    const caller = (controls + 'caller%+ ').repeat(40).slice(0, 1000);
    const cases: Partial<ConsentRequest>[] = [
      { userId: '日'.repeat(1000), caller: { key: 'k', text: caller } },
      { userId: '日'.repeat(1000), caller: { key: 'k', text: '日'.repeat(1000) } },
      { userId: '🔑'.repeat(1000), caller: { key: 'k', text: '🔑'.repeat(1000) } },
      { userId: '%'.repeat(1000), caller: { key: 'k', text: '\n'.repeat(1000) } },
      // Even the session id (internal, but bounded too) cannot push it past the line.
      { userId: '日'.repeat(1000), caller: { key: 'k', text: '日'.repeat(1000) }, sessionId: '日'.repeat(1000) },
    ];
    for (const over of cases) {
      const command = confirmationCommand(request(over));
      expect(Buffer.byteLength(command, 'utf8')).toBeLessThanOrEqual(990);
      expect(command).not.toMatch(/[\x00-\x1f\x7f-\uffff]/);
      expectLineSafe(command.slice('GET_CONFIRMATION '.length));
      const prompt = shownBy(command);
      expect(prompt).toContain('Who: ');
      if (over.sessionId === undefined) {
        // The facts that are not quoted text stay whole.
        expect(prompt).toContain('What: sign (hash sha256)');
        expect(prompt).toContain(`Keygrip: ${GRIP}`);
        expect(prompt).toContain('When: 2024-05-06 07:08:09 UTC');
        expect(prompt).toContain('Allow it?');
      }
      // No control character from the caller reaches the prompt; its lines are only the prompt's own.
      expect(prompt.replace(/\n/g, '')).not.toMatch(/[\x00-\x1f\x7f\u0085\u2028\u2029]/);
      expect(prompt.split('\n').filter((l) => l.startsWith('Who:'))).toHaveLength(1);
    }
  });

  it('a 1000-character user ID of 3-byte characters is shortened, not dropped', () => {
    const prompt = shownBy(confirmationCommand(request({ userId: '日'.repeat(1000), caller: { key: 'k', text: 'x'.repeat(1000) } })));
    expect(prompt).toMatch(/^Key: 日{10,}…$/m);
    expect(prompt).toMatch(/^Who: x{10,}…$/m);
  });

  it('a caller or user ID with a line break cannot add a line of its own', () => {
    const forged = 'x\nKey: Trusted <trusted@example.org>\rKeygrip: 0000\u2028What: nothing\u0085When: never';
    for (const over of [{ caller: { key: 'k', text: forged } }, { userId: forged }] as Partial<ConsentRequest>[]) {
      const prompt = shownBy(confirmationCommand(request(over)));
      const lines = prompt.split(/\r\n|[\n\r\u2028\u2029\u0085\v\f]/);
      expect(lines.filter((l) => l.startsWith('Key:'))).toHaveLength(1);
      expect(lines.filter((l) => l.startsWith('Keygrip:'))).toEqual([`Keygrip: ${GRIP}`]);
      expect(lines.filter((l) => l.startsWith('What:'))).toEqual(['What: sign (hash sha256)']);
      expect(lines.filter((l) => l.startsWith('When:'))).toHaveLength(1);
      expect(prompt).toContain('x?Key: Trusted <trusted@example.org>?Keygrip: 0000?What: nothing?When: never');
    }
  });

  it('bidi overrides, isolates and zero-width marks in text others chose are shown as ?', () => {
    // U+202E would show "Alice <alice@example.org>" spelled backwards over what follows; U+2066..2069 isolate.
    const tricky = 'Mallory \u202Egro.elpmaxe@ecila< ecilA\u202C\u2066x\u2069\u200B\u200F\u061C';
    const text = promptText(request({ userId: tricky, caller: { key: 'k', text: tricky } }));
    expect(text).not.toMatch(/[\u202A-\u202E\u2066-\u2069\u200B-\u200F\u061C]/);
    expect(text).toContain('Key: Mallory ?gro.elpmaxe@ecila< ecilA??x????');
  });

  it('promptText holds no control character but its own line breaks', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), (caller, userId) => {
        const text = promptText(request({ caller: { key: 'k', text: caller }, userId }));
        expect(text.split('\n')).toHaveLength(9);
        expect(text.replace(/\n/g, '')).not.toMatch(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/);
        const command = confirmationCommand(request({ caller: { key: 'k', text: caller }, userId }));
        expect(command.length).toBeLessThanOrEqual(990);
        expectLineSafe(command.slice('GET_CONFIRMATION '.length));
      }),
      { numRuns: 200 },
    );
  });
});
