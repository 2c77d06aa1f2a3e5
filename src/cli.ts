#!/usr/bin/env node
/** `assuan-proxy`: relay a gpg-agent socket through per-session state machines. */
import fs from 'node:fs';
import { serverMachine } from '../machines/server.js';
import { sessionMachine } from '../machines/session.js';
import { flagOf, parseCommandLine, UsageError, USAGE, type CommandLine, type ListenPair } from './commandLine.js';
import { InvalidOptionError, resolveConfig, type ProxyConfig } from './config.js';
import { createLogger } from './log.js';
import { clientEndMain, forwardCommand } from './bridge/commands.js';
import { packageVersion } from './packageFiles.js';
import { auditMain } from './audit/summary.js';
import { doctorMain } from './doctor.js';
import type { LiveViewSource } from './liveView/server.js';
import { checkTranscript, formatVerdicts } from './policyCheck.js';
import { resolveKeys, startProxy, type RunningProxy } from './server.js';
import { SocketActivationError, takeActivatedSockets } from './socketActivation.js';
import { failureMessage, Watchers } from './watchers.js';

const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

async function main(argv: string[]): Promise<number> {
  ignoreOutputErrors();
  // The bridge's two ends (src/bridge/commands.ts).
  if (argv[0] === 'forward') return forwardCommand(argv.slice(1));
  if (argv[0] === 'client-end') return clientEndMain(argv.slice(1));
  if (argv[0] === 'doctor') return doctorMain(argv.slice(1));
  if (argv[0] === 'audit') return auditMain(argv.slice(1));
  let commandLine: CommandLine;
  try {
    commandLine = parseCommandLine(argv);
  } catch (err) {
    if (err instanceof UsageError) return usageError(err.message);
    throw err;
  }
  if (commandLine.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (commandLine.version) {
    process.stdout.write(`assuan-proxy ${packageVersion()}\n`);
    return 0;
  }
  if (commandLine.check !== undefined) return checkMain(commandLine);
  const logger = createLogger({ level: commandLine.logLevel, ...(commandLine.logFormat ? { pretty: commandLine.logFormat === 'pretty' } : {}) });
  const watchers = new Watchers(commandLine);
  let configs: ProxyConfig[];
  try {
    const listenFds = activatedListeners(commandLine.pairs);
    const several = commandLine.pairs.length > 1;
    configs = commandLine.pairs.map((pair, i) =>
      resolveConfig(
        {
          ...commandLine.proxy,
          ...(listenFds ? { listen: undefined, listenFd: listenFds[i]! } : { listen: pair.listen }),
          upstream: pair.upstream,
          ...(several ? { name: pair.upstream!.includes('/') ? `upstream${i + 1}` : pair.upstream! } : {}),
          logger,
          ...(watchers.inspect ? { inspect: watchers.inspect } : {}),
        },
        { optionName: flagOf },
      ),
    );
    const paths = configs.filter((c) => c.listenFd === undefined).map((c) => c.listenPath);
    const twice = paths.find((p, i) => paths.indexOf(p) !== i);
    if (twice) return usageError(`two upstreams would listen on ${twice}: give each its own --listen`);
  } catch (err) {
    if (err instanceof InvalidOptionError || err instanceof UsageError || err instanceof SocketActivationError) return usageError(err.message);
    throw err;
  }
  // Handlers go in before anything is announced: a supervisor may signal the moment it reads "listening on",
  // and a signal that lands between that line and a later process.on() would kill us with the socket left behind.
  // A signal during startup is kept and acted on once startup has finished.
  // A terminal's Ctrl-C also reaches npm, which relays it: a repeated signal must not kill us mid-drain
  // (the server machine takes a repeated SHUTDOWN as a no-op).
  // SIGHUP is what an ssh session or terminal ending sends: a reason to stop cleanly, as SIGTERM is.
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    for (const signal of STOP_SIGNALS) process.on(signal, resolve);
  });
  const proxies: RunningProxy[] = [];
  const closeAll = () => Promise.all([...proxies.map((proxy) => proxy.close()), watchers.close()]);
  try {
    await watchers.startInspector();
    for (const config of configs) proxies.push(await startProxy(config));
    await watchers.startLiveView(combinedSource(proxies), [serverMachine, sessionMachine]);
  } catch (err) {
    await closeAll();
    process.stderr.write(`assuan-proxy: ${failureMessage(err)}\n`);
    return 1;
  }

  const first = proxies[0]!;
  process.stderr.write(
    proxies
      .map(
        (proxy, i) =>
          `assuan-proxy: listening on ${proxy.socketPath}${configs[i]!.listenFd !== undefined ? ' (socket-activated)' : ''}\n` +
          `assuan-proxy: relaying to ${proxy.upstreamDaemon} at ${proxy.upstreamPath}\n`,
      )
      .join('') +
      `Point a client at it:\n` +
      `  gpg-connect-agent -S ${first.socketPath}\n` +
      `  gpg, gpgsm: use a GNUPGHOME whose agent socket is this path, with no-autostart in gpg.conf and gpgsm.conf (see README)\n` +
      watchers.banner() +
      (configs.some((c) => c.restricted) ? `Restricted: gpg-agent's extra-socket rules are enforced\n` : '') +
      `Stop with Ctrl-C, SIGTERM or SIGHUP.\n`,
  );

  const signal = await stopSignal;
  logger.info({ signal }, 'signal received');
  await closeAll();
  return 0;
}

/**
 * Under systemd socket activation, the listening socket of each pair: matched by the socket's name
 * (FileDescriptorName=dirmngr) where the names say, else in order. Undefined when not socket-activated.
 */
function activatedListeners(pairs: readonly ListenPair[]): number[] | undefined {
  const sockets = takeActivatedSockets(process.env);
  if (!sockets) return undefined;
  if (pairs.some((pair) => pair.listen !== undefined)) {
    throw new UsageError('started by systemd socket activation: the sockets come from systemd (ListenStream=); drop --listen');
  }
  if (sockets.length !== pairs.length) {
    throw new UsageError(`systemd passed ${sockets.length} listening socket(s) for ${pairs.length} upstream(s): give one --upstream per socket`);
  }
  const byName = pairs.map((pair) => sockets.find((socket) => socketNameMatches(socket.name, pair.upstream ?? 'agent')));
  const allNamed = byName.every((socket) => socket !== undefined) && new Set(byName).size === pairs.length;
  return (allNamed ? byName : sockets).map((socket) => socket!.fd);
}

function socketNameMatches(socketName: string, upstream: string): boolean {
  return socketName === upstream || (upstream === 'agent' && socketName === 'gpg-agent');
}

/** What the live view shows of several proxies: all their sessions, every path. */
function combinedSource(proxies: readonly RunningProxy[]): LiveViewSource {
  return {
    socketPath: proxies.map((p) => p.socketPath).join(', '),
    upstreamPath: proxies.map((p) => p.upstreamPath).join(', '),
    sessions: () => proxies.flatMap((p) => p.sessions()),
  };
}

/**
 * Our messages and log are for whoever reads them; a reader that has gone (`| head -1`: EPIPE) or a terminal
 * that has hung up (EIO) must not end the proxy, whose clients still need it. An unhandled stream error would.
 */
function ignoreOutputErrors(): void {
  for (const out of [process.stdout, process.stderr]) out.on('error', () => {});
}

/** `--check`: the policy over a transcript, printed line by line; nothing is started. */
async function checkMain(commandLine: CommandLine): Promise<number> {
  let config: ProxyConfig;
  try {
    config = resolveConfig({ ...commandLine.proxy, logger: createLogger({ level: 'warn', destination: process.stderr }) }, { optionName: flagOf });
  } catch (err) {
    if (err instanceof InvalidOptionError) return usageError(err.message);
    throw err;
  }
  let transcript: Buffer;
  try {
    await resolveKeys(config);
    transcript = commandLine.check === '-' ? await readAll(process.stdin) : await fs.promises.readFile(commandLine.check!);
  } catch (err) {
    process.stderr.write(`assuan-proxy: ${failureMessage(err)}\n`);
    return 1;
  }
  process.stdout.write(formatVerdicts(checkTranscript(transcript, config.policy, config.confirm?.operations)));
  return 0;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function usageError(message: string): number {
  process.stderr.write(`assuan-proxy: ${message}\n\n${USAGE}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`assuan-proxy: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
