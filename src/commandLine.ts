/**
 * The command line, read into values: `ProxyOptions` for the proxy (checked, and completed with the defaults, by
 * `resolveConfig`, like any caller's), and the CLI's own options (logging, the inspector, the live view), which
 * are checked here. No effect: the executable (cli.ts) acts on the result.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { expectedNumber, PROXY_DEFAULTS, type NumberOption, type ProxyOptions } from './config.js';
import { DEFAULT_INSPECTOR_PORT } from './inspect/relay.js';
import { DEFAULT_UI_PORT } from './liveView/server.js';
import { isLogLevel, LOG_LEVELS, type LogLevel } from './log.js';

export const USAGE = `Usage: assuan-proxy [options]
       assuan-proxy forward [options] -- COMMAND [ARGS...]   (see: assuan-proxy forward --help)
       assuan-proxy doctor [--listen PATH] [--upstream NAME|PATH] [--json]
       assuan-proxy audit FILE [--json]    (summarize an --audit file)
       assuan-proxy client-end [options]   (run by 'forward' on the far side)

Listens on a Unix socket and relays the Assuan protocol to gpg-agent (or dirmngr,
keyboxd, scdaemon), one explicit state machine per client connection. 'forward'
serves the same sessions to the far side of a command's stdio (ssh -T, kubectl
exec -i, docker exec -i). 'doctor' says why gpg through the proxy fails here.

Options:
  --listen PATH            socket to listen on (default: S.gpg-agent, or the
                           upstream daemon's socket name, in a private directory
                           under $XDG_RUNTIME_DIR, else the temp dir). Started
                           by systemd socket activation (LISTEN_FDS), the proxy
                           listens on the sockets it is given instead
  --upstream NAME|PATH     the daemon to relay to: agent (default), agent-extra,
                           dirmngr, keyboxd or scdaemon, found with 'gpgconf
                           --list-dirs' and started with 'gpgconf --launch' when
                           not running (at start, and again when a session finds
                           it gone); or a PATH (with a '/'): a socket, or a socket
                           file (%Assuan% redirect, Gpg4win's port+nonce file,
                           Cygwin/MSYS form), read again for every connection.
                           Repeat --listen/--upstream pairs to serve several
                           daemons from one process
  --connect-timeout MS     time to connect to the agent (default ${PROXY_DEFAULTS.connectTimeoutMs})
  --greeting-timeout MS    time for the agent's greeting (default ${PROXY_DEFAULTS.greetingTimeoutMs})
  --drain-timeout MS       on SIGINT, SIGTERM or SIGHUP, time for commands in
                           flight to finish before the rest are closed
                           (default ${PROXY_DEFAULTS.drainTimeoutMs})
  --idle-timeout MS        close a session (with ERR Timeout) whose client
                           sends no command this long after the greeting or
                           its last answer (default ${PROXY_DEFAULTS.idleTimeoutMs})
  --inquiry-timeout MS     close a session whose client takes longer than
                           this to answer an INQUIRE, e.g. a passphrase typed
                           for a loopback pinentry (default ${PROXY_DEFAULTS.inquiryTimeoutMs})
  --response-timeout MS    end a session whose agent does not start answering
                           a request in time, with ERR Timeout (default: off;
                           a signing may wait on a pinentry)
  --max-sessions N         sessions open at once (default ${PROXY_DEFAULTS.maxSessions}); the next
                           connection gets ERR 67109047 Limit reached
  --warm-up N              throwaway sessions run at start against a stand-in
                           agent, so the first real ones are fast (default
                           ${PROXY_DEFAULTS.warmUpSessions}, ~0.9 s; 0 skips it)
  --spare-connection       keep a connection to the agent dialed and greeted
                           ahead of the next client (taken by one session
                           only, and replaced); off by default: an idle spare
                           keeps gpg-agent from exiting on SIGTERM
  --restricted             enforce gpg-agent's extra-socket rules in the proxy:
                           forbidden commands get ERR 67109115 Forbidden and
                           never reach the agent (for forwarded sockets)
  --allow VERBS            only these commands reach the agent (comma-separated,
                           repeatable; BYE, NOP and RESET always do)
  --deny VERBS             these commands never reach the agent
  --keys KEYS              only these keys may be used or named (comma-separated,
                           repeatable): fingerprints (a primary key's allows
                           its subkeys), or keygrips written &GRIP. Commands
                           naming another key, listing keys, making or
                           importing keys, or reaching the card daemon get
                           ERR 67109115 Forbidden and never reach the agent
  --check-arguments        check what a command's arguments say, as gpg-agent
                           reads them: well-formed keygrips, SETHASH with a
                           known algorithm (not MD5) and a hash of exactly its
                           length, and only harmless OPTIONs (no loopback
                           pinentry-mode; display, ttyname, putenv, lc-*...
                           are answered OK and dropped: the pinentry stays the
                           user's). On with any of --allow, --deny, --keys,
                           --preset, --allow-option (not --restricted alone);
                           this turns the checks on alone
  --allow-option OPTS      OPTIONs sessions may set beyond those checks
                           (comma-separated, repeatable): NAME for any value,
                           NAME=VALUE for that one, e.g. pinentry-mode=loopback
                           or display
  --preset NAME            yubikey: through SCD only card reads (SERIALNO,
                           GETATTR, LEARN, READKEY, READCERT, GETINFO) and key
                           uses (SETDATA, PKSIGN, PKAUTH, PKDECRYPT); never
                           PASSWD, GENKEY, WRITEKEY, SETATTR, CHECKPIN, APDU...,
                           nor KEYTOCARD or GENKEY. Needs the agent's standard
                           socket upstream (its extra socket forbids SCD)
  --check [FILE]           dry run: for each line of a transcript (FILE, or
                           stdin), say whether the policy given (--restricted,
                           --allow, --deny, --keys, --check-arguments...)
                           relays or refuses it, and
                           which rule decided; 'S: ' lines are the agent's
                           (INQUIRE, OK, ERR), others the client's. Starts
                           nothing
  --confirm OPS            ask the person before each key use: sign, decrypt,
                           auth (SCD PKAUTH), or all (comma-separated). Shown
                           through their own pinentry (GET_CONFIRMATION on the
                           agent's standard socket) with who asks, the
                           operation, the key's user ID and the hash; refused
                           or unanswered, the use never reaches the agent
  --confirm-window OP=S    seconds an approval covers the same caller, key and
                           operation, e.g. sign=0,decrypt=300 (default 0: ask
                           every time)
  --confirm-timeout MS     time to answer a prompt (default ${PROXY_DEFAULTS.confirmTimeoutMs}); past it
                           the use is refused as not confirmed
  --confirm-socket PATH    the agent's standard socket, where prompts are shown
                           (default: gpgconf --list-dirs agent-socket)
  --max-crypto N           at most N key operations (PKSIGN, PKDECRYPT) at the
                           agent at once; the rest wait in arrival order
                           (default: no limit)
  --audit FILE             append one JSON line per command that uses or names
                           a key, and per refusal, to FILE (0600; never a
                           payload, passphrase or hash value); summarize it
                           with: assuan-proxy audit FILE
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
  -V, --version            print the version and exit
  -h, --help               show this help

Examples:
  assuan-proxy                               in front of this user's gpg-agent
  assuan-proxy --restricted --listen ~/fwd/S.gpg-agent
  assuan-proxy --upstream agent --upstream dirmngr      agent and dirmngr, at
                                             S.gpg-agent and S.dirmngr
  assuan-proxy --upstream /mnt/c/Users/me/AppData/Local/gnupg/S.gpg-agent
                                             Gpg4win's agent, from WSL
  assuan-proxy forward -- ssh -T host        the agent on a remote host
  assuan-proxy doctor                        check this host's setup

Exit status:
  0  stopped cleanly (SIGINT, SIGTERM, SIGHUP), or --help/--version
  1  could not start (the message says why), or doctor found a problem
  2  bad command line
`;

export interface ListenPair {
  listen?: string | undefined;
  upstream?: string | undefined;
}

/** A command line that cannot be run; the message is for the person who typed it. */
export class UsageError extends Error {}

export interface CommandLine {
  help: boolean;
  version: boolean;
  /** `--check [FILE]`: judge a transcript with the policy and exit; '-' (or no FILE) reads stdin. */
  check: string | undefined;
  /**
   * Only what was given: `resolveConfig` fills in the rest, as it does for any caller. Its listen and upstream are
   * the first pair's.
   */
  proxy: ProxyOptions;
  /** Each `--listen`/`--upstream` pair, in order: one proxy each, sharing the other options (at least one). */
  pairs: ListenPair[];
  logLevel: LogLevel;
  /** undefined: pretty on a terminal, JSON otherwise. */
  logFormat: 'pretty' | 'json' | undefined;
  /** undefined: no inspector; null: start our relay and stream to it; else the URL to stream to. */
  inspectUrl: string | null | undefined;
  inspectPort: number;
  /** undefined: no live view. */
  uiPort: number | undefined;
}

/** The flag of each proxy option the command line sets, so that an error names what the user typed. */
const PROXY_FLAGS: Partial<Record<keyof ProxyOptions, string>> = {
  listen: '--listen',
  upstream: '--upstream',
  connectTimeoutMs: '--connect-timeout',
  greetingTimeoutMs: '--greeting-timeout',
  drainTimeoutMs: '--drain-timeout',
  idleTimeoutMs: '--idle-timeout',
  inquiryTimeoutMs: '--inquiry-timeout',
  responseTimeoutMs: '--response-timeout',
  maxSessions: '--max-sessions',
  warmUpSessions: '--warm-up',
  spareConnection: '--spare-connection',
  restricted: '--restricted',
  allow: '--allow',
  deny: '--deny',
  keys: '--keys',
  checkArguments: '--check-arguments',
  allowOptions: '--allow-option',
  preset: '--preset',
  audit: '--audit',
  confirm: '--confirm',
  confirmWindow: '--confirm-window',
  confirmTimeoutMs: '--confirm-timeout',
  confirmSocket: '--confirm-socket',
  maxCrypto: '--max-crypto',
  traceTransitions: '--trace-transitions',
};

/** How messages name a proxy option: its flag. Give it to `resolveConfig`. */
export function flagOf(option: keyof ProxyOptions): string {
  return PROXY_FLAGS[option] ?? option;
}

/** Options that must be followed by a value, with what the value is (for the message when it is missing). */
const VALUE_NAMES: Readonly<Record<string, string>> = {
  listen: 'PATH',
  upstream: 'NAME|PATH',
  'connect-timeout': 'MS',
  'greeting-timeout': 'MS',
  'drain-timeout': 'MS',
  'idle-timeout': 'MS',
  'inquiry-timeout': 'MS',
  'response-timeout': 'MS',
  'max-sessions': 'N',
  'warm-up': 'N',
  allow: 'VERBS',
  deny: 'VERBS',
  keys: 'KEYS',
  'allow-option': 'OPTS',
  preset: 'NAME',
  audit: 'FILE',
  confirm: 'OPS',
  'confirm-window': 'OP=S',
  'confirm-timeout': 'MS',
  'confirm-socket': 'PATH',
  'max-crypto': 'N',
  'log-level': 'LEVEL',
  'log-format': 'FORMAT',
  'inspect-port': 'PORT',
};
/** Options whose value may be left out: `--ui` alone and `--ui 9000` both work. */
const OPTIONAL_VALUES = ['--inspect', '--ui', '--check'];

/** Every option the command line takes (the help text lists each; a test holds it to that). */
export const OPTIONS = {
  listen: { type: 'string', multiple: true },
  upstream: { type: 'string', multiple: true },
  'connect-timeout': { type: 'string' },
  'greeting-timeout': { type: 'string' },
  'drain-timeout': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'inquiry-timeout': { type: 'string' },
  'response-timeout': { type: 'string' },
  'max-sessions': { type: 'string' },
  'warm-up': { type: 'string' },
  'spare-connection': { type: 'boolean' },
  restricted: { type: 'boolean' },
  allow: { type: 'string', multiple: true },
  deny: { type: 'string', multiple: true },
  keys: { type: 'string', multiple: true },
  'check-arguments': { type: 'boolean' },
  'allow-option': { type: 'string', multiple: true },
  preset: { type: 'string' },
  audit: { type: 'string' },
  confirm: { type: 'string', multiple: true },
  'confirm-window': { type: 'string', multiple: true },
  'confirm-timeout': { type: 'string' },
  'confirm-socket': { type: 'string' },
  'max-crypto': { type: 'string' },
  check: { type: 'string' },
  'log-level': { type: 'string', default: 'info' },
  'log-format': { type: 'string' },
  'trace-transitions': { type: 'boolean' },
  inspect: { type: 'string' },
  'inspect-port': { type: 'string' },
  ui: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export function parseCommandLine(argv: readonly string[]): CommandLine {
  let values;
  try {
    ({ values } = parseArgs({
      args: withOptionalValues(withRequiredValues(argv), OPTIONAL_VALUES),
      options: OPTIONS,
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }

  const logLevel = values['log-level'];
  if (!isLogLevel(logLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = values['log-format'];
  if (logFormat !== undefined && logFormat !== 'pretty' && logFormat !== 'json') throw new UsageError('--log-format must be pretty or json');
  const inspectUrl = optionalWebSocketUrl(values.inspect);
  let inspectPort = DEFAULT_INSPECTOR_PORT;
  if (values['inspect-port'] !== undefined) {
    if (inspectUrl !== null) throw new UsageError('--inspect-port is the port of the relay --inspect starts when given no URL');
    inspectPort = optionalPort(values['inspect-port'], '--inspect-port', DEFAULT_INSPECTOR_PORT)!;
  }

  const pairs = listenPairs(values.listen ?? [], values.upstream ?? []);
  return {
    help: values.help ?? false,
    version: values.version ?? false,
    check: values.check === undefined ? undefined : values.check || '-',
    pairs,
    proxy: {
      listen: pairs[0]!.listen,
      upstream: pairs[0]!.upstream,
      // As --help says: with no --upstream, the agent gpgconf names is started if it is not running.
      launchAgent: true,
      connectTimeoutMs: numberValue(values['connect-timeout'], 'connectTimeoutMs'),
      greetingTimeoutMs: numberValue(values['greeting-timeout'], 'greetingTimeoutMs'),
      drainTimeoutMs: numberValue(values['drain-timeout'], 'drainTimeoutMs'),
      idleTimeoutMs: numberValue(values['idle-timeout'], 'idleTimeoutMs'),
      inquiryTimeoutMs: numberValue(values['inquiry-timeout'], 'inquiryTimeoutMs'),
      responseTimeoutMs: numberValue(values['response-timeout'], 'responseTimeoutMs'),
      maxSessions: numberValue(values['max-sessions'], 'maxSessions'),
      warmUpSessions: numberValue(values['warm-up'], 'warmUpSessions'),
      ...(values['spare-connection'] ? { spareConnection: true } : {}),
      restricted: values.restricted,
      allow: values.allow,
      deny: values.deny,
      keys: values.keys,
      checkArguments: values['check-arguments'],
      allowOptions: values['allow-option'],
      preset: values.preset,
      audit: values.audit,
      confirm: values.confirm,
      confirmWindow: values['confirm-window'],
      confirmTimeoutMs: numberValue(values['confirm-timeout'], 'confirmTimeoutMs'),
      confirmSocket: values['confirm-socket'],
      maxCrypto: numberValue(values['max-crypto'], 'maxCrypto'),
      traceTransitions: values['trace-transitions'],
    },
    logLevel,
    logFormat,
    inspectUrl,
    inspectPort,
    uiPort: optionalPort(values.ui, '--ui', DEFAULT_UI_PORT),
  };
}

/**
 * One proxy per `--upstream`, each with the `--listen` in the same position (or, with no --listen at all, the
 * default path named after its daemon: S.dirmngr in front of dirmngr).
 */
function listenPairs(listens: readonly string[], upstreams: readonly string[]): ListenPair[] {
  if (upstreams.length <= 1 && listens.length <= 1) return [{ listen: listens[0], upstream: upstreams[0] }];
  if (listens.length > 0 && listens.length !== upstreams.length) {
    throw new UsageError(
      `give one --listen per --upstream, in the same order (or none, for the default paths): ${listens.length} --listen for ${upstreams.length} --upstream`,
    );
  }
  const pairs = upstreams.map((upstream, i) => ({ listen: listens[i], upstream }));
  const seen = new Set<string>();
  for (const { upstream } of pairs) {
    if (seen.has(upstream)) throw new UsageError(`--upstream ${upstream} is given twice`);
    seen.add(upstream);
  }
  return pairs;
}

/**
 * Text to number, and nothing more: whether the number will do is `resolveConfig`'s to say. Text that is no
 * number at all gets the same message it would.
 */
function numberValue(text: string | undefined, option: NumberOption): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || Number.isNaN(value)) throw new UsageError(`${flagOf(option)} takes ${expectedNumber(option)}, not '${text}'`);
  return value;
}

/**
 * parseArgs takes the word after `--connect-timeout` as its value only if it does not start with '-', and
 * otherwise reports an "ambiguous" argument in its own terms. Here a negative number is taken as the value (its
 * check then says what the option takes), and a missing value is reported in ours.
 */
function withRequiredValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    const valueName = word.startsWith('--') ? VALUE_NAMES[word.slice(2)] : undefined;
    if (valueName === undefined) {
      out.push(word);
      continue;
    }
    const next = argv[i + 1];
    if (next === undefined) throw new UsageError(`${word} needs a value: ${word} ${valueName}`);
    if (next.startsWith('-') && !/^-[0-9.]/.test(next)) {
      throw new UsageError(`${word} needs a value: ${word} ${valueName} (write ${word}=${next} if '${next}' is meant as its value)`);
    }
    out.push(`${word}=${next}`);
    i++;
  }
  return out;
}

/**
 * parseArgs has no optional option values: `--ui` alone and `--ui 9000` must both work. The word after such an
 * option is its value unless it is another option; with none, the value is empty (the default).
 */
function withOptionalValues(argv: readonly string[], names: readonly string[]): string[] {
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
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`${flag} takes a TCP port number, not '${text}'`);
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
    throw new UsageError(`--inspect takes a ws:// or wss:// URL, not '${text}'`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new UsageError(`--inspect takes a ws:// or wss:// URL, not '${text}'`);
  return text;
}
