#!/usr/bin/env node
/** `assuan-proxy`: relay a gpg-agent socket through per-session state machines. */
import { parseArgs } from 'node:util';
import { ProxyStartError } from './listenSocket.js';
import { createLogger, isLogLevel, LOG_LEVELS } from './log.js';
import { startProxy } from './server.js';

const USAGE = `Usage: assuan-proxy [options]

Listens on a Unix socket and relays the Assuan protocol to gpg-agent, one explicit
state machine per client connection.

Options:
  --listen PATH            socket to listen on (default: S.gpg-agent in a private
                           directory under $XDG_RUNTIME_DIR, else the temp dir)
  --upstream PATH          gpg-agent socket to relay to (default: the one
                           'gpgconf --list-dirs agent-socket' names; the agent is
                           started with 'gpgconf --launch gpg-agent' if needed)
  --connect-timeout MS     time to connect to the agent (default 5000)
  --greeting-timeout MS    time for the agent's greeting (default 5000)
  --drain-timeout MS       on SIGINT/SIGTERM, time for commands in flight to
                           finish before the rest are closed (default 10000)
  --log-level LEVEL        ${LOG_LEVELS.join('|')} (default info)
  --log-format FORMAT      pretty|json (default: pretty on a terminal, else json)
  --trace-transitions      log every state machine transition as one line
                           {session, from, event, to} (no payload)
  -h, --help               show this help
`;

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string' },
        upstream: { type: 'string' },
        'connect-timeout': { type: 'string' },
        'greeting-timeout': { type: 'string' },
        'drain-timeout': { type: 'string' },
        'log-level': { type: 'string', default: 'info' },
        'log-format': { type: 'string' },
        'trace-transitions': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`assuan-proxy: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const level = values['log-level'];
  if (!isLogLevel(level)) return usageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const format = values['log-format'];
  if (format !== undefined && format !== 'pretty' && format !== 'json') return usageError('--log-format must be pretty or json');
  let connectTimeoutMs: number | undefined;
  let greetingTimeoutMs: number | undefined;
  let drainTimeoutMs: number | undefined;
  try {
    connectTimeoutMs = milliseconds(values['connect-timeout'], '--connect-timeout');
    greetingTimeoutMs = milliseconds(values['greeting-timeout'], '--greeting-timeout');
    drainTimeoutMs = milliseconds(values['drain-timeout'], '--drain-timeout');
  } catch (err) {
    return usageError((err as Error).message);
  }

  const logger = createLogger({ level, ...(format ? { pretty: format === 'pretty' } : {}) });
  let proxy;
  try {
    proxy = await startProxy({
      ...(values.listen ? { listen: values.listen } : {}),
      ...(values.upstream ? { upstream: values.upstream } : {}),
      ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
      ...(greetingTimeoutMs !== undefined ? { greetingTimeoutMs } : {}),
      ...(drainTimeoutMs !== undefined ? { drainTimeoutMs } : {}),
      traceTransitions: values['trace-transitions'] ?? false,
      logger,
    });
  } catch (err) {
    const message = err instanceof ProxyStartError ? err.message : (err as Error).stack ?? String(err);
    process.stderr.write(`assuan-proxy: ${message}\n`);
    return 1;
  }

  process.stderr.write(
    `assuan-proxy: listening on ${proxy.socketPath}\n` +
      `assuan-proxy: relaying to gpg-agent at ${proxy.upstreamPath}\n` +
      `Point a client at it:\n` +
      `  gpg-connect-agent -S ${proxy.socketPath}\n` +
      `  gpg: use a GNUPGHOME whose agent socket is this path, with no-autostart in gpg.conf (see README)\n` +
      `Stop with Ctrl-C or SIGTERM.\n`,
  );

  return new Promise<number>((resolve) => {
    // A terminal's Ctrl-C also reaches npm, which relays it: a repeated signal must not kill us mid-drain
    // (the server machine takes a repeated SHUTDOWN as a no-op).
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'signal received');
      void proxy.close().then(() => resolve(0));
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

function milliseconds(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${flag} takes a positive whole number of milliseconds, not '${text}'`);
  return value;
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
