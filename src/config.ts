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
import { createCommandPolicy, PolicyError, type CommandPolicy } from './policy.js';
import type { SessionOptions, SessionSummary, SessionTimeouts } from './session/session.js';

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
   * Append one JSON line per command outcome that touches a key, and per policy refusal, to this file (created
   * 0600; never a payload, passphrase or hash value). `assuan-proxy audit FILE` summarizes it.
   */
  audit?: string;
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
  /** Built once from restricted/allow/deny/keys; undefined relays every command. */
  readonly policy: CommandPolicy | undefined;
  /** The key allow-list the policy reads; its fingerprints are turned into keygrips when the proxy starts. */
  readonly keys: KeyAllowList | undefined;
  /** The audit file, opened when the proxy starts. */
  readonly auditPath: string | undefined;
  readonly logger: Logger;
  readonly onSessionEnd: ((summary: SessionSummary) => void) | undefined;
  readonly inspect: Observer<InspectionEvent> | ((event: InspectionEvent) => void) | undefined;
  readonly traceTransitions: boolean;
  readonly clock: SessionOptions['clock'] | undefined;
  readonly env: NodeJS.ProcessEnv;
}

/** The defaults, in one place: the CLI's help text is written from these too. */
export const PROXY_DEFAULTS = Object.freeze({
  connectTimeoutMs: 5_000,
  greetingTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
  inquiryTimeoutMs: 300_000,
  closeGraceMs: 2_000,
  drainTimeoutMs: 10_000,
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
  maxSessions: { what: 'a positive whole number', min: 1, max: Number.MAX_SAFE_INTEGER },
  warmUpSessions: { what: 'a whole number of sessions from 0 to 10000', min: 0, max: 10_000 },
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
  const path = (option: 'listen' | 'upstream' | 'audit', value: unknown): string | undefined => {
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
  let policy: CommandPolicy | undefined;
  try {
    policy = createCommandPolicy({ restricted, ...(allow ? { allow } : {}), ...(deny ? { deny } : {}), ...(keys ? { keys } : {}) }, { allow: name('allow'), deny: name('deny') });
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
    keys,
    auditPath: path('audit', options.audit),
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

export function isProxyConfig(value: unknown): value is ProxyConfig {
  return typeof value === 'object' && value !== null && configs.has(value as ProxyConfig);
}
