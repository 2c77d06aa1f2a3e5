/**
 * The bridge's two commands:
 *
 *   assuan-proxy forward [proxy options] [--remote-socket PATH] [--far-node PATH] [--client-end-code FILE] -- COMMAND…
 *     Runs here, beside gpg-agent: starts COMMAND (e.g. `ssh -T host`, `kubectl exec -i pod --`), which must run
 *     what is appended to it on the far side, and serves the sessions that come over it.
 *   assuan-proxy client-end [--listen PATH] [--link-wait MS] [--log-level LEVEL]
 *     Runs on the far side with the link on stdin/stdout; `forward` starts it there itself.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { parseCommandLine, flagOf, UsageError } from '../commandLine.js';
import { InvalidOptionError, resolveConfig } from '../config.js';
import { ProxyStartError } from '../listenSocket.js';
import { createLogger, isLogLevel, LOG_LEVELS } from '../log.js';
import { clientEndCode } from '../packageFiles.js';
import { AuditLog } from '../audit/auditLog.js';
import { startConsent } from '../consent/consentService.js';
import type { SessionConsent } from '../session/session.js';
import { checkUpstreamForPolicy, resolveKeys } from '../server.js';
import { agentSocketPath, resolveUpstream, type UpstreamTarget } from '../upstream/daemons.js';
import { linkMachine } from '../../machines/link.js';
import { sessionMachine } from '../../machines/session.js';
import { failureMessage, Watchers } from '../watchers.js';
import { startForward } from './agentEnd.js';
import { runClientEnd } from './clientEnd.js';

const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/** Flags `forward` takes beyond the proxy's, each with a value. */
const FORWARD_FLAGS = ['--remote-socket', '--far-node', '--client-end-code'] as const;

export const FORWARD_USAGE = `Usage: assuan-proxy forward [options] -- COMMAND [ARGS...]

Forwards this machine's gpg-agent to the far side of COMMAND, a command whose stdin and stdout reach the far
side (ssh -T HOST, kubectl exec -i POD --, docker exec -i CONTAINER). The words that start the far end (node
with a small loader; the code follows on stdin) are appended to COMMAND. Nothing needs to be installed there
but Node.js 20. Each connection there is one session here, under the same rules as a local client's.

Options (and the proxy's own: --restricted, --allow, --deny, timeouts, --max-sessions, --log-level,
--ui and --inspect, which show the link machine beside the sessions):
  --upstream PATH          the agent socket sessions go to (default: gpg-agent's extra
                           socket, which applies the agent's rules for remote use;
                           --restricted adds the proxy's own check of the same rules)
  --remote-socket PATH     where to listen on the far side (default: what
                           'gpgconf --list-dirs agent-socket' says there)
  --far-node PATH          the node to run on the far side (default: node)
  --client-end-code FILE   the code to run there (default: this package's
                           single-file build, dist/assuan-proxy.mjs)
`;

export async function forwardCommand(argv: readonly string[]): Promise<number> {
  const split = argv.indexOf('--');
  if (split < 0 || split === argv.length - 1) return usage('forward needs a transport command after --, e.g. forward -- ssh -T host');
  const transport = argv.slice(split + 1);
  const own: Record<string, string> = {};
  const rest: string[] = [];
  const words = argv.slice(0, split);
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    const flag = FORWARD_FLAGS.find((f) => word === f || word.startsWith(`${f}=`));
    if (!flag) {
      rest.push(word);
      continue;
    }
    const value = word.includes('=') ? word.slice(word.indexOf('=') + 1) : words[++i];
    if (value === undefined || value === '') return usage(`${flag} needs a value`);
    own[flag] = value;
  }
  let commandLine;
  try {
    commandLine = parseCommandLine(rest);
  } catch (err) {
    if (err instanceof UsageError) return usage(err.message);
    throw err;
  }
  if (commandLine.help) {
    process.stdout.write(FORWARD_USAGE);
    return 0;
  }
  if (commandLine.pairs.length > 1) return usage('forward relays to one upstream: give one --upstream');
  if (commandLine.check !== undefined) return usage('--check is a dry run of the policy: run it as assuan-proxy --check, not forward');
  if (commandLine.proxy.listen !== undefined) return usage('forward listens on the far side: use --remote-socket PATH');
  const logger = createLogger({ level: commandLine.logLevel, ...(commandLine.logFormat ? { pretty: commandLine.logFormat === 'pretty' } : {}) });
  const watchers = new Watchers(commandLine);
  let config;
  try {
    config = resolveConfig({ ...commandLine.proxy, logger, ...(watchers.inspect ? { inspect: watchers.inspect } : {}) }, { optionName: flagOf });
  } catch (err) {
    if (err instanceof InvalidOptionError) return usage(err.message);
    throw err;
  }
  let code: Buffer;
  let upstream: UpstreamTarget;
  let audit: AuditLog | undefined;
  let consent: SessionConsent | undefined;
  try {
    code = own['--client-end-code'] ? fs.readFileSync(own['--client-end-code']) : clientEndCode();
    // By default the agent's extra socket: the agent itself then runs forwarded sessions restricted.
    upstream = await resolveUpstream(config.upstream ?? 'agent-extra', config.env, { launch: config.launchAgent });
    await checkUpstreamForPolicy(config, upstream.path, upstream.daemon);
    await resolveKeys(config);
    audit = config.auditPath ? AuditLog.open(config.auditPath, logger) : undefined;
    consent = await startConsent(config.confirm, config.env, logger);
    await watchers.startInspector();
  } catch (err) {
    await watchers.close();
    process.stderr.write(`assuan-proxy: ${failureMessage(err)}\n`);
    return 1;
  }
  const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
    for (const signal of STOP_SIGNALS) process.on(signal, resolve);
  });
  const forward = startForward({
    transport,
    clientEndCode: code,
    clientEndArgs: ['client-end', '--log-level', commandLine.logLevel, ...(own['--remote-socket'] ? ['--listen', own['--remote-socket']] : [])],
    ...(own['--far-node'] ? { farNode: own['--far-node'] } : {}),
    config,
    upstream,
    audit,
    consent,
  });
  const upstreamPath = upstream.path;
  try {
    const farSide = `${own['--remote-socket'] ?? "gpg-agent's socket"} on the far side of ${transport[0]}`;
    await watchers.startLiveView({ socketPath: farSide, upstreamPath, sessions: () => forward.sessions() }, [linkMachine, sessionMachine]);
  } catch (err) {
    await Promise.all([forward.close(), watchers.close()]);
    process.stderr.write(`assuan-proxy: ${failureMessage(err)}\n`);
    return 1;
  }
  process.stderr.write(`assuan-proxy: forwarding gpg-agent at ${upstreamPath} over: ${transport.join(' ')}\n${watchers.banner()}Stop with Ctrl-C, SIGTERM or SIGHUP.\n`);
  const ended = await Promise.race([forward.done, stopSignal.then((signal) => signal)]);
  if (ended === 'failed') {
    await watchers.close();
    process.stderr.write(`assuan-proxy: the link failed: ${describeFailure(forward.failure())}\n`);
    return 1;
  }
  if (ended !== 'closed') logger.info({ signal: ended }, 'signal received');
  const result = await forward.close();
  await watchers.close();
  return result === 'failed' ? 1 : 0;
}

export async function clientEndMain(argv: readonly string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { listen: { type: 'string' }, 'link-wait': { type: 'string' }, 'log-level': { type: 'string', default: 'info' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return usage((err as Error).message);
  }
  const level = values['log-level'];
  if (!isLogLevel(level)) return usage(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const linkWaitMs = values['link-wait'] === undefined ? 10_000 : Number(values['link-wait']);
  if (!Number.isInteger(linkWaitMs) || linkWaitMs < 1) return usage(`--link-wait takes a positive whole number of milliseconds, not '${values['link-wait']}'`);
  // stdout is the link: the log goes to stderr, which the agent end relays into its own.
  const logger = createLogger({ level, destination: process.stderr }).child({ end: 'client' });
  let socketPath = values.listen;
  try {
    socketPath ??= await agentSocketPath(process.env, 'agent-socket');
  } catch (err) {
    logger.error((err instanceof ProxyStartError ? err.message : String(err)) + ' (give the path with --remote-socket)');
    return 1;
  }
  return runClientEnd({ socketPath, input: process.stdin, output: process.stdout, logger, linkWaitMs });
}

function describeFailure(failure: ReturnType<ReturnType<typeof startForward>['failure']>): string {
  if (!failure) return 'unknown';
  switch (failure.reason) {
    case 'spawnFailed':
      return `the transport command could not be started (${failure.code})`;
    case 'handshakeTimeout':
      return 'the far end did not answer in time (is node installed there? see the lines logged above)';
    case 'linkDown':
      return failure.cause;
    case 'pingTimeout':
      return 'the far end stopped answering';
    case 'refused':
      return `the far end cannot serve: ${failure.message}`;
  }
}

function usage(message: string): number {
  process.stderr.write(`assuan-proxy: ${message}\n\n${FORWARD_USAGE}`);
  return 2;
}
