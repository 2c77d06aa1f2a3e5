/**
 * Large D-block streams both ways: the server sends N D lines of 1000 bytes (`GETINFO bench-stream N`), and the
 * client answers an INQUIRE with N such lines (`PKDECRYPT`), each timed to the final OK.
 */
import { BenchConnection, nowMicros } from '../support/client.js';
import type { Relay } from '../support/processes.js';
import type { Section } from '../support/report.js';
import { interleave, median, ratio } from '../support/stats.js';

export interface StreamOptions {
  upstreamLabel: string;
  direct: string;
  relays: Relay[];
  lines: number;
  rounds: number;
}

const LINE_BYTES = 1000;

function uploadBlock(lines: number): Buffer {
  const line = Buffer.alloc(LINE_BYTES, 0xa5);
  line.write('D ', 0, 'latin1');
  line[LINE_BYTES - 1] = 0x0a;
  return Buffer.concat([...Array.from({ length: lines }, () => line), Buffer.from('END\n')]);
}

export async function dataStream(options: StreamOptions): Promise<{ section: Section }> {
  const upload = uploadBlock(options.lines);
  const megabytes = (options.lines * LINE_BYTES) / 1e6;
  const paths = [{ name: 'direct', socket: options.direct }, ...options.relays.map((r) => ({ name: r.name, socket: r.socket }))].map((p) => ({
    ...p,
    down: [] as number[],
    up: [] as number[],
  }));
  const once = async (p: (typeof paths)[number], record: boolean) => {
    const conn = await BenchConnection.open(p.socket);
    let start = nowMicros();
    conn.write(Buffer.from(`GETINFO bench-stream ${options.lines}\n`));
    const received = await conn.readAnswer();
    if (received !== options.lines * LINE_BYTES) throw new Error(`stream: ${received} bytes, expected ${options.lines * LINE_BYTES}`);
    const down = (nowMicros() - start) / 1e6;
    start = nowMicros();
    conn.write(Buffer.from('PKDECRYPT\n'));
    const inquire = await conn.line();
    if (!inquire.toString('latin1').startsWith('INQUIRE CIPHERTEXT')) throw new Error('no INQUIRE');
    conn.write(upload);
    await conn.readAnswer();
    const up = (nowMicros() - start) / 1e6;
    await conn.bye();
    if (record) {
      p.down.push(megabytes / down);
      p.up.push(megabytes / up);
    }
  };
  for (const p of paths) await once(p, false);
  await interleave(paths, options.rounds, (p) => once(p, true));
  const direct = paths[0]!;
  const mbs = (x: number) => `${x.toFixed(0)} MB/s`;
  return {
    section: {
      title: `D-block streams (${options.upstreamLabel})`,
      method: `${megabytes.toFixed(1)} MB as ${options.lines} D lines of 1000 bytes each way per sample (agent → client: a GETINFO answer; client → agent: an INQUIRE answer), ${options.rounds} interleaved rounds, medians.`,
      header: ['path', 'agent → client', 'client → agent', 'vs direct (down / up)'],
      rows: paths.map((p) => [
        p.name,
        mbs(median(p.down)),
        mbs(median(p.up)),
        p === direct ? '' : `${ratio(median(p.down) / median(direct.down))} / ${ratio(median(p.up) / median(direct.up))}`,
      ]),
      findings: [],
    },
  };
}
