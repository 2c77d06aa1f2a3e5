/**
 * Short sessions with idle gaps, as gpg opens them: connect, greeting, twelve read-only commands, BYE; each path
 * once per round, in an order rotated every round, each session after an idle gap. Against relays that keep
 * running (warm) or that are started for the one session (fresh).
 */
import { gpgLikeSession } from '../support/gpgLikeSession.js';
import { afterIdle, type MeasuredPath } from '../support/measuredPaths.js';
import type { Section, Verdict } from '../support/report.js';
import { median, micros, ratio, summarize } from '../support/stats.js';

export interface ShortSessionOptions {
  /** `warm` or `fresh`, for titles. */
  variant: string;
  /** What the variant and its idle gaps mean, one sentence for the method paragraph. */
  relayDescription: string;
  paths: MeasuredPath[];
  commands: Buffer[];
  rounds: number;
  /** The idle gap before each session, in ms (drawn anew for each). */
  idleMs: () => number;
}

export async function shortSessions(options: ShortSessionOptions): Promise<{ section: Section; verdicts: Verdict[] }> {
  const results = new Map(options.paths.map((p) => [p.name, { connect: [] as number[], roundTrips: [] as number[], sessionMedians: [] as number[] }]));
  for (let round = 0; round < options.rounds; round++) {
    for (let k = 0; k < options.paths.length; k++) {
      const path = options.paths[(round + k) % options.paths.length]!;
      const times = await afterIdle(path, options.idleMs(), (socket) => gpgLikeSession(socket, options.commands));
      const result = results.get(path.name)!;
      result.connect.push(times.connectMicros);
      result.roundTrips.push(...times.roundTripMicros);
      result.sessionMedians.push(median(times.roundTripMicros));
    }
  }
  const direct = results.get('direct')!;
  /**
   * What a path adds to a round trip: the median over rounds of (its session's median round trip − direct's in the
   * same round). Paired by round, as in the hot round-trip section.
   */
  const added = (name: string) => median(results.get(name)!.sessionMedians.map((m, round) => m - direct.sessionMedians[round]!));
  const connect = new Map([...results].map(([name, r]) => [name, summarize(r.connect)]));
  const rows = [...results].map(([name, r]) => {
    const c = connect.get(name)!;
    const rtt = summarize(r.roundTrips);
    return [name, micros(c.median), micros(c.p90), micros(rtt.median), micros(rtt.p90), name === 'direct' ? '' : micros(added(name)), String(c.n)];
  });

  const findings: string[] = [];
  const verdicts: Verdict[] = [];
  const scenario = `short sessions with idle gaps, ${options.variant} relays`;
  const proxyConnect = connect.get('proxy');
  const socatConnect = connect.get('socat');
  const directConnect = connect.get('direct')!;
  if (proxyConnect) {
    const connectVsDirect = proxyConnect.median / directConnect.median;
    if (socatConnect) {
      const connectVsSocat = proxyConnect.median / socatConnect.median;
      const addedVsSocat = added('proxy') / added('socat');
      findings.push(`connect plus greeting: proxy / socat **${ratio(connectVsSocat)}** (target ≤ 1.00), proxy / direct **${ratio(connectVsDirect)}** (stretch ≤ 1.5)`);
      findings.push(`added per round trip: proxy / socat ${micros(added('proxy'))} / ${micros(added('socat'))} = **${ratio(addedVsSocat)}** (target ≤ 1.00)`);
      verdicts.push(
        {
          topic: 'connect plus greeting',
          measure: `connect plus greeting, ${scenario}: proxy / socat (medians)`,
          measured: `${ratio(connectVsSocat)} (${micros(proxyConnect.median)} / ${micros(socatConnect.median)})`,
          target: '≤ 1.00',
          met: connectVsSocat <= 1,
        },
        {
          topic: 'added round-trip latency',
          measure: `added round-trip latency, ${scenario}: proxy / socat`,
          measured: `${ratio(addedVsSocat)} (${micros(added('proxy'))} / ${micros(added('socat'))})`,
          target: '≤ 1.00',
          met: addedVsSocat <= 1,
        },
      );
    } else findings.push(`connect plus greeting: proxy / direct **${ratio(connectVsDirect)}** (stretch ≤ 1.5)`);
    verdicts.push({
      topic: 'connect plus greeting',
      measure: `connect plus greeting, ${scenario}: proxy / direct (medians)`,
      measured: `${ratio(connectVsDirect)} (${micros(proxyConnect.median)} / ${micros(directConnect.median)})`,
      target: '≤ 1.50',
      met: connectVsDirect <= 1.5,
      stretch: true,
    });
  }
  return {
    section: {
      title: `Short sessions with idle gaps, ${options.variant} relays (gpg-agent)`,
      method:
        `One session per path per round: connect, greeting, ${options.commands.length} commands one at a time as gpg sends them before a signing (RESET, OPTIONs, GETINFO version, HAVEKEY, KEYINFO, …; all read-only), BYE. ` +
        `${options.relayDescription} ${options.rounds} rounds, the order of the paths rotated every round. ` +
        '"Added" is the median over rounds of the session\'s median round trip minus direct\'s in the same round.',
      header: ['path', 'connect + greeting: median', 'p90', 'round trip: median', 'p90', 'added per round trip (paired by round)', 'sessions'],
      rows,
      findings,
    },
    verdicts,
  };
}
