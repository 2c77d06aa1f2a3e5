/**
 * Bridge mode: gpg-agent reached over a link (`assuan-proxy forward` through a transport process, the client end
 * beyond it), against the raw equivalent through the same kind of pipe (socat, and a second socat per connection
 * on the other side of its stdio). Round trips, whole `gpg --detach-sign` processes, and 100 sessions at once with
 * the memory each end holds per session.
 */
import { BenchConnection, nowMicros } from '../support/client.js';
import { ownResidentBytes, type GpgAgentHome, type Relay } from '../support/processes.js';
import type { Section } from '../support/report.js';
import { micros, quantile, ratio } from '../support/stats.js';
import { gpgSign } from './gpgSign.js';
import { roundTrip } from './roundTrip.js';

export interface BridgeOptions {
  agent: GpgAgentHome;
  dir: string;
  link: Relay & { farPid(): number | undefined };
  baseline: Relay | undefined;
  quick: boolean;
}

export async function bridgeLink(options: BridgeOptions): Promise<Section[]> {
  const relays = [options.link, ...(options.baseline ? [options.baseline] : [])];
  const sections: Section[] = [];

  const rtt = await roundTrip({ upstreamLabel: 'gpg-agent, over a link', direct: options.agent.socket, relays, rounds: options.quick ? 5 : 20, perRound: options.quick ? 100 : 250 });
  if (options.baseline) {
    const [link, pair] = [rtt.added.get('link')!, rtt.added.get(options.baseline.name)!];
    rtt.section.findings.push(`link added / socat-pair added: ${micros(link)} / ${micros(pair)} = **${ratio(link / pair)}**`);
  }
  sections.push(rtt.section);

  const sign = await gpgSign({ agent: options.agent, relays, dir: options.dir, rounds: options.quick ? 2 : 5, perRound: options.quick ? 3 : 6 });
  sign.section.title = 'Whole process over a link: gpg --detach-sign (ed25519, gpg-agent)';
  sections.push(sign.section);

  sections.push(await manySessions(options, relays));
  return sections;
}

/** 100 sessions opened at once, held idle (memory per session at each end), then 100 round trips each, concurrently. */
async function manySessions(options: BridgeOptions, relays: Relay[]): Promise<Section> {
  const sessions = 100;
  const roundTrips = options.quick ? 20 : 100;
  const rows: string[][] = [];
  const throughput = new Map<string, number>();
  for (const relay of relays) {
    const isLink = relay === options.link;
    const near = () => ownResidentBytes(relay.pid);
    const far = () => (isLink ? ownResidentBytes(options.link.farPid()) : 0);
    const [nearBefore, farBefore] = [near(), far()];
    const opened = await Promise.allSettled(Array.from({ length: sessions }, () => BenchConnection.open(relay.socket)));
    const conns = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    let errors = opened.length - conns.length;
    await new Promise((r) => setTimeout(r, 500));
    const perSession = (now: number, before: number) => `${((now - before) / 1024 / Math.max(conns.length, 1)).toFixed(1)} KiB`;
    const memory = isLink ? `agent end ${perSession(near(), nearBefore)}, client end ${perSession(far(), farBefore)}` : '(socat: one process pair per session)';
    const latencies: number[] = [];
    const start = nowMicros();
    await Promise.all(
      conns.map(async (conn) => {
        for (let i = 0; i < roundTrips; i++) {
          try {
            latencies.push(await conn.roundTrip());
          } catch {
            errors++;
            return;
          }
        }
      }),
    );
    const seconds = (nowMicros() - start) / 1e6;
    await Promise.allSettled(conns.map((c) => c.bye()));
    const sorted = Float64Array.from(latencies).sort();
    throughput.set(relay.name, latencies.length / seconds);
    rows.push([relay.name, `${Math.round(latencies.length / seconds).toLocaleString('en')} /s`, micros(quantile(sorted, 0.5)), micros(quantile(sorted, 0.99)), String(errors), memory]);
  }
  const findings: string[] = [];
  if (options.baseline) findings.push(`throughput link / socat-pair: **${ratio(throughput.get('link')! / throughput.get(options.baseline.name)!)}**`);
  return {
    title: `${sessions} sessions at once over one link × ${roundTrips} round trips (gpg-agent)`,
    method:
      `${sessions} connections opened at once at the far socket and greeted; each end's resident memory is read from /proc before and after (the link: the agent end's process and the client end's, each alone). ` +
      `Then every session does ${roundTrips} sequential GETINFO version round trips, all concurrently.`,
    header: ['path', 'throughput', 'p50', 'p99', 'errors', 'memory per idle session'],
    rows,
    findings,
  };
}
