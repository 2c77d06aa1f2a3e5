#!/usr/bin/env node
/** `assuan-proxy`: relay a gpg-agent socket through per-session state machines. */
import { serverMachine } from '../machines/server.js';
import { sessionMachine } from '../machines/session.js';
import { flagOf, parseCommandLine, UsageError, USAGE, type CommandLine } from './commandLine.js';
import { InvalidOptionError, resolveConfig, type ProxyConfig } from './config.js';
import { createLogger } from './log.js';
import { clientEndMain, forwardCommand } from './bridge/commands.js';
import { packageVersion } from './packageFiles.js';
import { startProxy } from './server.js';
import { failureMessage, Watchers } from './watchers.js';

const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

async function main(argv: string[]): Promise<number> {
  ignoreOutputErrors();
  // The bridge's two ends (src/bridge/commands.ts).
  if (argv[0] === 'forward') return forwardCommand(argv.slice(1));
  if (argv[0] === 'client-end') return clientEndMain(argv.slice(1));
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
  const logger = createLogger({ level: commandLine.logLevel, ...(commandLine.logFormat ? { pretty: commandLine.logFormat === 'pretty' } : {}) });
  const watchers = new Watchers(commandLine);
  let config: ProxyConfig;
  try {
    config = resolveConfig({ ...commandLine.proxy, logger, ...(watchers.inspect ? { inspect: watchers.inspect } : {}) }, { optionName: flagOf });
  } catch (err) {
    if (err instanceof InvalidOptionError) return usageError(err.message);
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
  let proxy;
  try {
    await watchers.startInspector();
    proxy = await startProxy(config);
  } catch (err) {
    await watchers.close();
    process.stderr.write(`assuan-proxy: ${failureMessage(err)}\n`);
    return 1;
  }
  try {
    await watchers.startLiveView(proxy, [serverMachine, sessionMachine]);
  } catch (err) {
    await Promise.all([proxy.close(), watchers.close()]);
    process.stderr.write(`assuan-proxy: ${failureMessage(err)}\n`);
    return 1;
  }

  process.stderr.write(
    `assuan-proxy: listening on ${proxy.socketPath}\n` +
      `assuan-proxy: relaying to gpg-agent at ${proxy.upstreamPath}\n` +
      `Point a client at it:\n` +
      `  gpg-connect-agent -S ${proxy.socketPath}\n` +
      `  gpg, gpgsm: use a GNUPGHOME whose agent socket is this path, with no-autostart in gpg.conf and gpgsm.conf (see README)\n` +
      watchers.banner() +
      (config.restricted ? `Restricted: gpg-agent's extra-socket rules are enforced\n` : '') +
      `Stop with Ctrl-C, SIGTERM or SIGHUP.\n`,
  );

  const signal = await stopSignal;
  logger.info({ signal }, 'signal received');
  await proxy.close();
  await watchers.close();
  return 0;
}

/**
 * Our messages and log are for whoever reads them; a reader that has gone (`| head -1`: EPIPE) or a terminal
 * that has hung up (EIO) must not end the proxy, whose clients still need it. An unhandled stream error would.
 */
function ignoreOutputErrors(): void {
  for (const out of [process.stdout, process.stderr]) out.on('error', () => {});
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
