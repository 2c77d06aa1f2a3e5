/**
 * The open sessions, and the one count of them. A connection is accepted as a new session, or refused past the
 * session limit; at shutdown every session is asked to stop (gracefully, or at once past the drain time), and
 * `whenEmpty` tells when the last one has ended. The registry knows a session only by what it can do (start,
 * stop, stop now, describe itself) and the end callback it is given, never by its internals.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { sessionLimitReached } from './session/answers.js';
import type { SessionInfo } from './session/session.js';

/** What the registry needs of a session. */
export interface RegisteredSession {
  start(): unknown;
  /** Close once the command in flight (if any) is done. */
  stop(): void;
  /** Close now, still cleanly (the session ends with its record). */
  stopNow(): void;
  info(): SessionInfo;
}

export interface SessionRegistryOptions {
  maxSessions: number;
  /** Put before each session's number, where one process serves several upstreams (e.g. `dirmngr-`). */
  sessionIdPrefix?: string;
  /** How long a refused client may take to read its ERR line before its socket is destroyed. */
  closeGraceMs: number;
  logger: Logger;
  /** Creates (does not start) the session for an accepted client; once started, it calls `onEnd` when it has ended. */
  createSession(sessionId: string, client: Duplex, onEnd: () => void): RegisteredSession;
}

export type Admission = 'accepted' | 'refused' | 'failed';

/** The first ten refusals are logged, then every hundredth: a flood of connections must not flood the log. */
const LOGGED_REFUSALS = 10;
const REFUSAL_LOG_INTERVAL = 100;

export class SessionRegistry {
  private readonly sessions = new Map<string, RegisteredSession>();
  private nextSessionId = 1;
  private refusedConnections = 0;
  private emptyWaiters: Array<() => void> = [];

  constructor(private readonly options: SessionRegistryOptions) {}

  /** Sessions open right now. */
  get count(): number {
    return this.sessions.size;
  }

  list(): SessionInfo[] {
    return [...this.sessions.values()].map((session) => session.info());
  }

  /** Starts a session for `client`, or, past the session limit, answers it with one ERR line and closes it. */
  accept(client: Duplex): Admission {
    if (this.sessions.size >= this.options.maxSessions) {
      this.refuse(client);
      return 'refused';
    }
    const sessionId = `${this.options.sessionIdPrefix ?? ''}${this.nextSessionId++}`;
    try {
      const session = this.options.createSession(sessionId, client, () => this.remove(sessionId));
      this.sessions.set(sessionId, session);
      session.start();
      return 'accepted';
    } catch (err) {
      this.sessions.delete(sessionId);
      this.options.logger.error({ err, session: sessionId }, 'could not start session');
      client.destroy();
      this.notifyIfEmpty();
      return 'failed';
    }
  }

  /** Asks every open session to close once its command in flight is done. */
  stopAll(): void {
    for (const session of [...this.sessions.values()]) session.stop();
  }

  /** Closes every open session now (each still ends, and logs its end, on its own). */
  stopAllNow(): void {
    for (const session of [...this.sessions.values()]) session.stopNow();
  }

  /** Resolves once no session is open: at once if none is. */
  whenEmpty(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptyWaiters.push(resolve));
  }

  private remove(sessionId: string): void {
    if (this.sessions.delete(sessionId)) this.notifyIfEmpty();
  }

  private notifyIfEmpty(): void {
    if (this.sessions.size > 0 || this.emptyWaiters.length === 0) return;
    const waiters = this.emptyWaiters;
    this.emptyWaiters = [];
    for (const resolve of waiters) resolve();
  }

  /** Past the session limit: one ERR line in place of the greeting, then close (libassuan clients report it). */
  private refuse(client: Duplex): void {
    const { maxSessions, closeGraceMs, logger } = this.options;
    this.refusedConnections++;
    if (this.refusedConnections <= LOGGED_REFUSALS || this.refusedConnections % REFUSAL_LOG_INTERVAL === 0) {
      logger.warn({ openSessions: this.sessions.size, maxSessions, refusedConnections: this.refusedConnections }, 'session limit reached: connection refused');
    }
    client.on('error', () => client.destroy());
    client.end(sessionLimitReached(maxSessions), () => client.destroy());
    // A client that does not read must not keep the socket.
    setTimeout(() => client.destroy(), closeGraceMs).unref();
  }
}
