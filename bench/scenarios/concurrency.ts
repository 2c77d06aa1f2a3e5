/**
 * Many sessions at once: `sessions` connections opened together and held idle (memory per idle session measured
 * from the relay's resident set), then each does `roundTrips` sequential round trips, all sessions concurrently.
 */
import { BenchConnection, nowMicros } from '../support/client.js';
import { residentBytes, type Relay } from '../support/processes.js';
import type { Section, Verdict } from '../support/report.js';
import { micros, quantile, ratio } from '../support/stats.js';

export interface ConcurrencyOptions {
  upstreamLabel: string;
  direct: string;
  relays: Relay[];
  sessions: number;
  roundTrips: number;
  rounds: number;
}

interface PathResult {
  name: string;
  latencies: number[];
  errors: number;
  seconds: number[];
  memoryPerSession?: number;
}

async function runOnce(socket: string, relayPid: number | undefined, options: ConcurrencyOptions, result: PathResult): Promise<void> {
  const before = relayPid ? residentBytes(relayPid) : 0;
  const opened = await Promise.allSettled(Array.from({ length: options.sessions }, () => BenchConnection.open(socket)));
  const conns = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  result.errors += opened.length - conns.length;
  if (relayPid && result.memoryPerSession === undefined) {
    // Let the relay settle (greetings relayed, buffers released) before reading its resident set.
    await new Promise((r) => setTimeout(r, 500));
    result.memoryPerSession = (residentBytes(relayPid) - before) / conns.length;
  }
  const start = nowMicros();
  await Promise.all(
    conns.map(async (conn) => {
      for (let i = 0; i < options.roundTrips; i++) {
        try {
          result.latencies.push(await conn.roundTrip());
        } catch {
          result.errors++;
          return;
        }
      }
    }),
  );
  result.seconds.push((nowMicros() - start) / 1e6);
  await Promise.allSettled(conns.map((c) => c.bye()));
}

export async function concurrency(options: ConcurrencyOptions): Promise<{ section: Section; verdicts: Verdict[] }> {
  const paths = [{ name: 'direct', socket: options.direct, pid: undefined as number | undefined }, ...options.relays.map((r) => ({ name: r.name, socket: r.socket, pid: r.pid as number | undefined }))];
  const results = new Map<string, PathResult>(paths.map((p) => [p.name, { name: p.name, latencies: [], errors: 0, seconds: [] }]));
  for (let round = 0; round < options.rounds; round++) {
    for (let k = 0; k < paths.length; k++) {
      const p = paths[(round + k) % paths.length]!;
      await runOnce(p.socket, p.pid, options, results.get(p.name)!);
    }
  }
  const kib = (bytes: number | undefined) => (bytes === undefined ? '' : `${(bytes / 1024).toFixed(1)} KiB`);
  const throughputOf = (r: PathResult) => r.latencies.length / r.seconds.reduce((a, b) => a + b, 0);
  const perSecond = (x: number) => `${Math.round(x).toLocaleString('en')} /s`;
  const rows = [...results.values()].map((r) => {
    const sorted = Float64Array.from(r.latencies).sort();
    return [r.name, perSecond(throughputOf(r)), micros(quantile(sorted, 0.5)), micros(quantile(sorted, 0.99)), String(r.errors), kib(r.memoryPerSession)];
  });
  const proxy = results.get('proxy');
  const socat = results.get('socat');
  const verdicts: Verdict[] = [];
  if (proxy) {
    const scenario = `${options.sessions.toLocaleString('en')} concurrent sessions × ${options.roundTrips} round trips, ${options.upstreamLabel}`;
    if (socat) {
      const r = throughputOf(proxy) / throughputOf(socat);
      verdicts.push({
        topic: 'concurrency',
        measure: `${scenario}: throughput proxy / socat, proxy errors`,
        measured: `${ratio(r)} (${perSecond(throughputOf(proxy))} / ${perSecond(throughputOf(socat))}), ${proxy.errors} errors`,
        target: '≥ 1.00, 0 errors',
        met: r >= 1 && proxy.errors === 0,
      });
    } else {
      verdicts.push({ topic: 'concurrency', measure: `${scenario}: proxy errors`, measured: String(proxy.errors), target: '0', met: proxy.errors === 0 });
    }
    const perSession = proxy.memoryPerSession ?? Number.NaN;
    verdicts.push({
      topic: 'memory',
      measure: 'memory per idle session (growth of a fresh proxy\'s resident set)',
      measured: kib(perSession),
      target: '< 64 KiB',
      met: perSession < 64 * 1024,
    });
  }
  return {
    section: {
      title: `${options.sessions} concurrent sessions × ${options.roundTrips} round trips (${options.upstreamLabel})`,
      method:
        `${options.sessions} connections opened at once and greeted; the relay's resident memory is read from /proc before and after (socat: summed over its forked processes, shared pages counted in each). ` +
        `Then every session does ${options.roundTrips} sequential GETINFO version round trips, all concurrently; ${options.rounds} rounds per path, in rotated order.`,
      header: ['path', 'throughput', 'p50', 'p99', 'errors', 'memory per idle session'],
      rows,
      findings: [],
    },
    verdicts,
  };
}
