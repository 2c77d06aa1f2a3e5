/** `GETINFO version` round trips on one long-lived connection per path, interleaved in rounds. */
import { BenchConnection } from '../support/client.js';
import type { Relay } from '../support/processes.js';
import type { Section, Verdict } from '../support/report.js';
import { interleave, median, micros, ratio, summarize } from '../support/stats.js';

export interface RoundTripOptions {
  upstreamLabel: string;
  direct: string;
  relays: Relay[];
  rounds: number;
  perRound: number;
}

export async function roundTrip(options: RoundTripOptions): Promise<{ section: Section; verdict?: Verdict; added: Map<string, number> }> {
  const paths = [
    { name: 'direct', socket: options.direct },
    ...options.relays.map((r) => ({ name: r.name, socket: r.socket })),
  ].map((p) => ({ ...p, samples: [] as number[], roundMedians: [] as number[], conn: undefined as BenchConnection | undefined }));
  for (const p of paths) p.conn = await BenchConnection.open(p.socket);
  // Warm up every path (JIT, caches) before measuring.
  for (let i = 0; i < 500; i++) for (const p of paths) await p.conn!.roundTrip();
  await interleave(paths, options.rounds, async (p) => {
    const round: number[] = [];
    for (let i = 0; i < options.perRound; i++) round.push(await p.conn!.roundTrip());
    p.samples.push(...round);
    p.roundMedians.push(median(round));
  });
  for (const p of paths) await p.conn!.bye();

  const stats = new Map(paths.map((p) => [p.name, summarize(p.samples)]));
  const direct = stats.get('direct')!;
  const directRounds = paths[0]!.roundMedians;
  /**
   * What a path adds over direct: the median over rounds of (its round median − direct's round median). Paired by
   * round, so drift between rounds cancels out; a difference of two overall medians swings with it.
   */
  const added = new Map(paths.map((p) => [p.name, median(p.roundMedians.map((m, r) => m - directRounds[r]!))]));
  const rows = paths.map((p) => {
    const s = stats.get(p.name)!;
    return [p.name, micros(s.median), micros(s.p99), p.name === 'direct' ? '' : micros(added.get(p.name)!), String(s.n)];
  });
  const section: Section = {
    title: `Round trip: GETINFO version to ${options.upstreamLabel}`,
    method:
      `One connection per path, ${options.rounds} interleaved rounds × ${options.perRound} round trips after 500 warm-up round trips each. ` +
      '"Added" is the median over rounds of the path\'s round median minus direct\'s in the same round.',
    header: ['path', 'median', 'p99', 'added (paired by round)', 'samples'],
    rows,
    findings: [],
  };
  const proxy = stats.get('proxy');
  const socat = stats.get('socat');
  if (!proxy || !socat) return { section, added };
  const proxyAdded = added.get('proxy')!;
  const socatAdded = added.get('socat')!;
  const addedRatio = proxyAdded / socatAdded;
  section.findings.push(`proxy added / socat added: ${micros(proxyAdded)} / ${micros(socatAdded)} = **${ratio(addedRatio)}** (target ≤ 1.00)`);
  section.findings.push(`p99: proxy ${micros(proxy.p99)}, socat ${micros(socat.p99)}, direct ${micros(direct.p99)}`);
  return {
    section,
    added,
    verdict: {
      topic: 'added round-trip latency',
      measure: `added round-trip latency, hot (one long connection), ${options.upstreamLabel}: proxy / socat`,
      measured: `${ratio(addedRatio)} (${micros(proxyAdded)} / ${micros(socatAdded)})`,
      target: '≤ 1.00',
      met: addedRatio <= 1,
    },
  };
}
