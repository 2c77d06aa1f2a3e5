/**
 * Whole gpg processes used sporadically, as a person signs or decrypts: each path measured once per round, in an
 * order rotated every round, each operation after an idle gap. Against relays that keep running (warm) or that
 * are started for the one operation (fresh).
 */
import { benchKey, clientHome, timeGpg, type ClientHome } from '../support/gpgHomes.js';
import { afterIdle, type MeasuredPath } from '../support/measuredPaths.js';
import type { GpgAgentHome } from '../support/processes.js';
import type { Section, Verdict } from '../support/report.js';
import { millis, ratio, summarize, type Summary } from '../support/stats.js';

export interface SporadicOptions {
  agent: GpgAgentHome;
  /** Where the client homes go. */
  dir: string;
  /** `warm` or `fresh`, for titles and homes. */
  variant: string;
  /** What the variant means, one sentence for the method paragraph. */
  relayDescription: string;
  paths: MeasuredPath[];
  rounds: number;
  idleMs: number;
}

interface Operation {
  name: string;
  args: string[];
  input?: Buffer;
}

export async function sporadicGpg(options: SporadicOptions): Promise<{ section: Section; verdicts: Verdict[] }> {
  const { agent } = options;
  const key = benchKey(agent);
  const operations: Operation[] = [
    { name: 'gpg --detach-sign', args: ['--detach-sign', '-o', '-'], input: Buffer.from('a message to sign\n') },
    { name: 'gpg --decrypt', args: ['--decrypt', '-o', '-', key.ciphertext] },
  ];
  // Every path, direct included, through a client home of the same kind: only the socket behind it differs.
  const homes = new Map<MeasuredPath, ClientHome>(options.paths.map((p) => [p, clientHome(agent, options.dir, `${options.variant}-${p.name}`, agent.socket)]));
  /** Milliseconds per operation, then per path. */
  const samples = new Map(operations.map((o) => [o.name, new Map(options.paths.map((p) => [p.name, [] as number[]]))]));
  for (let round = 0; round < options.rounds; round++) {
    for (const operation of operations) {
      for (let k = 0; k < options.paths.length; k++) {
        const path = options.paths[(round + k) % options.paths.length]!;
        const home = homes.get(path)!;
        const ms = await afterIdle(path, options.idleMs, async (socket) => {
          home.pointAt(socket);
          return timeGpg(home.env, operation.args, operation.input);
        });
        samples.get(operation.name)!.get(path.name)!.push(ms);
      }
    }
  }

  const rows: string[][] = [];
  const findings: string[] = [];
  const verdicts: Verdict[] = [];
  for (const operation of operations) {
    const stats = new Map<string, Summary>([...samples.get(operation.name)!].map(([path, ms]) => [path, summarize(ms)]));
    const direct = stats.get('direct');
    const socat = stats.get('socat');
    for (const [name, s] of stats) {
      /** This path's median over a baseline's, blank on the baseline's own row (and direct's). */
      const versus = (base: Summary | undefined) => (base && s !== base && s !== direct ? ratio(s.median / base.median) : '');
      rows.push([operation.name, name, millis(s.median), millis(s.p90), versus(direct), versus(socat), String(s.n)]);
    }
    const proxy = stats.get('proxy');
    if (!proxy || !direct) continue;
    const scenario = `whole \`${operation.name}\`, sporadic, ${options.variant} relays`;
    const versusDirect = proxy.median / direct.median;
    if (socat) {
      const versusSocat = proxy.median / socat.median;
      findings.push(`${operation.name}: proxy / socat **${ratio(versusSocat)}** (target ≤ 1.00), proxy / direct **${ratio(versusDirect)}** (stretch ≤ 1.10)`);
      verdicts.push({
        topic: 'whole gpg process',
        measure: `${scenario}: proxy / socat (medians)`,
        measured: `${ratio(versusSocat)} (${millis(proxy.median)} / ${millis(socat.median)})`,
        target: '≤ 1.00',
        met: versusSocat <= 1,
      });
    } else findings.push(`${operation.name}: proxy / direct **${ratio(versusDirect)}** (stretch ≤ 1.10)`);
    verdicts.push({
      topic: 'whole gpg process',
      measure: `${scenario}: proxy / direct (medians)`,
      measured: `${ratio(versusDirect)} (${millis(proxy.median)} / ${millis(direct.median)})`,
      target: '≤ 1.10',
      met: versusDirect <= 1.1,
      stretch: true,
    });
  }
  return {
    section: {
      title: `Sporadic whole gpg processes, ${options.variant} relays (ed25519 / cv25519, gpg-agent)`,
      method:
        `The wall time of one whole \`gpg --batch\` process, from spawn to exit: \`--detach-sign\` of a short message and \`--decrypt\` of a short file encrypted to the key (no passphrase). ` +
        `${options.relayDescription} Each path once per operation per round, ${options.rounds} rounds, the order of the paths rotated every round, ` +
        `each operation after ${options.idleMs} ms idle. Every path goes through a client home of the same kind (its agent socket a symlink to the path's socket).`,
      header: ['operation', 'path', 'median', 'p90', 'vs direct', 'vs socat', 'samples'],
      rows,
      findings,
    },
    verdicts,
  };
}
