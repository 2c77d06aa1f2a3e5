/**
 * GnuPG homes for the whole-process scenarios: the bench key in the agent's home, and client homes whose agent
 * socket is a symlink to the path being measured (gpg has no socket option).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { nowMicros } from './client.js';
import type { GpgAgentHome } from './processes.js';

export interface BenchKey {
  fingerprint: string;
  /** Keygrips of the ed25519 signing key and the cv25519 encryption subkey, in that order. */
  keygrips: string[];
  /** A small file encrypted to the subkey, for `gpg --decrypt`. */
  ciphertext: string;
}

const keys = new Map<string, BenchKey>();

/** The bench key (no passphrase), generated in the agent's home on first use. */
export function benchKey(agent: GpgAgentHome): BenchKey {
  const known = keys.get(agent.home);
  if (known) return known;
  const gpg = (args: string[], input?: Buffer) => execFileSync('gpg', ['--batch', ...args], { env: agent.env, input, stdio: ['pipe', 'pipe', 'ignore'] });
  const noPassphrase = ['--pinentry-mode', 'loopback', '--passphrase', ''];
  gpg([...noPassphrase, '--quick-gen-key', 'bench <bench@example.org>', 'ed25519', 'sign', 'never']);
  const listing = () => gpg(['--with-colons', '--with-keygrip', '--list-secret-keys']).toString().split('\n');
  const fingerprint = listing().find((l) => l.startsWith('fpr:'))!.split(':')[9]!;
  gpg([...noPassphrase, '--quick-add-key', fingerprint, 'cv25519', 'encr', 'never']);
  const keygrips = listing()
    .filter((l) => l.startsWith('grp:'))
    .map((l) => l.split(':')[9]!);
  const ciphertext = path.join(agent.home, 'bench-message.gpg');
  gpg(['--trust-model', 'always', '--recipient', fingerprint, '--output', ciphertext, '--encrypt'], Buffer.from('a small message to decrypt\n'));
  const key = { fingerprint, keygrips, ciphertext };
  keys.set(agent.home, key);
  return key;
}

export interface ClientHome {
  env: NodeJS.ProcessEnv;
  /** Points the home's agent socket at `socket` (a relay restarted on a new path). */
  pointAt(socket: string): void;
}

/** A home for gpg whose agent socket is a symlink to `socket`, with the agent home's public keyring. */
export function clientHome(agent: GpgAgentHome, dir: string, name: string, socket: string): ClientHome {
  const home = path.join(dir, `client-${name}`);
  fs.mkdirSync(home, { mode: 0o700 });
  for (const file of ['pubring.kbx', 'trustdb.gpg']) {
    const from = path.join(agent.home, file);
    if (fs.existsSync(from)) fs.copyFileSync(from, path.join(home, file));
  }
  fs.writeFileSync(path.join(home, 'gpg.conf'), 'no-autostart\n');
  const env = { ...process.env, GNUPGHOME: home };
  const link = execFileSync('gpgconf', ['--list-dirs', 'agent-socket'], { env }).toString().trim();
  fs.mkdirSync(path.dirname(link), { recursive: true, mode: 0o700 });
  const pointAt = (target: string) => {
    // Replaced by a rename, so that the path never dangles.
    const next = `${link}.next`;
    fs.rmSync(next, { force: true });
    fs.symlinkSync(target, next);
    fs.renameSync(next, link);
  };
  pointAt(socket);
  return { env, pointAt };
}

/** Milliseconds from spawning one whole `gpg --batch ARGS` process to its exit; throws unless it succeeded with output. */
export function timeGpg(env: NodeJS.ProcessEnv, args: string[], input?: Buffer): number {
  const start = nowMicros();
  const run = spawnSync('gpg', ['--batch', ...args], { env, input });
  const elapsed = nowMicros() - start;
  if (run.status !== 0 || run.stdout.length === 0) throw new Error(`gpg ${args.join(' ')} failed: ${run.stderr.toString()}`);
  return elapsed / 1000;
}
