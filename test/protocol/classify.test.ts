import { describe, expect, it } from 'vitest';
import { classifyAgentLine, classifyClientLine, dataEscapesValid } from '../../src/protocol/classify.js';
import { errLine } from '../../src/protocol/errors.js';

const b = (text: string) => Buffer.from(text, 'latin1');

describe('classifyClientLine', () => {
  it.each([
    ['GETINFO version\n', 'command', 'GETINFO'],
    ['getinfo\tversion\n', 'command', 'GETINFO'],
    ['nop\r\n', 'command', 'NOP'],
    ['BYE\n', 'command', 'BYE'],
    ['PRESET_PASSPHRASE ABCDEF -1 74657374\n', 'command', 'PRESET_PASSPHRASE'],
    ['# hi\n', 'comment', ''],
    ['\n', 'empty', ''],
    ['\r\n', 'empty', ''],
    ['D test-pass\n', 'data', 'D'],
    ['d lower\n', 'data', 'D'],
    ['D \n', 'data', 'D'],
    ['END\n', 'end', 'END'],
    ['end\r\n', 'end', 'END'],
    ['END extra\n', 'end', 'END'],
    ['CAN\n', 'cancel', 'CAN'],
    ['CANCEL\n', 'cancel', 'CANCEL'],
    ['canxyz\n', 'cancel', 'UNKNOWN'],
    ['ENDX\n', 'command', 'UNKNOWN'],
    [' NOP\n', 'command', 'UNKNOWN'],
    ['D\n', 'command', 'D'],
  ] as const)('%j is %s (%s)', (line, kind, verb) => {
    expect(classifyClientLine(b(line))).toEqual({ kind, verb, bytes: line.length });
  });

  it('never reports an unknown word, which may be a mistyped secret', () => {
    const info = classifyClientLine(b('hunter2 is my passphrase\n'));
    expect(info.verb).toBe('UNKNOWN');
    expect(JSON.stringify(info)).not.toContain('hunter2');
  });

  it.each([
    ['D abc%\n', 'malformedData'],
    ['D abc%4\n', 'malformedData'],
    ['D abc%4\r\n', 'malformedData'],
    ['D %zz\n', 'malformedData'],
    ['D %g0rest\n', 'malformedData'],
    ['D s3cr%25t\n', 'data'],
    ['D %0a%0D%25\n', 'data'],
    ['D 100%41\n', 'data'],
  ] as const)('D line %j is %s', (line, kind) => {
    expect(classifyClientLine(b(line)).kind).toBe(kind);
  });

  it('checks escapes over binary payloads without decoding them', () => {
    const line = Buffer.from([0x44, 0x20, 0x00, 0xff, 0x25, 0x32, 0x35, 0x80, 0x0a]);
    expect(classifyClientLine(line).kind).toBe('data');
    expect(dataEscapesValid(Buffer.from([0x25, 0xff, 0x30]), 0, 3)).toBe(false);
  });
});

describe('classifyAgentLine', () => {
  it.each([
    ['OK Pleased to meet you, process 42\n', 'ok', ''],
    ['OK\n', 'ok', ''],
    ['OK 74657374\n', 'ok', ''],
    ['OK closing connection\n', 'okClosing', ''],
    ['ERR 67109139 Unknown IPC command <GPG Agent>\n', 'err', ''],
    ['INQUIRE PASSPHRASE\n', 'inquire', 'PASSPHRASE'],
    ['INQUIRE PINENTRY_LAUNCHED 1234 gtk2 1.2.1 tty\n', 'inquire', 'PINENTRY_LAUNCHED'],
    ['INQUIRE SOMETHING_FROM_A_CARD\n', 'inquire', 'OTHER'],
    ['S INQUIRE_MAXLEN 255\n', 'status', 'INQUIRE_MAXLEN'],
    ['S CACHE_NONCE 0123456789ABCDEF\n', 'status', 'CACHE_NONCE'],
    ['# NOP\n', 'comment', ''],
    ['D 2.2.40\n', 'data', ''],
    ['END\n', 'end', ''],
    ['OKAY\n', 'invalid', ''],
    ['ok\n', 'invalid', ''],
    ['hello\n', 'invalid', ''],
    ['\n', 'invalid', ''],
  ] as const)('%j is %s', (line, kind, keyword) => {
    expect(classifyAgentLine(b(line))).toEqual({ kind, keyword, bytes: line.length });
  });
});

describe('errLine', () => {
  it('writes a libassuan-shaped ERR line with gpg-agent codes', () => {
    expect(errLine('lineTooLong', 'lines are limited to 1000 bytes').toString('latin1')).toBe(
      'ERR 67109127 Line passed to IPC too long <assuan-proxy> - lines are limited to 1000 bytes\n',
    );
    expect(errLine('endOfFile').toString('latin1')).toBe('ERR 67125247 End of file <assuan-proxy>\n');
  });

  it('keeps a detail on one printable line', () => {
    const line = errLine('connectFailed', 'a\nb\u00e9c');
    expect(line.toString('latin1')).toBe('ERR 67109123 IPC connect call failed <assuan-proxy> - a?b?c\n');
    expect(classifyAgentLine(line).kind).toBe('err');
  });
});
