#!/usr/bin/env node
/** `assuan-proxy`: relay a gpg-agent socket through per-session state machines. */
import { parseArgs } from 'node:util';
import { serverMachine } from '../machines/server.js';
import { sessionMachine } from '../machines/session.js';
import { DEFAULT_INSPECTOR_PORT, startInspectorRelay, type InspectorRelay } from './inspect/relay.js';
import { streamToInspector, type InspectorStream } from './inspect/stately.js';
import { LiveActors } from './liveView/liveActors.js';
import { DEFAULT_UI_PORT, startLiveView, type LiveView } from './liveView/server.js';
import { ProxyStartError } from './listenSocket.js';
import { createLogger, isLogLevel, LOG_LEVELS } from './log.js';
import { combineObservers } from './machineTools/trace.js';
import { parseVerbs } from './policy.js';
import { DEFAULT_MAX_SESSIONS, startProxy } from './server.js';

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
  --drain-timeout MS       on SIGINT, SIGTERM or SIGHUP, time for commands in
                           flight to finish before the rest are closed
                           (default 10000)
  --idle-timeout MS        close a session (with ERR Timeout) whose client
                           sends no command this long after the greeting or
                           its last answer (default 60000)
  --inquiry-timeout MS     close a session whose client takes longer than
                           this to answer an INQUIRE, e.g. a passphrase typed
                           for a loopback pinentry (default 300000)
  --response-timeout MS    end a session whose agent does not start answering
                           a request in time, with ERR Timeout (default: off;
                           a signing may wait on a pinentry)
  --max-sessions N         sessions open at once (default ${DEFAULT_MAX_SESSIONS}); the next
                           connection gets ERR 67109047 Limit reached
  --restricted             enforce gpg-agent's extra-socket rules in the proxy:
                           forbidden commands get ERR 67109115 Forbidden and
                           never reach the agent (for forwarded sockets)
  --allow VERBS            only these commands reach the agent (comma-separated,
                           repeatable; BYE, NOP and RESET always do)
  --deny VERBS             these commands never reach the agent
  --log-level LEVEL        ${LOG_LEVELS.join('|')} (default info)
  --log-format FORMAT      pretty|json (default: pretty on a terminal, else json)
  --trace-transitions      log every state machine transition as one line
                           {session, from, event, to} (no payload)
  --inspect [URL]          stream every machine to the XState/Stately inspector
                           over WebSocket (events and context sanitized). With
                           no URL, a relay is started on 127.0.0.1: open the
                           page URL it prints, with its access token, in a
                           browser (see README)
  --inspect-port PORT      port of that relay (default ${DEFAULT_INSPECTOR_PORT}; 0 picks a free one)
  --ui [PORT]              serve the live view on http://127.0.0.1:PORT/
                           (default ${DEFAULT_UI_PORT}; loopback only, works offline;
                           open the URL it prints, with its access token)
  -h, --help               show this help
`;

const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

async function main(argv: string[]): Promise<number> {
  ignoreOutputErrors();
  let values;
  try {
    ({ values } = parseArgs({
      args: withOptionalValues(argv, ['--inspect', '--ui']),
      options: {
        listen: { type: 'string' },
        upstream: { type: 'string' },
        'connect-timeout': { type: 'string' },
        'greeting-timeout': { type: 'string' },
        'drain-timeout': { type: 'string' },
        'idle-timeout': { type: 'string' },
        'inquiry-timeout': { type: 'string' },
        'response-timeout': { type: 'string' },
        'max-sessions': { type: 'string' },
        restricted: { type: 'boolean' },
        allow: { type: 'string', multiple: true },
        deny: { type: 'string', multiple: true },
        'log-level': { type: 'string', default: 'info' },
        'log-format': { type: 'string' },
        'trace-transitions': { type: 'boolean' },
        inspect: { type: 'string' },
        'inspect-port': { type: 'string' },
        ui: { type: 'string' },
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
  let uiPort: number | undefined;
  let idleTimeoutMs: number | undefined;
  let inquiryTimeoutMs: number | undefined;
  let responseTimeoutMs: number | undefined;
  let maxSessions: number | undefined;
  let inspectUrl: string | null | undefined;
  let inspectPort = DEFAULT_INSPECTOR_PORT;
  try {
    connectTimeoutMs = milliseconds(values['connect-timeout'], '--connect-timeout');
    greetingTimeoutMs = milliseconds(values['greeting-timeout'], '--greeting-timeout');
    drainTimeoutMs = milliseconds(values['drain-timeout'], '--drain-timeout');
    idleTimeoutMs = milliseconds(values['idle-timeout'], '--idle-timeout');
    inquiryTimeoutMs = milliseconds(values['inquiry-timeout'], '--inquiry-timeout');
    responseTimeoutMs = milliseconds(values['response-timeout'], '--response-timeout');
    maxSessions = positiveInteger(values['max-sessions'], '--max-sessions');
    if (values.allow) parseVerbs(values.allow, '--allow');
    if (values.deny) parseVerbs(values.deny, '--deny');
    uiPort = optionalPort(values.ui, '--ui', DEFAULT_UI_PORT);
    inspectUrl = optionalWebSocketUrl(values.inspect);
    if (values['inspect-port'] !== undefined) {
      if (inspectUrl !== null) throw new Error('--inspect-port is the port of the relay --inspect starts when given no URL');
      inspectPort = optionalPort(values['inspect-port'], '--inspect-port', DEFAULT_INSPECTOR_PORT)!;
    }
  } catch (err) {
    return usageError((err as Error).message);
  }

  const logger = createLogger({ level, ...(format ? { pretty: format === 'pretty' } : {}) });
  // Handlers go in before anything is announced: a supervisor may signal the moment it reads "listening on",
  // and a signal that lands between that line and a later process.on() would kill us with the socket left behind.
  // A signal during startup is kept and acted on once startup has finished.
  // A terminal's Ctrl-C also reaches npm, which relays it: a repeated signal must not kill us mid-drain
  // (the server machine takes a repeated SHUTDOWN as a no-op).
  // SIGHUP is what an ssh session or terminal ending sends: a reason to stop cleanly, as SIGTERM is.
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    for (const signal of STOP_SIGNALS) process.on(signal, resolve);
  });
  // Observers are created only for the modes asked for: with neither, the actors are not inspected at all.
  const liveActors = uiPort !== undefined ? new LiveActors() : undefined;
  let relay: InspectorRelay | undefined;
  let inspector: InspectorStream | undefined;
  let liveView: LiveView | undefined;
  const closeViewers = async () => {
    inspector?.stop();
    await Promise.all([relay?.close(), liveView?.close()]);
  };
  let proxy;
  try {
    if (inspectUrl !== undefined) {
      if (inspectUrl === null) {
        relay = await startInspectorRelay(inspectPort).catch((err: unknown) => {
          const message = isPortInUse(err) ? 'the port is in use (choose another one, e.g. --inspect-port 0)' : startFailureMessage(err);
          throw new ProxyStartError(`cannot start the inspector relay on 127.0.0.1:${inspectPort}: ${message}`);
        });
      }
      inspector = streamToInspector(inspectUrl ?? relay!.streamUrl);
    }
    const inspect = combineObservers([inspector?.inspect, liveActors?.inspect]);
    proxy = await startProxy({
      ...(values.listen ? { listen: values.listen } : {}),
      ...(values.upstream ? { upstream: values.upstream } : {}),
      ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
      ...(greetingTimeoutMs !== undefined ? { greetingTimeoutMs } : {}),
      ...(drainTimeoutMs !== undefined ? { drainTimeoutMs } : {}),
      ...(idleTimeoutMs !== undefined ? { idleTimeoutMs } : {}),
      ...(inquiryTimeoutMs !== undefined ? { inquiryTimeoutMs } : {}),
      ...(responseTimeoutMs !== undefined ? { responseTimeoutMs } : {}),
      ...(maxSessions !== undefined ? { maxSessions } : {}),
      restricted: values.restricted ?? false,
      ...(values.allow ? { allow: values.allow } : {}),
      ...(values.deny ? { deny: values.deny } : {}),
      traceTransitions: values['trace-transitions'] ?? false,
      ...(inspect ? { inspect } : {}),
      logger,
    });
  } catch (err) {
    await closeViewers();
    process.stderr.write(`assuan-proxy: ${startFailureMessage(err)}\n`);
    return 1;
  }
  if (liveActors && uiPort !== undefined) {
    try {
      liveView = await startLiveView({ actors: liveActors, proxy, machines: [serverMachine, sessionMachine], port: uiPort });
    } catch (err) {
      await Promise.all([proxy.close(), closeViewers()]);
      process.stderr.write(`assuan-proxy: cannot serve the live view on 127.0.0.1:${uiPort}: ${startFailureMessage(err)}\n`);
      return 1;
    }
  }

  process.stderr.write(
    `assuan-proxy: listening on ${proxy.socketPath}\n` +
      `assuan-proxy: relaying to gpg-agent at ${proxy.upstreamPath}\n` +
      `Point a client at it:\n` +
      `  gpg-connect-agent -S ${proxy.socketPath}\n` +
      `  gpg: use a GNUPGHOME whose agent socket is this path, with no-autostart in gpg.conf (see README)\n` +
      (liveView ? `Live view: ${liveView.url}\n` : '') +
      (relay ? `Inspector: open ${relay.pageUrl} in a browser with internet access (the inspector UI is hosted by Stately)\n` : '') +
      (inspectUrl ? `Inspector: streaming to ${inspectUrl}\n` : '') +
      (values.restricted ? `Restricted: gpg-agent's extra-socket rules are enforced\n` : '') +
      `Stop with Ctrl-C, SIGTERM or SIGHUP.\n`,
  );

  const signal = await stopSignal;
  logger.info({ signal }, 'signal received');
  await proxy.close();
  await closeViewers();
  return 0;
}

/**
 * Our messages and log are for whoever reads them; a reader that has gone (`| head -1`: EPIPE) or a terminal
 * that has hung up (EIO) must not end the proxy, whose clients still need it. An unhandled stream error would.
 */
function ignoreOutputErrors(): void {
  for (const out of [process.stdout, process.stderr]) out.on('error', () => {});
}

function milliseconds(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  // Timers cannot exceed 2^31-1 ms (about 24.8 days); Node would fire a longer one at once.
  if (!Number.isInteger(value) || value <= 0 || value > 2 ** 31 - 1) throw new Error(`${flag} takes a positive whole number of milliseconds, not '${text}'`);
  return value;
}

function positiveInteger(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${flag} takes a positive whole number, not '${text}'`);
  return value;
}

/**
 * parseArgs has no optional option values: `--ui` alone and `--ui 9000` must both work. The word after such an
 * option is its value unless it is another option; with none, the value is empty (the default).
 */
function withOptionalValues(argv: string[], names: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    if (!names.includes(word)) {
      out.push(word);
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('-')) {
      out.push(`${word}=${next}`);
      i++;
    } else {
      out.push(`${word}=`);
    }
  }
  return out;
}

function optionalPort(text: string | undefined, flag: string, fallback: number): number | undefined {
  if (text === undefined) return undefined;
  if (text === '') return fallback;
  const port = Number(text);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${flag} takes a TCP port number, not '${text}'`);
  return port;
}

/** undefined: not asked for; null: asked for with no URL (start our relay); else the URL to stream to. */
function optionalWebSocketUrl(text: string | undefined): string | null | undefined {
  if (text === undefined) return undefined;
  if (text === '') return null;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`--inspect takes a ws:// or wss:// URL, not '${text}'`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new Error(`--inspect takes a ws:// or wss:// URL, not '${text}'`);
  return text;
}

function startFailureMessage(err: unknown): string {
  if (err instanceof ProxyStartError) return err.message;
  if (isPortInUse(err)) return 'the port is in use (choose another one)';
  return (err as Error).stack ?? String(err);
}

function isPortInUse(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
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
