import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineFramer, type FramedItem } from '../../src/protocol/framer.js';
import { MAX_LINE_BYTES } from '../../src/protocol/limits.js';

const b = (text: string) => Buffer.from(text, 'latin1');

function drain(framer: LineFramer): FramedItem[] {
  const items: FramedItem[] = [];
  for (let item = framer.next(); item !== undefined; item = framer.next()) {
    // Copy: the framer hands out views, and a test must see what was there when it was handed out.
    items.push(item.kind === 'line' ? { kind: 'line', bytes: Buffer.from(item.bytes) } : item);
  }
  return items;
}

function frameAll(chunks: Buffer[]): FramedItem[] {
  const framer = new LineFramer();
  const items: FramedItem[] = [];
  for (const chunk of chunks) {
    framer.push(chunk);
    items.push(...drain(framer));
  }
  return items;
}

const lines = (items: FramedItem[]) => items.map((i) => (i.kind === 'line' ? i.bytes.toString('latin1') : `<tooLong ${i.byteCount}>`));

describe('LineFramer', () => {
  it('frames several lines of one chunk, terminators kept', () => {
    expect(lines(frameAll([b('S INQUIRE_MAXLEN 255\nINQUIRE PASSPHRASE\n')]))).toEqual(['S INQUIRE_MAXLEN 255\n', 'INQUIRE PASSPHRASE\n']);
  });

  it('joins a line written as text and LF in two writes (what libassuan does)', () => {
    expect(lines(frameAll([b('OPTION allow-pinentry-notify'), b('\n')]))).toEqual(['OPTION allow-pinentry-notify\n']);
    expect(lines(frameAll([b('D 2.2.40\nOK'), b('\n')]))).toEqual(['D 2.2.40\n', 'OK\n']);
  });

  it('keeps CR LF and a CR inside the line as they are', () => {
    expect(lines(frameAll([b('GETINFO version\r\nD a\rb\n')]))).toEqual(['GETINFO version\r\n', 'D a\rb\n']);
  });

  it('returns nothing until the LF arrives, and reports the partial line', () => {
    const framer = new LineFramer();
    framer.push(b('GETINFO ver'));
    expect(framer.next()).toBeUndefined();
    expect(framer.partialBytes).toBe(11);
    expect(framer.midLine).toBe(true);
    framer.push(b('sion\n'));
    expect(lines(drain(framer))).toEqual(['GETINFO version\n']);
    expect(framer.midLine).toBe(false);
    expect(framer.bufferedBytes).toBe(0);
  });

  it('lets the caller stop between lines of one chunk and resume later, in order', () => {
    const framer = new LineFramer();
    framer.push(b('NOP\nGETINFO version\nNO'));
    expect(lines([framer.next()!])).toEqual(['NOP\n']);
    framer.push(b('P\n'));
    expect(lines(drain(framer))).toEqual(['GETINFO version\n', 'NOP\n']);
  });

  it('carries binary D payloads (NUL, 0x80-0xFF) byte for byte', () => {
    const payload = Buffer.from([0x44, 0x20, 0x00, 0x80, 0xff, 0xd9, 0xdd, 0x0a]);
    const [item] = frameAll([payload.subarray(0, 3), payload.subarray(3)]);
    expect(item).toEqual({ kind: 'line', bytes: payload });
  });

  it(`accepts a line whose LF is byte ${MAX_LINE_BYTES}, refuses byte ${MAX_LINE_BYTES + 1}`, () => {
    const longest = Buffer.concat([b('D '), Buffer.alloc(MAX_LINE_BYTES - 3, 0x61), b('\n')]);
    const tooLong = Buffer.concat([b('D '), Buffer.alloc(MAX_LINE_BYTES - 2, 0x61), b('\n')]);
    expect(longest.length).toBe(MAX_LINE_BYTES);
    expect(frameAll([longest])).toEqual([{ kind: 'line', bytes: longest }]);
    expect(frameAll([tooLong, b('NOP\n')])).toEqual([{ kind: 'tooLong', byteCount: MAX_LINE_BYTES + 1 }, { kind: 'line', bytes: b('NOP\n') }]);
  });

  it('drops an over-long line as it arrives and reports it once, at its LF', () => {
    const framer = new LineFramer();
    let items: FramedItem[] = [];
    for (let i = 0; i < 100; i++) {
      framer.push(Buffer.alloc(1000, 0x41));
      items = items.concat(drain(framer));
      // Memory held stays below one line whatever the client sends without an LF.
      expect(framer.bufferedBytes).toBeLessThan(MAX_LINE_BYTES);
    }
    expect(items).toEqual([]);
    framer.push(b('xyz\nBYE\n'));
    expect(lines(drain(framer))).toEqual(['<tooLong 100004>', 'BYE\n']);
  });

  it('never lets a later push overwrite a line it has handed out', () => {
    // A line straddling two chunks is copied into the framer's own buffer; the next pushes must not reuse the
    // bytes of that buffer while the caller (a socket write queue) may still hold the view.
    const framer = new LineFramer();
    framer.push(Buffer.alloc(500, 0x41));
    framer.push(b('BBBBBBBBBB\nC'));
    const first = framer.next();
    expect(first?.kind).toBe('line');
    const view = first!.kind === 'line' ? first!.bytes : Buffer.alloc(0);
    const before = Buffer.from(view);
    framer.push(Buffer.alloc(600, 0x5a));
    framer.push(b('\n'));
    expect(lines(drain(framer))).toEqual([`C${'Z'.repeat(600)}\n`]);
    expect(view.equals(before)).toBe(true);
  });

  it('frames identically however the bytes are split (property)', () => {
    const line = fc.oneof(
      fc.constantFrom('OK\n', 'NOP\n', '# comment\n', '\n', '\r\n', 'END\n', 'INQUIRE PASSPHRASE\n', 'ERR 67108881 No secret key <GPG Agent>\n'),
      fc.uint8Array({ maxLength: 997 }).map((bytes) => {
        const body = Buffer.from(bytes.map((x) => (x === 0x0a ? 0x20 : x)));
        return Buffer.concat([b('D '), body, b('\n')]).toString('latin1');
      }),
      fc.integer({ min: MAX_LINE_BYTES - 1, max: 3000 }).map((n) => `${'x'.repeat(n)}\n`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), fc.array(fc.integer({ min: 1, max: 1500 }), { maxLength: 40 }), (text, cuts) => {
        const whole = b(text.join(''));
        const chunks: Buffer[] = [];
        let at = 0;
        for (const size of cuts) {
          if (at >= whole.length) break;
          chunks.push(whole.subarray(at, at + size));
          at += size;
        }
        if (at < whole.length) chunks.push(whole.subarray(at));
        const expected = text.map((l) =>
          l.length <= MAX_LINE_BYTES ? { kind: 'line', bytes: b(l) } : { kind: 'tooLong', byteCount: l.length },
        );
        expect(frameAll(chunks)).toEqual(expected);
      }),
      { numRuns: 500 },
    );
  });
  it('peekLine shows the next complete line without taking it, and nothing for a partial or over-long line', () => {
    const framer = new LineFramer(10);
    framer.push(Buffer.from('D 1\nD 2\nD 3'));
    expect(framer.peekLine()?.toString()).toBe('D 1\n');
    expect(framer.peekLine()?.toString()).toBe('D 1\n');
    const first = framer.next();
    expect(first?.kind === 'line' && first.bytes.toString()).toBe('D 1\n');
    expect(framer.peekLine()?.toString()).toBe('D 2\n');
    framer.next();
    expect(framer.peekLine()).toBeUndefined(); // 'D 3' has no LF yet
    framer.push(Buffer.from('\n0123456789ABC\n'));
    expect(framer.peekLine()?.toString()).toBe('D 3\n');
    framer.next();
    expect(framer.peekLine()).toBeUndefined(); // over the limit: next() reports it as tooLong
    expect(framer.next()).toEqual({ kind: 'tooLong', byteCount: 14 });
  });
});
