import { describe, expect, it } from 'vitest';
import { describeDefect, parseSocketFile, SocketFileError, type SocketFileContent, type SocketFileDefect } from '../../src/upstream/socketFile.js';
import { cygwinSocketFile, windowsSocketFile } from '../support/emulatedAgent.js';

const FILE = '/run/user/1000/gnupg/S.gpg-agent';
const latin1 = (text: string) => Buffer.from(text, 'latin1');
/** A nonce with no LF and no NUL in it, and recognisable in hex. */
const NONCE = Buffer.from('a1b2c3d4e5f60718293a4b5c6d7e8f90', 'hex');
const NONCE_WITH_LF = Buffer.from('0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a', 'hex');
const CYGWIN_WORDS = '01234567-89abcdef-00000001-ffffffff';

function parse(content: Buffer, env: NodeJS.ProcessEnv = {}): SocketFileContent {
  return parseSocketFile(FILE, content, env);
}

function defectOf(content: Buffer, env: NodeJS.ProcessEnv = {}): SocketFileDefect {
  try {
    parse(content, env);
  } catch (err) {
    expect(err).toBeInstanceOf(SocketFileError);
    return (err as SocketFileError).defect;
  }
  throw new Error('parsed without a defect');
}

function errorOf(content: Buffer, env: NodeJS.ProcessEnv = {}): SocketFileError {
  try {
    parse(content, env);
  } catch (err) {
    if (err instanceof SocketFileError) return err;
    throw err;
  }
  throw new Error('parsed without a defect');
}

describe('valid socket files', () => {
  it('reads the Windows form: port, LF, 16 raw nonce bytes', () => {
    expect(parse(windowsSocketFile(51234, NONCE))).toEqual({ form: 'windows', port: 51234, nonce: NONCE });
    expect(parse(windowsSocketFile(1, NONCE))).toMatchObject({ port: 1 });
    expect(parse(windowsSocketFile(65535, NONCE))).toMatchObject({ port: 65535 });
  });

  it('takes the first LF as the end of the port, so the nonce may hold LFs of its own', () => {
    expect(parse(windowsSocketFile(4000, NONCE_WITH_LF))).toEqual({ form: 'windows', port: 4000, nonce: NONCE_WITH_LF });
  });

  it('returns a nonce of its own, not a view of the file', () => {
    const content = windowsSocketFile(4000, NONCE);
    const parsed = parse(content) as { nonce: Buffer };
    content.fill(0);
    expect(parsed.nonce).toEqual(NONCE);
  });

  it('reads the Cygwin form byte for byte: each word is a little-endian 32-bit int', () => {
    const parsed = parse(latin1(`!<socket >49152 s ${CYGWIN_WORDS}\0`));
    expect(parsed.form).toBe('cygwin');
    expect(parsed).toMatchObject({ port: 49152 });
    expect((parsed as { nonce: Buffer }).nonce.toString('hex')).toBe('67452301efcdab8901000000ffffffff');
  });

  it('reads the whole fourth word of a 5-digit port, though libassuan reads only 49 bytes', () => {
    const file = latin1(`!<socket >65535 s ${CYGWIN_WORDS}\0`);
    expect(file.length).toBe(54);
    expect((parse(file) as { nonce: Buffer }).nonce.subarray(12).toString('hex')).toBe('ffffffff');
  });

  it('round-trips what libassuan writes for the Cygwin form, upper-case hex too', () => {
    expect(parse(cygwinSocketFile(7, NONCE))).toEqual({ form: 'cygwin', port: 7, nonce: NONCE });
    expect(parse(latin1(`!<socket >7 s ${CYGWIN_WORDS.toUpperCase()}\0`))).toMatchObject({ port: 7 });
  });

  it('ignores bytes after the NUL of the Cygwin form, as libassuan does', () => {
    const file = Buffer.concat([cygwinSocketFile(49152, NONCE), latin1('junk\n\0more')]);
    expect(parse(file)).toEqual({ form: 'cygwin', port: 49152, nonce: NONCE });
  });

  it('reads a redirect to a socket path', () => {
    expect(parse(latin1('%Assuan%\nsocket=/run/gnupg/S.gpg-agent\n'))).toEqual({ form: 'redirect', path: '/run/gnupg/S.gpg-agent' });
  });

  it('expands ${VAR} from the given environment, not the process one', () => {
    const file = latin1('%Assuan%\nsocket=${SOCKDIR}/S.${NAME}\n');
    expect(parse(file, { SOCKDIR: '/srv/agent', NAME: 'gpg-agent' })).toEqual({ form: 'redirect', path: '/srv/agent/S.gpg-agent' });
  });

  it('drops an unset variable, an empty one and ${}, as libassuan does', () => {
    const file = latin1('%Assuan%\nsocket=/a${UNSET_VARIABLE}/b${EMPTY}/c${}/d\n');
    expect(parse(file, { EMPTY: '' })).toEqual({ form: 'redirect', path: '/a/b/c/d' });
  });

  it('keeps a lone $ or { and does not expand a value again', () => {
    expect(parse(latin1('%Assuan%\nsocket=/a$b{c}/$\n'))).toEqual({ form: 'redirect', path: '/a$b{c}/$' });
    expect(parse(latin1('%Assuan%\nsocket=${X}\n'), { X: '/p/${Y}', Y: 'no' })).toEqual({ form: 'redirect', path: '/p/${Y}' });
  });

  it('takes a UTF-8 path, from the file or a variable', () => {
    expect(parse(Buffer.from('%Assuan%\nsocket=/tmp/ünï/S\n', 'utf8'))).toEqual({ form: 'redirect', path: '/tmp/ünï/S' });
    expect(parse(latin1('%Assuan%\nsocket=${D}/S\n'), { D: '/home/José Ñ' })).toEqual({ form: 'redirect', path: '/home/José Ñ/S' });
  });

  it('takes a path of 107 bytes and a file of 511 bytes', () => {
    const path107 = '/' + 'p'.repeat(106);
    expect(parse(latin1(`%Assuan%\nsocket=${path107}\n`))).toEqual({ form: 'redirect', path: path107 });
    // An unset variable with a long name pads the file without lengthening the path.
    const padded = latin1(`%Assuan%\nsocket=/s\${${'V'.repeat(511 - 22)}}\n`);
    expect(padded.length).toBe(511);
    expect(parse(padded)).toEqual({ form: 'redirect', path: '/s' });
  });
});

/** One file per defect: each gets its own defect, and so its own message. */
const MALFORMED: Array<{ name: string; content: Buffer; env?: NodeJS.ProcessEnv; defect: SocketFileDefect }> = [
  { name: 'empty file', content: Buffer.alloc(0), defect: 'empty' },
  { name: 'unknown form', content: latin1('hello, world\n'), defect: 'unknownForm' },
  { name: 'no LF', content: Buffer.concat([latin1('51234'), NONCE]), defect: 'noLineFeed' },
  { name: 'port 0', content: windowsSocketFile(0, NONCE), defect: 'portZero' },
  { name: 'port 70000', content: windowsSocketFile(70000, NONCE), defect: 'portTooLarge' },
  { name: 'port with a leading zero', content: Buffer.concat([latin1('051234\n'), NONCE]), defect: 'portLeadingZero' },
  { name: 'non-decimal port', content: Buffer.concat([latin1('0x1F90\n'), NONCE]), defect: 'portNotDecimal' },
  { name: 'junk before LF', content: Buffer.concat([latin1('51234 port\n'), NONCE]), defect: 'portTrailingJunk' },
  { name: 'CR LF after the port', content: Buffer.concat([latin1('51234\r\n'), NONCE]), defect: 'portLineCrLf' },
  { name: 'short nonce', content: Buffer.concat([latin1('51234\n'), NONCE.subarray(0, 15)]), defect: 'nonceTooShort' },
  { name: 'long nonce', content: Buffer.concat([latin1('51234\n'), NONCE, latin1('\n')]), defect: 'nonceTooLong' },
  { name: 'Cygwin: missing NUL', content: latin1(`!<socket >49152 s ${CYGWIN_WORDS}`), defect: 'cygwinNoNul' },
  { name: 'Cygwin: inverted fields', content: latin1(`!<socket >s 49152 ${CYGWIN_WORDS}\0`), defect: 'cygwinPortNotDecimal' },
  { name: 'Cygwin: double space', content: latin1(`!<socket >49152  s ${CYGWIN_WORDS}\0`), defect: 'cygwinLayout' },
  { name: 'Cygwin: datagram socket', content: latin1(`!<socket >49152 d ${CYGWIN_WORDS}\0`), defect: 'cygwinNotStream' },
  { name: 'Cygwin: not hex', content: latin1('!<socket >49152 s 0123456g-89abcdef-00000001-ffffffff\0'), defect: 'cygwinNonceNotHex' },
  { name: 'Cygwin: wrong width', content: latin1('!<socket >49152 s 1234567-89abcdef-00000001-ffffffff\0'), defect: 'cygwinNonceWordWidth' },
  { name: 'Cygwin: trailing bytes', content: latin1(`!<socket >49152 s ${CYGWIN_WORDS}\n\0`), defect: 'cygwinTextAfterNonce' },
  { name: 'redirect over 511 bytes', content: latin1(`%Assuan%\nsocket=/s\${${'V'.repeat(512 - 22)}}\n`), defect: 'redirectTooLarge' },
  { name: 'redirect: wrong header', content: latin1('%Assuan%\r\nsocket=/s\n'), defect: 'redirectHeader' },
  { name: 'redirect missing final LF', content: latin1('%Assuan%\nsocket=/s'), defect: 'redirectNoFinalLineFeed' },
  { name: 'redirect: no name', content: latin1('%Assuan%\nsocket=\n'), defect: 'redirectEmptyName' },
  { name: 'redirect: extra lines', content: latin1('%Assuan%\nsocket=/s\nsocket=/t\n'), defect: 'redirectExtraLines' },
  { name: 'redirect with whitespace', content: latin1('%Assuan%\nsocket= /s\n'), defect: 'redirectWhitespace' },
  { name: 'redirect with a control byte', content: latin1('%Assuan%\nsocket=/s\0x\n'), defect: 'redirectControlByte' },
  { name: 'redirect: unclosed ${', content: latin1('%Assuan%\nsocket=${HOME/s\n'), defect: 'redirectUnclosedVariable' },
  { name: 'redirect: path of 108 bytes', content: latin1(`%Assuan%\nsocket=/${'p'.repeat(107)}\n`), defect: 'redirectPathTooLong' },
  { name: 'redirect: only an unset variable', content: latin1('%Assuan%\nsocket=${UNSET_VARIABLE}\n'), defect: 'redirectExpandsToEmpty' },
  { name: 'redirect: not UTF-8', content: latin1('%Assuan%\nsocket=/tmp/\xff\xfe\n'), defect: 'redirectPathNotUtf8' },
];

/** More malformed files, each with a defect of the table above. */
const MORE_MALFORMED: Array<{ name: string; content: Buffer; env?: NodeJS.ProcessEnv; defect: SocketFileDefect }> = [
  { name: 'port 65536', content: windowsSocketFile(65536, NONCE), defect: 'portTooLarge' },
  { name: 'port of 40 digits', content: Buffer.concat([latin1(`${'9'.repeat(40)}\n`), NONCE]), defect: 'portTooLarge' },
  { name: 'hex port without 0x', content: Buffer.concat([latin1('1f90\n'), NONCE]), defect: 'portNotDecimal' },
  { name: 'blank after the port', content: Buffer.concat([latin1('51234 \n'), NONCE]), defect: 'portTrailingJunk' },
  { name: 'port with a sign (atoi takes it)', content: Buffer.concat([latin1('+51234\n'), NONCE]), defect: 'unknownForm' },
  { name: 'port after a blank (atoi takes it)', content: Buffer.concat([latin1(' 51234\n'), NONCE]), defect: 'unknownForm' },
  { name: 'nothing after the LF', content: latin1('51234\n'), defect: 'nonceTooShort' },
  { name: 'a 49-byte file as libassuan reads it', content: Buffer.concat([latin1('51234\n'), Buffer.alloc(43, 1)]), defect: 'nonceTooLong' },
  { name: 'Cygwin: port 0', content: latin1(`!<socket >0 s ${CYGWIN_WORDS}\0`), defect: 'portZero' },
  { name: 'Cygwin: port 70000', content: latin1(`!<socket >70000 s ${CYGWIN_WORDS}\0`), defect: 'portTooLarge' },
  { name: 'Cygwin: port with a leading zero', content: latin1(`!<socket >049152 s ${CYGWIN_WORDS}\0`), defect: 'portLeadingZero' },
  { name: 'Cygwin: hex port', content: latin1(`!<socket >0xC000 s ${CYGWIN_WORDS}\0`), defect: 'cygwinPortNotDecimal' },
  { name: 'Cygwin: no port', content: latin1(`!<socket > s ${CYGWIN_WORDS}\0`), defect: 'cygwinPortNotDecimal' },
  { name: 'Cygwin: nonce words before the type', content: latin1(`!<socket >49152 ${CYGWIN_WORDS} s\0`), defect: 'cygwinLayout' },
  { name: 'Cygwin: upper-case S', content: latin1(`!<socket >49152 S ${CYGWIN_WORDS}\0`), defect: 'cygwinNotStream' },
  { name: 'Cygwin: nine-digit word', content: latin1('!<socket >49152 s 012345678-89abcdef-00000001-ffffffff\0'), defect: 'cygwinNonceWordWidth' },
  { name: 'Cygwin: three words', content: latin1('!<socket >49152 s 01234567-89abcdef-00000001\0'), defect: 'cygwinLayout' },
  { name: 'Cygwin: five words', content: latin1(`!<socket >49152 s ${CYGWIN_WORDS}-00000000\0`), defect: 'cygwinTextAfterNonce' },
  { name: 'Cygwin: words joined by spaces', content: latin1('!<socket >49152 s 01234567 89abcdef 00000001 ffffffff\0'), defect: 'cygwinLayout' },
  { name: 'Cygwin: 0x before a word', content: latin1('!<socket >49152 s 0x234567-89abcdef-00000001-ffffffff\0'), defect: 'cygwinNonceNotHex' },
  { name: 'Cygwin: just the mark', content: latin1('!<socket >\0'), defect: 'cygwinPortNotDecimal' },
  { name: 'redirect with a tab', content: latin1('%Assuan%\nsocket=/s\tt\n'), defect: 'redirectWhitespace' },
  { name: 'redirect with CR LF', content: latin1('%Assuan%\nsocket=/s\r\n'), defect: 'redirectWhitespace' },
  { name: 'redirect with a blank line after', content: latin1('%Assuan%\nsocket=/s\n\n'), defect: 'redirectExtraLines' },
  { name: 'redirect: two final LFs missing', content: latin1('%Assuan%\nsocket='), defect: 'redirectNoFinalLineFeed' },
  { name: 'redirect: lower-case key', content: latin1('%Assuan%\nSocket=/s\n'), defect: 'redirectHeader' },
  { name: 'redirect: header only', content: latin1('%Assuan%\n'), defect: 'redirectHeader' },
  { name: 'redirect: a set variable makes the path too long', content: latin1('%Assuan%\nsocket=${D}/S\n'), env: { D: '/' + 'd'.repeat(105) }, defect: 'redirectPathTooLong' },
  { name: 'redirect: a variable set to nothing', content: latin1('%Assuan%\nsocket=${EMPTY}\n'), env: { EMPTY: '' }, defect: 'redirectExpandsToEmpty' },
];

describe('malformed socket files', () => {
  it.each(MALFORMED.map((c) => [c.name, c] as const))('%s', (_, { content, env, defect }) => {
    expect(defectOf(content, env)).toBe(defect);
  });

  it.each(MORE_MALFORMED.map((c) => [c.name, c] as const))('%s', (_, { content, env, defect }) => {
    expect(defectOf(content, env)).toBe(defect);
  });

  it('gives every listed case its own message', () => {
    const messages = MALFORMED.map(({ content, env }) => errorOf(content, env).message);
    expect(new Set(messages).size).toBe(MALFORMED.length);
  });

  it('names the file and the defect in words, never the contents', () => {
    for (const { content, env, defect } of [...MALFORMED, ...MORE_MALFORMED]) {
      const error = errorOf(content, env);
      expect(error.file).toBe(FILE);
      expect(error.message).toBe(`socket file ${FILE}: ${describeDefect(defect)}`);
      expect(error.name).toBe('SocketFileError');
    }
  });

  it('never puts nonce bytes in a message, raw or in hex', () => {
    const nonceFiles = [
      Buffer.concat([latin1('51234\n'), NONCE, latin1('x')]),
      Buffer.concat([latin1('70000\n'), NONCE]),
      Buffer.concat([latin1('51234 x\n'), NONCE]),
      Buffer.concat([latin1('51234'), NONCE]),
      cygwinSocketFile(49152, NONCE).subarray(0, -1),
      latin1(`!<socket >0 s ${CYGWIN_WORDS}\0`),
    ];
    const cygwinNonce = Buffer.from('67452301efcdab8901000000ffffffff', 'hex');
    for (const content of nonceFiles) {
      const { message } = errorOf(content);
      for (const nonce of [NONCE, cygwinNonce]) {
        expect(message).not.toContain(nonce.toString('hex'));
        expect(message).not.toContain(nonce.toString('latin1'));
        expect(message).not.toContain(nonce.toString('utf8'));
        expect(Buffer.from(message, 'utf8').includes(nonce)).toBe(false);
      }
      expect(message).not.toContain('01234567');
      expect(message).not.toContain('ffffffff');
    }
  });

  it('never puts a redirect target in a message', () => {
    const { message } = errorOf(latin1('%Assuan%\nsocket=/secret/place/S x\n'));
    expect(message).not.toContain('/secret/place');
  });
});
