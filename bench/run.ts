/**
 * `npm run bench`: the proxy side by side with a direct connection and with socat (the raw-relay baseline), in
 * one run, interleaved so machine drift hits every path alike. Prints the tables and writes bench/results.md.
 *
 * Sections, each named for BENCH_ONLY:
 * - rtt-agent, rtt-fast: hot round trips on one long connection, to gpg-agent and to our minimal Assuan server;
 * - connect: connect plus greeting, back to back;
 * - concurrency: 1000 sessions at once (memory per idle session, throughput of 100 round trips each);
 * - stream: large D-block streams both ways;
 * - sign: whole `gpg --detach-sign` processes, back to back;
 * - sporadic: whole `gpg --detach-sign` and `gpg --decrypt` processes, one per path per round with an idle gap
 *   before each, through relays that keep running and have served a few hundred sessions (warm);
 * - fresh: the same through relays started for each operation (a new proxy and a new socat every time);
 * - short: gpg-like short sessions (connect, greeting, twelve commands, BYE) a few to tens of ms apart through
 *   warm relays, and one session per fresh relay; connect plus greeting and added latency per round trip;
 * - bridge: gpg-agent over a link (`forward`, the client end on the other side of a child's stdio) against a
 *   socat pair through the same kind of pipe: round trips, whole gpg signings, 100 sessions at once;
 * - parallel: 32 whole `gpg --detach-sign` processes at once against a gpg-agent of their own (a key without
 *   passphrase, and one with its passphrase preset), direct, through the proxy, and through the proxy with
 *   --max-crypto 1 and 4 (skipped, with the reason, while the CLI rejects the option).
 * Then a targets table: each measure against its target (ratios to socat and direct from the same run).
 *
 * Environment:
 * - BENCH_QUICK=1: smaller counts and shorter idle gaps, for a quick look (the header says so);
 * - BENCH_ONLY=rtt-agent,rtt-fast,connect,concurrency,stream,sign,sporadic,fresh,short,bridge,parallel: run only these sections;
 * - BENCH_PROXY_ARGS="--flag …": options given to every proxy of the run, to compare two settings;
 * - BENCH_CPU_PROF=DIR: run the proxies with --cpu-prof (profiles written to DIR as they exit) and summarize each
 *   in bench/profile.md; the timings of such a run include the profiler's overhead.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { concurrency } from './scenarios/concurrency.js';
import { connectGreeting } from './scenarios/connectGreeting.js';
import { dataStream } from './scenarios/dataStream.js';
import { gpgSign } from './scenarios/gpgSign.js';
import { parallelSign } from './scenarios/parallelSign.js';
import { bridgeLink } from './scenarios/bridgeLink.js';
import { roundTrip } from './scenarios/roundTrip.js';
import { shortSessions } from './scenarios/shortSessions.js';
import { sporadicGpg } from './scenarios/sporadicGpg.js';
import { benchKey } from './support/gpgHomes.js';
import { gpgLikeCommands, gpgLikeSession } from './support/gpgLikeSession.js';
import { directPath, freshPath, standingPath, type MeasuredPath } from './support/measuredPaths.js';
import { privateDir, socatBinary, startFastAgent, startForwardRelay, startGpgAgent, startProxy, startSocat, startSocatPair, type Relay } from './support/processes.js';
import { profileOf, profileSection } from './support/profile.js';
import { renderSection, renderVerdicts, type Section, type Verdict } from './support/report.js';

const quick = process.env.BENCH_QUICK === '1';
const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined;
const wanted = (name: string) => !only || only.has(name);
const cpuProfDir = process.env.BENCH_CPU_PROF ? path.resolve(process.env.BENCH_CPU_PROF) : undefined;
const resultsFile = path.resolve(import.meta.dirname, 'results.md');
const profileFile = path.resolve(import.meta.dirname, 'profile.md');

function versionLine(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString().split('\n')[0]!.trim();
  } catch {
    return 'unavailable';
  }
}

function machineDescription(): string[] {
  const cpus = os.cpus();
  return [
    `- date: ${new Date().toISOString()}${quick ? ' (BENCH_QUICK: reduced counts)' : ''}${cpuProfDir ? ' (proxies profiled: timings include the profiler)' : ''}`,
    `- machine: ${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}`,
    `- Node ${process.version}; ${versionLine('gpg-agent', ['--version'])}; ${versionLine('socat', ['-V']).replace(/^socat by.*/, '') || versionLine('sh', ['-c', 'socat -V | grep "socat version"'])}`,
    '- the proxy runs as its own process (the built CLI, log level warn), as users run it; socat as `UNIX-LISTEN:…,fork UNIX-CONNECT:…`',
  ];
}

async function main(): Promise<void> {
  const dir = privateDir('apx-bench.');
  const stops: Array<() => void> = [];
  /** Proxies run in this benchmark, for their CPU profiles. */
  const proxies: Array<{ label: string; pid: number; exited: Promise<void> }> = [];
  const sections: Section[] = [];
  const verdicts: Verdict[] = [];
  const log = (text: string) => process.stderr.write(`bench: ${text}\n`);
  try {
    const agent = startGpgAgent(dir);
    stops.push(agent.cleanup);
    // Each server in its own directory: the proxy refuses to listen beside its upstream's socket.
    const fastDir = path.join(dir, 'fast');
    const relayDir = path.join(dir, 'relays');
    fs.mkdirSync(fastDir, { mode: 0o700 });
    fs.mkdirSync(relayDir, { mode: 0o700 });
    const fast = await startFastAgent(fastDir);
    stops.push(fast.stop);
    const nodeArgs = cpuProfDir ? ['--cpu-prof', '--cpu-prof-interval', '100', `--cpu-prof-dir=${cpuProfDir}`] : [];
    const proxyToAgent = await startProxy(relayDir, 'proxy', agent.socket, [], nodeArgs);
    const proxyToFast = await startProxy(relayDir, 'proxy', fast.socket, ['--max-sessions', '4096'], nodeArgs);
    stops.push(proxyToAgent.stop, proxyToFast.stop);
    proxies.push({ label: 'the proxy to gpg-agent', ...proxyToAgent }, { label: 'the proxy to the minimal server', ...proxyToFast });
    const agentRelays: Relay[] = [proxyToAgent];
    const fastRelays: Relay[] = [proxyToFast];
    const socat = socatBinary();
    if (socat) {
      const socatToAgent = await startSocat(socat, relayDir, 'socat', agent.socket);
      const socatToFast = await startSocat(socat, relayDir, 'socat', fast.socket);
      stops.push(socatToAgent.stop, socatToFast.stop);
      agentRelays.push(socatToAgent);
      fastRelays.push(socatToFast);
    } else {
      log('socat is unavailable (not on PATH and not installable): the raw-relay baseline and its ratios are skipped');
    }
    const gpgAgentLabel = 'gpg-agent';
    const fastLabel = 'our minimal Assuan server';
    const rtt = { rounds: quick ? 5 : 20, perRound: quick ? 100 : 250 };
    const add = (result: { section: Section; verdict?: Verdict; verdicts?: Verdict[] }) => {
      sections.push(result.section);
      if (result.verdict) verdicts.push(result.verdict);
      verdicts.push(...(result.verdicts ?? []));
      process.stdout.write(`${renderSection(result.section)}\n`);
    };

    if (wanted('rtt-agent')) {
      log('round trips to gpg-agent');
      add(await roundTrip({ upstreamLabel: gpgAgentLabel, direct: agent.socket, relays: agentRelays, ...rtt }));
    }
    if (wanted('rtt-fast')) {
      log('round trips to the minimal server');
      add(await roundTrip({ upstreamLabel: fastLabel, direct: fast.socket, relays: fastRelays, ...rtt }));
    }
    if (wanted('connect')) {
      log('connect plus greeting');
      const connect = { rounds: quick ? 5 : 20, perRound: quick ? 40 : 100 };
      add(await connectGreeting({ upstreamLabel: fastLabel, direct: fast.socket, relays: fastRelays, ...connect }));
      add(await connectGreeting({ upstreamLabel: gpgAgentLabel, direct: agent.socket, relays: agentRelays, ...connect }));
    }
    if (wanted('concurrency')) {
      log('1000 concurrent sessions');
      // Fresh relays, so that the memory per idle session is not hidden in a heap grown by the sections before.
      const freshProxy = await startProxy(relayDir, 'proxy', fast.socket, ['--max-sessions', '4096'], nodeArgs, 'fresh');
      stops.push(freshProxy.stop);
      proxies.push({ label: 'the proxy of the concurrency section', ...freshProxy });
      const freshRelays: Relay[] = [freshProxy];
      if (socat) {
        const freshSocat = await startSocat(socat, relayDir, 'socat', fast.socket, 'fresh');
        stops.push(freshSocat.stop);
        freshRelays.push(freshSocat);
      }
      add(await concurrency({ upstreamLabel: fastLabel, direct: fast.socket, relays: freshRelays, sessions: 1000, roundTrips: 100, rounds: quick ? 1 : 2 }));
    }
    if (wanted('stream')) {
      log('D-block streams');
      add(await dataStream({ upstreamLabel: fastLabel, direct: fast.socket, relays: fastRelays, lines: quick ? 4096 : 16384, rounds: quick ? 3 : 7 }));
    }
    if (wanted('sign')) {
      log('gpg --detach-sign');
      add(await gpgSign({ agent, relays: agentRelays, dir, rounds: quick ? 2 : 5, perRound: quick ? 3 : 6 }));
    }

    // The sporadic sections: what a user waits for, with the relays idle between uses.
    const sporadicIdleMs = quick ? 200 : 1000;
    const warmUpSessions = 300;
    let warmPaths: MeasuredPath[] | undefined;
    /** A proxy and a socat of their own, started once and warmed with a few hundred gpg-like sessions each. */
    const warmAgentPaths = async (): Promise<MeasuredPath[]> => {
      if (warmPaths) return warmPaths;
      const proxy = await startProxy(relayDir, 'proxy', agent.socket, [], nodeArgs, 'warm');
      stops.push(proxy.stop);
      proxies.push({ label: 'the warm proxy of the sporadic sections', ...proxy });
      const relays: Relay[] = [proxy];
      if (socat) {
        const socatRelay = await startSocat(socat, relayDir, 'socat', agent.socket, 'warm');
        stops.push(socatRelay.stop);
        relays.push(socatRelay);
      }
      const commands = gpgLikeCommands(benchKey(agent).keygrips);
      for (let i = 0; i < warmUpSessions; i++) for (const relay of relays) await gpgLikeSession(relay.socket, commands);
      warmPaths = [directPath(agent.socket), ...relays.map(standingPath)];
      return warmPaths;
    };
    /** Paths whose relays start anew for every operation; `section` keeps their socket paths apart. */
    const freshAgentPaths = (section: string): MeasuredPath[] => {
      const paths = [directPath(agent.socket), freshPath('proxy', (instance) => startProxy(relayDir, 'proxy', agent.socket, [], nodeArgs, `${section}-${instance}`))];
      if (socat) paths.push(freshPath('socat', (instance) => startSocat(socat, relayDir, 'socat', agent.socket, `${section}-${instance}`)));
      return paths;
    };
    const warmDescription = `The relays keep running; before the first round each served ${warmUpSessions} gpg-like short sessions.`;
    const freshDescription =
      'A new relay process (proxy and socat alike) for every operation, waited for until it listens, then stopped after the one operation; direct is measured in the same rounds.';
    if (wanted('sporadic')) {
      log('sporadic whole gpg processes, warm relays');
      const paths = await warmAgentPaths();
      add(await sporadicGpg({ agent, dir, variant: 'warm', relayDescription: warmDescription, paths, rounds: quick ? 3 : 15, idleMs: sporadicIdleMs }));
    }
    if (wanted('fresh')) {
      log('sporadic whole gpg processes, fresh relays');
      const paths = freshAgentPaths('gpg');
      add(await sporadicGpg({ agent, dir, variant: 'fresh', relayDescription: freshDescription, paths, rounds: quick ? 2 : 10, idleMs: sporadicIdleMs }));
    }
    if (wanted('short')) {
      const commands = gpgLikeCommands(benchKey(agent).keygrips);
      log('short sessions with idle gaps, warm relays');
      add(
        await shortSessions({
          variant: 'warm',
          relayDescription: `${warmDescription} Each session after an idle gap of 5–50 ms (uniformly random).`,
          paths: await warmAgentPaths(),
          commands,
          rounds: quick ? 30 : 200,
          idleMs: () => 5 + Math.random() * 45,
        }),
      );
      log('short sessions, fresh relays');
      add(
        await shortSessions({
          variant: 'fresh',
          relayDescription: `${freshDescription} Each session after ${sporadicIdleMs} ms idle.`,
          paths: freshAgentPaths('short'),
          commands,
          rounds: quick ? 3 : 10,
          idleMs: () => sporadicIdleMs,
        }),
      );
    }
    if (wanted('bridge')) {
      log('bridge: gpg-agent over a link');
      const link = await startForwardRelay(relayDir, 'link', agent.socket);
      stops.push(link.stop);
      const pair = socat ? await startSocatPair(socat, relayDir, 'socat-pair', agent.socket) : undefined;
      if (pair) stops.push(pair.stop);
      for (const section of await bridgeLink({ agent, dir, link, baseline: pair, quick })) add({ section });
    }
    if (wanted('parallel')) {
      log('parallel signing: 32 gpg --detach-sign at once');
      const parallelDir = path.join(dir, 'parallel');
      fs.mkdirSync(parallelDir, { mode: 0o700 });
      for (const section of (await parallelSign({ dir: parallelDir, quick, nodeArgs, log })).sections) add({ section });
    }
  } finally {
    for (const stop of stops.reverse()) stop();
    // The proxies write their CPU profiles as they exit.
    await Promise.all(proxies.map((p) => p.exited));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  if (cpuProfDir) {
    const profiles: Section[] = [];
    for (const proxy of proxies) {
      const file = profileOf(cpuProfDir, proxy.pid);
      if (file) profiles.push(profileSection(file, proxy.label));
    }
    const text = ['# Where the proxy spends its time', '', ...machineDescription(), '', ...profiles.map(renderSection)].join('\n');
    fs.writeFileSync(profileFile, text);
    process.stdout.write(`${profiles.map(renderSection).join('\n')}\nprofiles summarized in ${path.relative(process.cwd(), profileFile)}\n`);
  }
  const full = ['# Benchmark results', '', ...machineDescription(), '', renderVerdicts(verdicts), ...sections.map(renderSection)].join('\n');
  // A partial run (BENCH_ONLY) updates its own sections in the last full report and leaves the rest as it was.
  const report = only && fs.existsSync(resultsFile) ? withSections(fs.readFileSync(resultsFile, 'utf8'), sections) : full;
  fs.writeFileSync(resultsFile, report);
  process.stdout.write(`${renderVerdicts(verdicts)}\nwritten to ${path.relative(process.cwd(), resultsFile)}\n`);
}

/** `report` with each of `sections` in place of the section of the same title (appended if it had none). */
function withSections(report: string, sections: Section[]): string {
  const blocks = report.split(/\n(?=## )/);
  for (const section of sections) {
    const text = renderSection(section).trimEnd();
    const at = blocks.findIndex((b) => b.startsWith(`## ${section.title}\n`));
    if (at >= 0) blocks[at] = text;
    else blocks.push(text);
  }
  const note = `- sections updated by a partial run (BENCH_ONLY=${process.env.BENCH_ONLY}) on ${new Date().toISOString()}: ${sections.map((s) => s.title).join('; ')}`;
  blocks[0] = `${blocks[0]!.trimEnd()}\n${note}\n`;
  return `${blocks.join('\n')}\n`;
}

await main();
