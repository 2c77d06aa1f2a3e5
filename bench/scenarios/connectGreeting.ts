/** Connect plus greeting: a fresh connection per sample, timed from connect() to the greeting's LF. */
import { BenchConnection } from '../support/client.js';
import type { Relay } from '../support/processes.js';
import type { Section, Verdict } from '../support/report.js';
import { interleave, micros, ratio, summarize } from '../support/stats.js';

export interface ConnectOptions {
  upstreamLabel: string;
  direct: string;
  relays: Relay[];
  rounds: number;
  perRound: number;
}

export async function connectGreeting(options: ConnectOptions): Promise<{ section: Section; verdict?: Verdict }> {
  const paths = [{ name: 'direct', socket: options.direct }, ...options.relays.map((r) => ({ name: r.name, socket: r.socket }))].map((p) => ({
    ...p,
    samples: [] as number[],
  }));
  for (let i = 0; i < 100; i++) for (const p of paths) await BenchConnection.connectAndGreet(p.socket);
  await interleave(paths, options.rounds, async (p) => {
    for (let i = 0; i < options.perRound; i++) p.samples.push(await BenchConnection.connectAndGreet(p.socket));
  });
  const stats = new Map(paths.map((p) => [p.name, summarize(p.samples)]));
  const section: Section = {
    title: `Connect plus greeting: ${options.upstreamLabel}`,
    method: `A new connection per sample, from connect() to the greeting's LF; ${options.rounds} interleaved rounds × ${options.perRound}.`,
    header: ['path', 'median', 'p99', 'samples'],
    rows: paths.map((p) => {
      const s = stats.get(p.name)!;
      return [p.name, micros(s.median), micros(s.p99), String(s.n)];
    }),
    findings: [],
  };
  const proxy = stats.get('proxy');
  const socat = stats.get('socat');
  if (!proxy || !socat) return { section };
  const r = proxy.median / socat.median;
  section.findings.push(`proxy / socat (median): **${ratio(r)}** (target ≤ 1.30)`);
  return {
    section,
    verdict: {
      topic: 'connect plus greeting',
      measure: `connect plus greeting, back to back, ${options.upstreamLabel}: proxy / socat`,
      measured: `${ratio(r)} (${micros(proxy.median)} / ${micros(socat.median)})`,
      target: '≤ 1.30',
      met: r <= 1.3,
    },
  };
}
