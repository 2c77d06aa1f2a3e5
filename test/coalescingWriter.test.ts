import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CoalescingWriter } from '../src/coalescingWriter.js';
import { LineFramer } from '../src/protocol/framer.js';

function collect(): { writes: Buffer[]; writer: CoalescingWriter } {
  const writes: Buffer[] = [];
  return { writes, writer: new CoalescingWriter((b) => writes.push(b)) };
}

describe('CoalescingWriter', () => {
  it('writes the lines of one chunk that are back to back as a single write, the chunk itself', () => {
    const chunk = Buffer.from('S PROGRESS x\nD 2.2.40\nOK\n');
    const { writes, writer } = collect();
    writer.add(chunk.subarray(0, 13));
    writer.add(chunk.subarray(13, 22));
    writer.add(chunk.subarray(22));
    expect(writes).toHaveLength(0);
    writer.flush();
    expect(writes).toHaveLength(1);
    expect(writes[0]!.equals(chunk)).toBe(true);
    writer.flush();
    expect(writes).toHaveLength(1);
  });

  it('a gap (a line not relayed) splits the run; other buffers start a new write; order is kept', () => {
    const chunk = Buffer.from('D a\n# dropped\nD b\n');
    const own = Buffer.from('ERR 1 x\n');
    const { writes, writer } = collect();
    writer.add(chunk.subarray(0, 4));
    writer.add(chunk.subarray(14));
    writer.add(own);
    writer.flush();
    expect(writes.map((w) => w.toString())).toEqual(['D a\n', 'D b\n', 'ERR 1 x\n']);
  });

  it('discard forgets what was collected', () => {
    const { writes, writer } = collect();
    writer.add(Buffer.from('OK\n'));
    writer.discard();
    writer.flush();
    expect(writes).toHaveLength(0);
  });

  it('property: whatever lines of framed chunks are relayed, the bytes written are exactly those lines in order', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 8 }), fc.array(fc.boolean(), { maxLength: 200 }), (chunks, keep) => {
        const framer = new LineFramer();
        const { writes, writer } = collect();
        const expected: Buffer[] = [];
        let k = 0;
        for (const raw of chunks) {
          framer.push(Buffer.from(raw));
          for (let item = framer.next(); item; item = framer.next()) {
            if (item.kind !== 'line' || !(keep[k++ % Math.max(keep.length, 1)] ?? true)) continue;
            expected.push(item.bytes);
            writer.add(item.bytes);
          }
          writer.flush();
        }
        expect(Buffer.concat(writes).equals(Buffer.concat(expected))).toBe(true);
        expect(writes.length).toBeLessThanOrEqual(expected.length);
      }),
      { numRuns: 2000 },
    );
  });
});
