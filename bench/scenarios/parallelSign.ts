/**
 * Parallel signing (issue 15 part 6): 32 `gpg --batch --yes --detach-sign` processes started at once, each on its
 * own small file with its own output, against a gpg-agent of their own (a throw-away GNUPGHOME), direct and through
 * the proxy, without and with `--max-crypto N` (PKSIGN/PKDECRYPT beyond N wait in arrival order). Two keys: one
 * without a passphrase, and one whose passphrase is preset in the agent (gpg-preset-passphrase, as CI jobs do).
 * Per path: the batch's wall time, the gpg processes that failed (and why, from their stderr), and how many of
 * the signatures `gpg --verify` finds good. Variants whose proxy the CLI refuses to start (an option it does not
 * know yet: exit 2, "Unknown option") are reported as skipped, with the reason.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { clientHome } from '../support/gpgHomes.js';
import { startProxy, type GpgAgentHome, type Relay } from '../support/processes.js';
import type { Section } from '../support/report.js';
import { interleave, millis, ratio, summarize } from '../support/stats.js';

export interface ParallelSignOptions {
  /** A private directory for the agent homes, client homes, relay sockets and files (removed by the caller). */
  dir: string;
  quick: boolean;
  /** Node options for the proxies (BENCH_CPU_PROF). */
  nodeArgs: string[];
  log: (text: string) => void;
}

/** gpg processes at once per batch. */
const PARALLEL = 32;
/** A gpg process still running after this is killed and counted as a failure (a pinentry may wait forever). */
const GPG_TIMEOUT_MS = 60_000;
/** The key: the size release-signing guides still ask for, and the one whose parallel signing fails here. */
const KEY_ALGO = 'rsa4096';
const PASSPHRASE = 'bench passphrase';

/** The proxies measured besides direct: their names and extra options. */
const PROXY_VARIANTS: Array<{ name: string; args: string[] }> = [
  { name: 'proxy', args: [] },
  { name: 'proxy --max-crypto 1', args: ['--max-crypto', '1'] },
  { name: 'proxy --max-crypto 4', args: ['--max-crypto', '4'] },
];

/** The environment for GnuPG tools: C messages (classified below), no display or tty a pinentry could use. */
function gnupgEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, GNUPGHOME: home, LC_ALL: 'C' };
  for (const name of ['DISPLAY', 'WAYLAND_DISPLAY', 'GPG_TTY', 'GPG_AGENT_INFO']) delete env[name];
  return env;
}

interface KeyedAgent extends GpgAgentHome {
  keygrip: string;
}

/** A throw-away GNUPGHOME with its own running gpg-agent and an rsa4096 signing key (protected if `passphrase`). */
function startKeyedAgent(dir: string, name: string, passphrase: string): KeyedAgent {
  const home = path.join(dir, name);
  fs.mkdirSync(home, { mode: 0o700 });
  if (passphrase) fs.writeFileSync(path.join(home, 'gpg-agent.conf'), 'allow-preset-passphrase\n');
  const env = gnupgEnv(home);
  const run = (command: string, args: string[]) => execFileSync(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const cleanup = () => {
    try {
      run('gpgconf', ['--kill', 'all']);
    } catch {
      // already gone
    }
  };
  try {
    run('gpgconf', ['--launch', 'gpg-agent']);
    run('gpg', ['--batch', '--pinentry-mode', 'loopback', '--passphrase', passphrase, '--quick-gen-key', `parallel ${name} <parallel@example.org>`, KEY_ALGO, 'sign', 'never']);
    const listing = run('gpg', ['--batch', '--with-colons', '--with-keygrip', '--list-secret-keys']).toString();
    const keygrip = /^grp:+([0-9A-F]+):/m.exec(listing)?.[1];
    if (!keygrip) throw new Error(`no keygrip listed in ${home}`);
    if (passphrase) {
      // As CI jobs do (e.g. after importing a signing key): the passphrase in the agent's cache, without expiry.
      const libexec = run('gpgconf', ['--list-dirs', 'libexecdir']).toString().trim();
      execFileSync(path.join(libexec, 'gpg-preset-passphrase'), ['--preset', '--passphrase', passphrase, keygrip], { env, stdio: 'ignore' });
    }
    const socket = run('gpgconf', ['--list-dirs', 'agent-socket']).toString().trim();
    return { home, socket, env, keygrip, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}

interface GpgRun {
  code: number | null;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

function runGpg(env: NodeJS.ProcessEnv, args: string[]): Promise<GpgRun> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn('gpg', args, { env, stdio: ['ignore', 'ignore', 'pipe'], timeout: GPG_TIMEOUT_MS, killSignal: 'SIGKILL' });
    const err: Buffer[] = [];
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      resolve({ code, stderr: Buffer.concat(err).toString(), ms, timedOut: signal === 'SIGKILL' });
    });
  });
}

/** Why a gpg process failed, as a short class: the error gpg reports, or how it ended. */
function failureClass(run: GpgRun): string {
  if (run.timedOut) return `killed after ${GPG_TIMEOUT_MS / 1000} s`;
  const reported = /^gpg: (signing failed: .+|can't connect to the agent: .+|.*agent.*)$/m.exec(run.stderr)?.[1];
  if (reported) return reported.trim();
  const first = run.stderr.split('\n').find((l) => l.trim() !== '');
  return first ? first.trim() : `exit ${run.code}`;
}

/** Runs `step` over `items` with at most `limit` at once. */
async function pooled<T>(items: T[], limit: number, step: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await step(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

interface MeasuredVariant {
  name: string;
  /** Why it was not measured (the CLI refused the option), if it was not. */
  skipped?: string;
  env?: NodeJS.ProcessEnv;
  work?: string;
  walls: number[];
  latencies: number[];
  failures: number;
  reasons: Map<string, number>;
  verified: number;
  signed: number;
}

/** Whether a proxy start failed because the CLI does not know an option (exit status 2, "Unknown option"). */
function rejectedOption(err: unknown): string | undefined {
  const message = err instanceof Error ? err.message : String(err);
  if (!/exited \(2\)|unknown option/i.test(message)) return undefined;
  const said = /assuan-proxy: ([^\n]*)/.exec(message)?.[1]?.trim();
  return `the CLI refuses it (exit 2${said ? `: ${said}` : ''})`;
}

/** One batch: PARALLEL gpg processes at once, then every signature verified. */
async function batch(variant: MeasuredVariant, round: number): Promise<void> {
  const { env, work } = variant as Required<MeasuredVariant>;
  const files = Array.from({ length: PARALLEL }, (_, i) => path.join(work, `f${i}`));
  for (const [i, file] of files.entries()) {
    fs.rmSync(`${file}.sig`, { force: true });
    fs.writeFileSync(file, `file ${i} of ${variant.name}, round ${round}, ${Math.random()}\n`);
  }
  const start = process.hrtime.bigint();
  const runs = await Promise.all(files.map((file) => runGpg(env, ['--batch', '--yes', '--detach-sign', '-o', `${file}.sig`, file])));
  variant.walls.push(Number(process.hrtime.bigint() - start) / 1e6);
  for (const run of runs) {
    variant.latencies.push(run.ms);
    if (run.code === 0) continue;
    variant.failures++;
    const reason = failureClass(run);
    variant.reasons.set(reason, (variant.reasons.get(reason) ?? 0) + 1);
  }
  variant.signed += files.length;
  // Verification is not timed; two at once (the machine has two cores).
  await pooled(files, 2, async (file) => {
    if (!fs.existsSync(`${file}.sig`)) return;
    const run = await runGpg(env, ['--batch', '--verify', `${file}.sig`, file]);
    if (run.code === 0 && /Good signature/.test(run.stderr)) variant.verified++;
  });
}

async function measureKey(options: ParallelSignOptions, kind: 'no passphrase' | 'cached passphrase', rounds: number, flagRefused: Map<string, string>): Promise<Section> {
  const tag = kind === 'no passphrase' ? 'np' : 'cp';
  const agent = startKeyedAgent(options.dir, `agent-${tag}`, kind === 'no passphrase' ? '' : PASSPHRASE);
  const relays: Array<Relay & { exited: Promise<void> }> = [];
  try {
    const relayDir = path.join(options.dir, `relays-${tag}`);
    fs.mkdirSync(relayDir, { mode: 0o700 });
    const variants: MeasuredVariant[] = [];
    const newVariant = (name: string): MeasuredVariant => ({ name, walls: [], latencies: [], failures: 0, reasons: new Map(), verified: 0, signed: 0 });
    const attach = (variant: MeasuredVariant, socket: string) => {
      const home = clientHome(agent, options.dir, `${tag}-${variants.length}`, socket);
      variant.env = gnupgEnv(home.env.GNUPGHOME!);
      variant.work = path.join(options.dir, `work-${tag}-${variants.length}`);
      fs.mkdirSync(variant.work, { mode: 0o700 });
    };
    const direct = newVariant('direct');
    attach(direct, agent.socket);
    variants.push(direct);
    for (const [k, spec] of PROXY_VARIANTS.entries()) {
      const variant = newVariant(spec.name);
      const refused = spec.args[0] ? flagRefused.get(spec.args[0]) : undefined;
      if (refused) {
        variant.skipped = refused;
        variants.push(variant);
        continue;
      }
      try {
        const relay = await startProxy(relayDir, 'proxy', agent.socket, spec.args, options.nodeArgs, `${tag}${k}`);
        relays.push(relay);
        attach(variant, relay.socket);
      } catch (err) {
        const reason = rejectedOption(err);
        if (!reason || !spec.args[0]) throw err;
        flagRefused.set(spec.args[0], reason);
        variant.skipped = reason;
        options.log(`parallel signing: '${spec.name}' skipped: ${reason}`);
      }
      variants.push(variant);
    }
    const measured = variants.filter((v) => !v.skipped);
    // One signing per path first (the agent's key cache, gpg's files), not measured.
    for (const v of measured) {
      const run = await runGpg(v.env!, ['--batch', '--yes', '--detach-sign', '-o', path.join(v.work!, 'warm.sig'), '/dev/null']);
      if (run.code !== 0) throw new Error(`warm-up signing through ${v.name} failed: ${run.stderr}`);
    }
    await interleave(measured, rounds, async (v) => {
      await batch(v, v.walls.length);
      options.log(`parallel signing, ${kind}: ${v.name}: ${millis(v.walls.at(-1)!)}, ${v.failures} failed so far`);
    });

    const directWall = summarize(direct.walls).median;
    const rows = variants.map((v) => {
      if (v.skipped) return [v.name, `skipped: ${v.skipped}`, '', '', '', '', '', ''];
      const wall = summarize(v.walls);
      const latency = summarize(v.latencies);
      const reasons = [...v.reasons].map(([reason, n]) => `${n}× ${reason}`).join('; ');
      return [
        v.name,
        millis(wall.median),
        v.walls.map((w) => (w / 1000).toFixed(2)).join(', ') + ' s',
        `${millis(latency.median)} / ${millis(latency.p90)}`,
        v === direct ? '' : ratio(wall.median / directWall),
        `${v.failures} / ${v.signed}`,
        reasons,
        `${v.verified} / ${v.signed}`,
      ];
    });
    const findings: string[] = [];
    for (const v of measured) {
      if (v === direct) continue;
      findings.push(`${v.name} / direct (wall medians): ${millis(summarize(v.walls).median)} / ${millis(directWall)} = **${ratio(summarize(v.walls).median / directWall)}**; failed ${v.failures} of ${v.signed} (direct: ${direct.failures} of ${direct.signed})`);
    }
    for (const v of variants) if (v.skipped) findings.push(`${v.name}: not measured: ${v.skipped}`);
    const keyText = kind === 'no passphrase' ? 'a key without passphrase' : 'a passphrase-protected key whose passphrase is preset in the agent (gpg-preset-passphrase)';
    return {
      title: `Parallel signing (issue 15): ${PARALLEL} × gpg --detach-sign at once, ${KEY_ALGO}, ${kind}`,
      method:
        `${PARALLEL} \`gpg --batch --yes --detach-sign\` processes started at once, each on its own small file with its own output, ` +
        `against a gpg-agent of their own (throw-away GNUPGHOME, ${KEY_ALGO}, ${keyText}); ${rounds} interleaved rounds per path. ` +
        `Wall: from the first spawn to the last exit. Per-gpg latency over every process of every round. A failure is a gpg exit ≠ 0 ` +
        `(its reason from gpg's stderr); verified counts signatures \`gpg --verify\` finds good. "vs direct": wall medians, same run.`,
      header: ['path', 'wall median', 'walls (each round)', 'per-gpg p50 / p90', 'vs direct', 'failed', 'failure reasons', 'verified good'],
      rows,
      findings,
    };
  } finally {
    for (const relay of relays) relay.stop();
    await Promise.all(relays.map((r) => r.exited));
    agent.cleanup();
  }
}

export async function parallelSign(options: ParallelSignOptions): Promise<{ sections: Section[] }> {
  const flagRefused = new Map<string, string>();
  const sections = [await measureKey(options, 'no passphrase', options.quick ? 2 : 5, flagRefused)];
  // Each batch of the cached-passphrase key takes seconds (the agent derives the key from the passphrase for every
  // signing, at its calibrated S2K cost): fewer rounds, to keep the section within a few minutes.
  sections.push(await measureKey(options, 'cached passphrase', options.quick ? 1 : 2, flagRefused));
  return { sections };
}
