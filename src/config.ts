/**
 * The proxy's options, checked and completed once. `resolveConfig` turns what a caller or the command line gives
 * (`ProxyOptions`) into a frozen `ProxyConfig` with every default filled in and the command policy built, or
 * throws an `InvalidOptionError` naming the option. The CLI and `startProxy` both go through it, so their defaults
 * cannot drift apart and nothing is checked twice.
 *
 * Finding the agent's socket is not part of it: with no `upstream`, `startProxy` asks gpgconf when it starts
 * (src/upstream.ts), and launches gpg-agent only if `launchAgent` says so. Keeping that out keeps this step synchronous and free of effects,
 * so a bad option is reported before anything is started, and the rules here can be tested without GnuPG.
 */
import type { Logger } from 'pino';
import type { InspectionEvent, Observer } from 'xstate';
import { defaultListenPath, ProxyStartError } from './listenSocket.js';
import { defaultLogger } from './log.js';
import { checkUpstreamSpec, listenNameFor } from './upstream/daemons.js';
import { checkKeyEntries, KeyAllowList, KeyAllowListError } from './keyAllowList.js';
import { ArgumentCheckError, parseAllowedOptions, PRESETS, type Preset } from './argumentChecks.js';
import { createCommandPolicy, PolicyError, type CommandPolicy } from './policy.js';
import type { SessionOptions, SessionSummary, SessionTimeouts } from './session/session.js';
import { ConsentOptionError, parseConsentOperations, parseConsentWindows } from './consent/consentOptions.js';
import type { ConsentOperation } from './consent/consentRequest.js';
import type { ShowPrompt } from './consent/consentDesk.js';

export interface ProxyOptions {
  /** Socket to listen on. Default: S.gpg-agent in a private directory under $XDG_RUNTIME_DIR or the temp dir. */
  listen?: string;
  /**
   * A listening socket handed over already bound (systemd socket activation: its file descriptor). In place of
   * `listen`; the socket file is its owner's, and is left in place when the proxy stops.
   */
  listenFd?: number;
  /**
   * The daemon to relay to: `agent` (the default), `agent-extra`, `dirmngr`, `keyboxd` or `scdaemon`, found with
   * gpgconf (and started if `launchAgent`), or a path (with a '/'): a socket, or a socket file (a `%Assuan%`
   * redirect, or the Windows or Cygwin form of Gpg4win and MSYS), read again for every connection.
   */
  upstream?: string;
  /** Names this proxy's sessions (`NAME-1`, …) where one process runs several; default: plain numbers. */
  name?: string;
  /**
   * With no `upstream`: start gpg-agent (`gpgconf --launch gpg-agent`, in the GNUPGHOME of `env`) if it is not
   * running. Default false, so that embedding the proxy never starts an agent nobody asked for; the CLI passes true.
   */
  launchAgent?: boolean;
  /** Milliseconds to connect to the agent (default 5000). */
  connectTimeoutMs?: number;
  /** Milliseconds for the agent's greeting once connected (default 5000). */
  greetingTimeoutMs?: number;
  /**
   * Milliseconds a session may wait for the client's next complete command (after the greeting, or after the last
   * answer) before the client gets `ERR … Timeout` and the session is closed (default 60000).
   */
  idleTimeoutMs?: number;
  /**
   * Milliseconds a client may take to finish answering an INQUIRE (a person typing a passphrase for a loopback
   * pinentry) before it gets `ERR … Timeout` and the session is closed (default 300000).
   */
  inquiryTimeoutMs?: number;
  /**
   * Milliseconds the agent may take to start answering a request before the client gets `ERR … Timeout` and the
   * session ends. Off by default: a signing may wait on a pinentry for as long as the user takes.
   */
  responseTimeoutMs?: number;
  /** Sessions open at once (default 256); a connection past it gets `ERR 67109047 Limit reached` and is closed. */
  maxSessions?: number;
  /**
   * Run every session as gpg-agent's extra socket would: the agent itself is told the connection is remote
   * (`OPTION pretend-request-origin=remote`), and the proxy enforces the same rules as a second layer (see README).
   */
  restricted?: boolean;
  /** Only these command verbs reach the agent (BYE, NOP and RESET always do). */
  allow?: readonly string[];
  /** These command verbs never reach the agent. */
  deny?: readonly string[];
  /**
   * Only these keys may be used or named: keygrips (`&GRIP`) or fingerprints (resolved to keygrips with gpg at
   * start). Commands naming another key, listing keys, making or importing keys, or reaching the card daemon are
   * refused with ERR Forbidden and never reach the agent.
   */
  keys?: readonly string[];
  /**
   * Check the arguments of what sessions send (keygrips, SETHASH algorithm and length, OPTION names and values;
   * src/argumentChecks.ts), refusing with ERR Forbidden. On by itself whenever any of allow, deny, keys, preset or
   * allowOptions is given (not restricted alone, which answers as the extra socket does); this turns them on alone.
   */
  checkArguments?: boolean;
  /**
   * OPTIONs sessions may set beyond the argument checks' defaults: `NAME` (any value) or `NAME=VALUE`, e.g.
   * `pinentry-mode=loopback` or `display`. Turns the argument checks on.
   */
  allowOptions?: readonly string[];
  /**
   * `yubikey`: through SCD only read-only card queries and uses of card keys; no KEYTOCARD or GENKEY. Needs the
   * agent's standard socket as upstream (its extra socket, and restricted, forbid SCD), and no keys (which refuses
   * SCD). Turns the argument checks on.
   */
  preset?: string;
  /**
   * Append one JSON line per command outcome that touches a key, and per policy refusal, to this file (created
   * 0600; never a payload, passphrase or hash value). `assuan-proxy audit FILE` summarizes it.
   */
  audit?: string;
  /**
   * Key uses the person must approve first: `sign` (PKSIGN), `decrypt` (PKDECRYPT), `auth` (SCD PKAUTH), or `all`;
   * the card's PKSIGN and PKDECRYPT through SCD count as sign and decrypt. Each is held before it reaches the agent
   * and shown through the person's own pinentry (GET_CONFIRMATION on the agent's standard socket).
   */
  confirm?: readonly string[];
  /** Seconds an approval covers the same caller, key and operation: `sign=0,decrypt=300` (default 0: ask every time). */
  confirmWindow?: readonly string[];
  /** Milliseconds the person has to answer a prompt before the use is refused as not confirmed (default 60000). */
  confirmTimeoutMs?: number;
  /** The agent's standard socket, where prompts are shown (default: gpgconf --list-dirs agent-socket). */
  confirmSocket?: string;
  /** For embedding: how to ask the person (default: through the agent's pinentry). */
  confirmPrompt?: ShowPrompt;
  /**
   * At most this many key operations (PKSIGN, PKDECRYPT) of the sessions at the upstream at once; the rest wait in
   * arrival order. Default: no limit.
   */
  maxCrypto?: number;
  /** Milliseconds a closing session waits for its peers to close before cutting them (default 2000). */
  closeGraceMs?: number;
  /** Milliseconds commands in flight may take to finish after close() or a signal (default 10000). */
  drainTimeoutMs?: number;
  /**
   * Throwaway sessions run at start, over the proxy's own sockets against a stand-in agent, so that the first
   * real sessions of a fresh proxy run compiled code (default 300, about 0.9 s at start; 0 skips it, e.g. where the
   * proxy is started by the first connection).
   */
  warmUpSessions?: number;
  /**
   * Keep one connection to the agent dialed and greeted ahead of the next client, so that a session skips the dial
   * and the wait for the greeting (default false). Never reused: each is taken by one session and replaced. Off by
   * default: gpg-agent waits for its last connection before it exits on SIGTERM, and an idle spare is one.
   */
  spareConnection?: boolean;
  /**
   * Default: as the CLI's, `info` JSON lines on stdout (formatted on a terminal): one line per session and per
   * refusal, never a payload. Pass `pino({ level: 'silent' })` for none.
   */
  logger?: Logger;
  /**
   * Called once per session as it ends, with what the `session ended` log line holds (outcome, failure, duration,
   * commands, refusals, bytes; never a payload). An exception it throws is logged, not raised.
   */
  onSessionEnd?: (summary: SessionSummary) => void;
  /** Receives every actor's inspection events (transition traces, inspectors). */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Log every transition of every actor as one info line `{session, from, event, to}` (no payload). */
  traceTransitions?: boolean;
  /** A clock for the machines' timers (tests use XState's SimulatedClock). */
  clock?: SessionOptions['clock'];
  /** Environment used to find the agent with gpgconf and the default listen directory (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

/** Everything the proxy runs with, every default applied. Made only by `resolveConfig`; frozen. */
export interface ProxyConfig {
  /** The socket path asked for (its directory is checked, and the socket bound, when the proxy starts). */
  readonly listenPath: string;
  /** A socket bound by someone else (systemd), listened on in place of listenPath. */
  readonly listenFd: number | undefined;
  /** The daemon's name or path as given, or undefined (the agent): resolved when the proxy starts. */
  readonly upstream: string | undefined;
  readonly name: string | undefined;
  /** With no upstream: launch gpg-agent with gpgconf if it is not running. */
  readonly launchAgent: boolean;
  readonly timeouts: Readonly<SessionTimeouts>;
  readonly drainTimeoutMs: number;
  readonly maxSessions: number;
  /** Pipelined client input held while a command is in flight, before the client is paused. */
  readonly maxBufferedClientBytes: number;
  /** Ask the agent to run each connection restricted (the policy below enforces the same rules too). */
  readonly restricted: boolean;
  readonly warmUpSessions: number;
  readonly spareConnection: boolean;
  /** Built once from restricted/allow/deny/keys and the argument checks; undefined relays every command. */
  readonly policy: CommandPolicy | undefined;
  /** Whether the policy checks arguments (any policy option, or checkArguments). */
  readonly checkArguments: boolean;
  readonly preset: Preset | undefined;
  /** The key allow-list the policy reads; its fingerprints are turned into keygrips when the proxy starts. */
  readonly keys: KeyAllowList | undefined;
  /** The audit file, opened when the proxy starts. */
  readonly auditPath: string | undefined;
  /** Consent prompts (`--confirm`), if asked for: which uses, the windows, where prompts are shown. */
  readonly confirm: ConsentConfig | undefined;
  /** Key operations at the upstream at once (`--max-crypto`); undefined: no limit. */
  readonly maxCrypto: number | undefined;
  readonly logger: Logger;
  readonly onSessionEnd: ((summary: SessionSummary) => void) | undefined;
  readonly inspect: Observer<InspectionEvent> | ((event: InspectionEvent) => void) | undefined;
  readonly traceTransitions: boolean;
  readonly clock: SessionOptions['clock'] | undefined;
  readonly env: NodeJS.ProcessEnv;
}

export interface ConsentConfig {
  readonly operations: ReadonlySet<ConsentOperation>;
  readonly windows: Readonly<Partial<Record<ConsentOperation, number>>>;
  /** The agent's standard socket as given; undefined: found with gpgconf when the proxy starts. */
  readonly socket: string | undefined;
  readonly prompt: ShowPrompt | undefined;
}

/** The defaults, in one place: the CLI's help text is written from these too. */
export const PROXY_DEFAULTS = Object.freeze({
  connectTimeoutMs: 5_000,
  greetingTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  inquiryTimeoutMs: 300_000,
  closeGraceMs: 2_000,
  drainTimeoutMs: 10_000,
  confirmTimeoutMs: 60_000,
  maxSessions: 256,
  maxBufferedClientBytes: 64 * 1024,
  warmUpSessions: 300,
  spareConnection: false,
});

/** An option whose value cannot be used; the message names the option as the caller spells it. */
export class InvalidOptionError extends ProxyStartError {
  constructor(
    readonly option: keyof ProxyOptions,
    message: string,
  ) {
    super(message);
  }
}

export interface ResolveConfigOptions {
  /** How errors name an option (the CLI names its flags, e.g. `--connect-timeout`); default: the option's key. */
  optionName?: (option: keyof ProxyOptions) => string;
}

/** Timers cannot exceed 2^31-1 ms (about 24.8 days); Node would fire a longer one at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const MILLISECONDS = { what: 'a positive whole number of milliseconds', min: 1, max: MAX_TIMER_MS };

/** The options that take a number, and what each must be. */
const NUMBER_RULES = {
  connectTimeoutMs: MILLISECONDS,
  greetingTimeoutMs: MILLISECONDS,
  idleTimeoutMs: MILLISECONDS,
  inquiryTimeoutMs: MILLISECONDS,
  responseTimeoutMs: MILLISECONDS,
  closeGraceMs: MILLISECONDS,
  drainTimeoutMs: MILLISECONDS,
  confirmTimeoutMs: MILLISECONDS,
  maxSessions: { what: 'a positive whole number', min: 1, max: Number.MAX_SAFE_INTEGER },
  warmUpSessions: { what: 'a whole number of sessions from 0 to 10000', min: 0, max: 10_000 },
  maxCrypto: { what: 'a whole number of operations from 1 to 1024', min: 1, max: 1024 },
} as const satisfies Partial<Record<keyof ProxyOptions, { what: string; min: number; max: number }>>;

export type NumberOption = keyof typeof NUMBER_RULES;

/** What a number option takes, in words ("a positive whole number of milliseconds"), for messages. */
export function expectedNumber(option: NumberOption): string {
  return NUMBER_RULES[option].what;
}

const configs = new WeakSet<ProxyConfig>();

/**
 * Checks `options` and fills in every default. A config given back is returned as it is, so that callers may
 * pass either to `startProxy`.
 */
export function resolveConfig(options: ProxyOptions | ProxyConfig = {}, resolveOptions: ResolveConfigOptions = {}): ProxyConfig {
  if (isProxyConfig(options)) return options;
  const name = resolveOptions.optionName ?? ((option) => option);
  const positive = (option: NumberOption, value: unknown, fallback: number): number => {
    if (value === undefined) return fallback;
    const { min, max } = NUMBER_RULES[option];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new InvalidOptionError(option, `${name(option)} takes ${expectedNumber(option)}, not '${String(value)}'`);
    }
    return value;
  };
  const path = (option: 'listen' | 'upstream' | 'audit' | 'confirmSocket', value: unknown): string | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value === '') throw new InvalidOptionError(option, `${name(option)} takes ${option === 'audit' ? 'a file path' : 'a socket path'}, not '${String(value)}'`);
    const problem = option === 'upstream' ? checkUpstreamSpec(value) : undefined;
    if (problem) throw new InvalidOptionError(option, `${name(option)} ${problem}`);
    return value;
  };
  const fileDescriptor = (value: unknown): number | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new InvalidOptionError('listenFd', `${name('listenFd')} takes a file descriptor number, not '${String(value)}'`);
    if (options.listen !== undefined) throw new InvalidOptionError('listenFd', `${name('listenFd')} and ${name('listen')} cannot both be given`);
    return value;
  };
  const verbs = (option: 'allow' | 'deny', value: unknown): readonly string[] | undefined => {
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
      throw new InvalidOptionError(option, `${name(option)} takes a list of command names`);
    }
    return value as string[];
  };

  const env = options.env ?? process.env;
  const restricted = options.restricted ?? false;
  const allow = verbs('allow', options.allow);
  const deny = verbs('deny', options.deny);
  let keys: KeyAllowList | undefined;
  if (options.keys !== undefined) {
    if (!Array.isArray(options.keys) || !options.keys.every((k) => typeof k === 'string')) throw new InvalidOptionError('keys', `${name('keys')} takes a list of keygrips or fingerprints`);
    try {
      keys = new KeyAllowList(checkKeyEntries(options.keys));
    } catch (err) {
      if (err instanceof KeyAllowListError) throw new InvalidOptionError('keys', `${name('keys')} ${err.message}`);
      throw err;
    }
  }
  let allowOptions: readonly string[] | undefined;
  if (options.allowOptions !== undefined) {
    if (!Array.isArray(options.allowOptions) || !options.allowOptions.every((o) => typeof o === 'string')) throw new InvalidOptionError('allowOptions', `${name('allowOptions')} takes a list of option names (NAME or NAME=VALUE)`);
    try {
      parseAllowedOptions(options.allowOptions);
    } catch (err) {
      if (err instanceof ArgumentCheckError) throw new InvalidOptionError('allowOptions', `${name('allowOptions')}: ${err.message}`);
      throw err;
    }
    allowOptions = options.allowOptions;
  }
  const preset = checkPreset(options, name);
  // Argument checks are part of what a forwarded session may send: any policy turns them on, but --restricted alone
  // (which answers as gpg-agent's extra socket does, argument errors included).
  const checkArguments =
    options.checkArguments === true || allow !== undefined || deny !== undefined || keys !== undefined || preset !== undefined || allowOptions !== undefined;
  const confirm = consentConfig(options, name);
  let policy: CommandPolicy | undefined;
  try {
    policy = createCommandPolicy(
      {
        restricted,
        ...(allow ? { allow } : {}),
        ...(deny ? { deny } : {}),
        ...(keys ? { keys } : {}),
        ...(confirm ? { refuseRawCardAccess: true } : {}),
        ...(checkArguments ? { arguments: { ...(allowOptions ? { allowOptions } : {}), ...(preset ? { preset } : {}) } } : {}),
      },
      { allow: name('allow'), deny: name('deny') },
    );
  } catch (err) {
    if (err instanceof PolicyError) throw new InvalidOptionError(err.option, err.message);
    throw err;
  }
  const timeouts: SessionTimeouts = Object.freeze({
    connectMs: positive('connectTimeoutMs', options.connectTimeoutMs, PROXY_DEFAULTS.connectTimeoutMs),
    greetingMs: positive('greetingTimeoutMs', options.greetingTimeoutMs, PROXY_DEFAULTS.greetingTimeoutMs),
    idleMs: positive('idleTimeoutMs', options.idleTimeoutMs, PROXY_DEFAULTS.idleTimeoutMs),
    inquiryMs: positive('inquiryTimeoutMs', options.inquiryTimeoutMs, PROXY_DEFAULTS.inquiryTimeoutMs),
    // Off unless asked for: a signing may wait on a pinentry for as long as the user takes.
    responseMs: options.responseTimeoutMs === undefined ? undefined : positive('responseTimeoutMs', options.responseTimeoutMs, 0),
    closeGraceMs: positive('closeGraceMs', options.closeGraceMs, PROXY_DEFAULTS.closeGraceMs),
    consentMs: positive('confirmTimeoutMs', options.confirmTimeoutMs, PROXY_DEFAULTS.confirmTimeoutMs),
  });
  const config: ProxyConfig = Object.freeze({
    listenPath: path('listen', options.listen) ?? defaultListenPath(env, listenNameFor(options.upstream)),
    listenFd: fileDescriptor(options.listenFd),
    upstream: path('upstream', options.upstream),
    name: options.name,
    launchAgent: options.launchAgent ?? false,
    timeouts,
    drainTimeoutMs: positive('drainTimeoutMs', options.drainTimeoutMs, PROXY_DEFAULTS.drainTimeoutMs),
    maxSessions: positive('maxSessions', options.maxSessions, PROXY_DEFAULTS.maxSessions),
    maxBufferedClientBytes: PROXY_DEFAULTS.maxBufferedClientBytes,
    restricted,
    warmUpSessions: positive('warmUpSessions', options.warmUpSessions, PROXY_DEFAULTS.warmUpSessions),
    spareConnection: options.spareConnection ?? PROXY_DEFAULTS.spareConnection,
    policy,
    checkArguments,
    preset,
    keys,
    auditPath: path('audit', options.audit),
    confirm,
    maxCrypto: options.maxCrypto === undefined ? undefined : positive('maxCrypto', options.maxCrypto, 0),
    logger: options.logger ?? defaultLogger(),
    onSessionEnd: options.onSessionEnd,
    inspect: options.inspect,
    traceTransitions: options.traceTransitions ?? false,
    clock: options.clock,
    env,
  });
  configs.add(config);
  return config;
}

/** The agent's sockets that forbid SCD: its extra and browser sockets (connections there run restricted). */
const RESTRICTED_SOCKET_NAMES: readonly string[] = ['S.gpg-agent.extra', 'S.gpg-agent.browser'];

/**
 * `preset`: a known name, and for `yubikey` an upstream where SCD works: the agent's standard socket (the default,
 * `agent`, or a path). Other names are refused, and so are paths named like the agent's extra or browser socket.
 * A path elsewhere that leads to an extra socket cannot be told here without running gpgconf (this step has no
 * effects): the start checks it (restrictedAgentSocket in src/upstream/daemons.ts).
 */
function checkPreset(options: ProxyOptions, name: (option: keyof ProxyOptions) => string): Preset | undefined {
  const { preset } = options;
  if (preset === undefined) return undefined;
  if (typeof preset !== 'string' || !(PRESETS as readonly string[]).includes(preset)) {
    throw new InvalidOptionError('preset', `${name('preset')} takes ${PRESETS.join(', ')}, not '${String(preset)}'`);
  }
  const why = `${name('preset')} ${preset} works through SCD, which`;
  const { upstream } = options;
  if (upstream !== undefined && upstream !== 'agent') {
    if (!upstream.includes('/')) throw new InvalidOptionError('preset', `${why} only gpg-agent's standard socket takes: ${name('upstream')} ${upstream} cannot be used with it (give ${name('upstream')} agent, or none)`);
    const base = upstream.slice(upstream.lastIndexOf('/') + 1);
    if (RESTRICTED_SOCKET_NAMES.includes(base)) throw new InvalidOptionError('preset', `${why} gpg-agent forbids on its extra and browser sockets: ${name('upstream')} ${upstream} is one (give the agent's standard socket, S.gpg-agent)`);
  }
  if (options.restricted) throw new InvalidOptionError('preset', `${why} ${name('restricted')} forbids (the agent itself is told the connection is remote)`);
  if (options.keys !== undefined) throw new InvalidOptionError('preset', `${why} ${name('keys')} refuses (card keys are not named by keygrip)`);
  return preset as Preset;
}

/** The consent settings, or undefined without `confirm`; the other confirm options need it. */
function consentConfig(options: ProxyOptions, name: (option: keyof ProxyOptions) => string): ConsentConfig | undefined {
  const list = (option: 'confirm' | 'confirmWindow', value: unknown): readonly string[] | undefined => {
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new InvalidOptionError(option, `${name(option)} takes a list of words`);
    return value as string[];
  };
  const confirm = list('confirm', options.confirm);
  const windows = list('confirmWindow', options.confirmWindow);
  if (confirm === undefined) {
    for (const option of ['confirmWindow', 'confirmSocket', 'confirmTimeoutMs', 'confirmPrompt'] as const) {
      if (options[option] !== undefined) throw new InvalidOptionError(option, `${name(option)} needs ${name('confirm')}`);
    }
    return undefined;
  }
  let option: 'confirm' | 'confirmWindow' = 'confirm';
  try {
    const operations = parseConsentOperations(confirm);
    option = 'confirmWindow';
    const socket = options.confirmSocket;
    if (socket !== undefined && (typeof socket !== 'string' || socket === '')) throw new InvalidOptionError('confirmSocket', `${name('confirmSocket')} takes a socket path`);
    return Object.freeze({ operations, windows: Object.freeze(parseConsentWindows(windows ?? [], operations)), socket, prompt: options.confirmPrompt });
  } catch (err) {
    if (err instanceof ConsentOptionError) throw new InvalidOptionError(option, `${name(option)}: ${err.message}`);
    throw err;
  }
}

export function isProxyConfig(value: unknown): value is ProxyConfig {
  return typeof value === 'object' && value !== null && configs.has(value as ProxyConfig);
}
