/** Whole-process `gpg --detach-sign`, direct versus through each relay: what a user actually waits for. */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { nowMicros } from '../support/client.js';
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

/** A home for gpg whose agent socket is a symlink to `relaySocket`, with the agent home's public keyring. */
function clientHome(agent: GpgAgentHome, dir: string, name: string, relaySocket: string): NodeJS.ProcessEnv {
  const home = path.join(dir, `client-${name}`);
  fs.mkdirSync(home, { mode: 0o700 });
  for (const file of ['pubring.kbx', 'trustdb.gpg']) {
    const from = path.join(agent.home, file);
    if (fs.existsSync(from)) fs.copyFileSync(from, path.join(home, file));
  }
  fs.writeFileSync(path.join(home, 'gpg.conf'), 'no-autostart\n');
  const env = { ...process.env, GNUPGHOME: home };
  const socket = execFileSync('gpgconf', ['--list-dirs', 'agent-socket'], { env }).toString().trim();
  fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
  fs.symlinkSync(relaySocket, socket);
  return env;
}

export async function gpgSign(options: SignOptions): Promise<{ section: Section }> {
  const { agent } = options;
  execFileSync('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key', 'bench <bench@example.org>', 'ed25519', 'sign', 'never'], {
    env: agent.env,
    stdio: 'ignore',
  });
  const message = Buffer.from('a message to sign\n');
  const paths = [
    { name: 'direct', env: agent.env, samples: [] as number[] },
    ...options.relays.map((r) => ({ name: r.name, env: clientHome(agent, options.dir, r.name, r.socket), samples: [] as number[] })),
  ];
  const sign = (env: NodeJS.ProcessEnv): number => {
    const start = nowMicros();
    const run = spawnSync('gpg', ['--batch', '--detach-sign', '-o', '-'], { env, input: message });
    const elapsed = nowMicros() - start;
    if (run.status !== 0 || run.stdout.length === 0) throw new Error(`gpg --detach-sign failed: ${run.stderr.toString()}`);
    return elapsed / 1000;
  };
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
