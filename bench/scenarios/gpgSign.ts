/** Whole-process `gpg --detach-sign`, direct versus through each relay: what a user actually waits for. */
import { benchKey, clientHome, timeGpg } from '../support/gpgHomes.js';
import type { GpgAgentHome, Relay } from '../support/processes.js';
import type { Section } from '../support/report.js';
import { interleave, ratio, summarize } from '../support/stats.js';

export interface SignOptions {
  agent: GpgAgentHome;
  relays: Relay[];
  dir: string;
  rounds: number;
  perRound: number;
}

export async function gpgSign(options: SignOptions): Promise<{ section: Section }> {
  const { agent } = options;
  benchKey(agent);
  const message = Buffer.from('a message to sign\n');
  const paths = [
    { name: 'direct', env: agent.env, samples: [] as number[] },
    ...options.relays.map((r) => ({ name: r.name, env: clientHome(agent, options.dir, r.name, r.socket).env, samples: [] as number[] })),
  ];
  const sign = (env: NodeJS.ProcessEnv): number => timeGpg(env, ['--detach-sign', '-o', '-'], message);
  for (const p of paths) sign(p.env);
  await interleave(paths, options.rounds, async (p) => {
    for (let i = 0; i < options.perRound; i++) p.samples.push(sign(p.env));
  });
  const stats = new Map(paths.map((p) => [p.name, summarize(p.samples)]));
  const direct = stats.get('direct')!;
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  return {
    section: {
      title: 'Whole process: gpg --detach-sign (ed25519, gpg-agent)',
      method: `The wall time of one \`gpg --batch --detach-sign\` process, ${options.rounds} interleaved rounds × ${options.perRound}.`,
      header: ['path', 'median', 'p99', 'vs direct', 'samples'],
      rows: paths.map((p) => {
        const s = stats.get(p.name)!;
        return [p.name, ms(s.median), ms(s.p99), p.name === 'direct' ? '' : ratio(s.median / direct.median), String(s.n)];
      }),
      findings: [],
    },
  };
}
