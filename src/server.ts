/**
 * The listening side: a Unix socket server that gives each accepted connection its own Session (and so
 * its own actor and its own upstream connection). Sessions are independent: one failing never touches another.
 */
import net from 'node:net';
import pino, { type Logger } from 'pino';
import type { InspectionEvent, Observer } from 'xstate';
import { createActor, waitFor } from 'xstate';
import { serverMachine, type ServerEvent } from '../machines/server.js';
import { closeListener, defaultListenPath, listenPrivately, prepareListenPath, ProxyStartError, removeOwnSocket, type SocketIdentity } from './listenSocket.js';
import { Session, type SessionInfo, type SessionOptions, type SessionSummary, type SessionTimeouts } from './session/session.js';
import { resolveUpstream } from './upstream.js';
import { createCommandPolicy, PolicyError, type CommandPolicy } from './policy.js';
import { sessionLimitReached } from './session/answers.js';
import { combineObservers, transitionRecorder } from './machineTools/trace.js';
import { warmUpOnce } from './machineTools/warmUp.js';
import { sessionMachine } from '../machines/session.js';

export interface ProxyOptions {
  /** Socket to listen on. Default: S.gpg-agent in a private directory under $XDG_RUNTIME_DIR or the temp dir. */
  listen?: string;
  /** gpg-agent socket to relay to. Default: `gpgconf --list-dirs agent-socket`, launching the agent if needed. */
  upstream?: string;
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
  /** Milliseconds a closing session waits for its peers to close before cutting them (default 2000). */
  closeGraceMs?: number;
  /** Milliseconds commands in flight may take to finish after close() or a signal (default 10000). */
  drainTimeoutMs?: number;
  logger?: Logger;
  /** Receives every session actor's inspection events (transition traces, inspectors). */
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  /** Log every transition of every actor as one info line `{session, from, event, to}` (no payload). */
  traceTransitions?: boolean;
  /** A clock for session timers (tests use XState's SimulatedClock). */
  clock?: SessionOptions['clock'];
  /** Environment used to find the agent with gpgconf (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface RunningProxy {
  /** The socket clients connect to. */
  readonly socketPath: string;
  /** The agent socket sessions are relayed to. */
  readonly upstreamPath: string;
  /** Sessions open right now. */
  readonly sessionCount: number;
  /** The open sessions: id, state, current verb, age, bytes each way (never payload). */
  sessions(): SessionInfo[];
  /**
   * Stops accepting, lets commands in flight finish (up to the drain timeout, then closes the rest), removes our
   * socket. Resolves when done; calling it again is harmless.
   */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUTS: SessionTimeouts = { connectMs: 5_000, greetingMs: 5_000, idleMs: 60_000, inquiryMs: 300_000, closeGraceMs: 2_000 };
export const DEFAULT_MAX_SESSIONS = 256;
const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
/** Pipelined client input held while a command is in flight, before the client is paused. */
const MAX_BUFFERED_CLIENT_BYTES = 64 * 1024;

export async function startProxy(options: ProxyOptions = {}): Promise<RunningProxy> {
  const logger = options.logger ?? pino({ level: 'silent' });
  const env = options.env ?? process.env;
  // Before anything else: a bad --allow/--deny must stop the start, not a session later.
  let policy: CommandPolicy | undefined;
  try {
    policy = createCommandPolicy({ restricted: options.restricted ?? false, ...(options.allow ? { allow: options.allow } : {}), ...(options.deny ? { deny: options.deny } : {}) });
  } catch (err) {
    throw err instanceof PolicyError ? new ProxyStartError(err.message) : err;
  }
  const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
  const upstreamPath = await resolveUpstream(options.upstream, env);
  const requestedPath = options.listen ?? defaultListenPath(env);
  const timeouts: SessionTimeouts = {
    connectMs: options.connectTimeoutMs ?? DEFAULT_TIMEOUTS.connectMs,
    greetingMs: options.greetingTimeoutMs ?? DEFAULT_TIMEOUTS.greetingMs,
    idleMs: options.idleTimeoutMs ?? DEFAULT_TIMEOUTS.idleMs,
    inquiryMs: options.inquiryTimeoutMs ?? DEFAULT_TIMEOUTS.inquiryMs,
    responseMs: options.responseTimeoutMs,
    closeGraceMs: options.closeGraceMs ?? DEFAULT_TIMEOUTS.closeGraceMs,
  };
  // Before the socket accepts anyone: the first sessions of a fresh proxy then run compiled code (see warmUp.ts).
  warmUpOnce(sessionMachine);
  const inspect = combineObservers([
    options.inspect,
    options.traceTransitions
      ? transitionRecorder(({ actor, from, event, to, changesState }) => {
          if (!changesState) return;
          // Session actors are `session-<id>`; the listener's own machine is `server`.
          const who = actor.startsWith('session-') ? { session: actor.slice('session-'.length) } : { actor };
          logger.info({ ...who, from, event, to }, 'transition');
        })
      : undefined,
  ]);

  const sessions = new Map<string, Session>();
  let nextSessionId = 1;
  let socketPath = requestedPath;
  let ownSocket: SocketIdentity | undefined;

  // allowHalfOpen: a client may send its last command and shut down its write side; it still gets the answer.
  // pauseOnConnect: nothing is read from a client before the agent's greeting has been relayed to it.
  const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    if (sessions.size >= maxSessions) {
      refuseConnection(client);
      return;
    }
    const sessionId = String(nextSessionId++);
    try {
      const session = new Session({
        sessionId,
        client,
        upstreamPath,
        timeouts,
        logger,
        maxBufferedClientBytes: MAX_BUFFERED_CLIENT_BYTES,
        policy,
        restrictAgent: options.restricted ?? false,
        ...(options.clock ? { clock: options.clock } : {}),
        ...(inspect ? { inspect } : {}),
        onEnd: (summary: SessionSummary) => {
          sessions.delete(summary.sessionId);
          sendToServer({ type: 'SESSION_ENDED' });
        },
      });
      sessions.set(sessionId, session);
      sendToServer({ type: 'SESSION_OPENED' });
      session.start();
    } catch (err) {
      logger.error({ err, session: sessionId }, 'could not start session');
      client.destroy();
    }
  });
  listener.on('error', (err) => logger.error({ err }, 'listener error'));

  let refusedConnections = 0;
  /** Past the session limit: one ERR line in place of the greeting, then close (libassuan clients report it). */
  function refuseConnection(client: net.Socket): void {
    refusedConnections++;
    // A flood of connections must not become a flood of log lines: the first ten, then every hundredth.
    if (refusedConnections <= 10 || refusedConnections % 100 === 0) {
      logger.warn({ openSessions: sessions.size, maxSessions, refusedConnections }, 'session limit reached: connection refused');
    }
    client.on('error', () => client.destroy());
    client.end(sessionLimitReached(maxSessions), () => client.destroy());
    // A client that does not read must not keep the socket.
    setTimeout(() => client.destroy(), timeouts.closeGraceMs).unref();
  }

  const machine = serverMachine.provide({
    actions: {
      listen: () => {
        void (async () => {
          try {
            socketPath = await prepareListenPath(requestedPath, upstreamPath);
            ownSocket = await listenPrivately(listener, socketPath);
            sendToServer({ type: 'LISTENING' });
          } catch (err) {
            sendToServer({ type: 'LISTEN_FAILED', reason: err instanceof ProxyStartError ? err.message : String(err) });
          }
        })();
      },
      stopAccepting: () => {
        logger.info({ openSessions: sessions.size }, 'shutting down: no new connections; commands in flight may finish');
        closeListener(listener, socketPath, ownSocket);
      },
      stopSessions: () => {
        for (const session of sessions.values()) session.stop();
      },
      stopSessionsNow: () => {
        logger.info({ openSessions: sessions.size }, 'drain time is up: closing the remaining sessions');
        for (const session of sessions.values()) session.stopNow();
      },
      removeSocket: () => {
        if (ownSocket) removeOwnSocket(socketPath, ownSocket);
        logger.info({ socketPath }, 'stopped');
      },
      rejectEvent: ({ self }, { type }) => {
        logger.warn({ event: type, state: JSON.stringify(self.getSnapshot().value) }, 'server event not handled in this state; ignored');
      },
    },
    delays: { drainTimeout: options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS },
  });
  const server = createActor(machine, {
    id: 'server',
    ...(options.clock ? { clock: options.clock } : {}),
    ...(inspect ? { inspect } : {}),
  });
  function sendToServer(event: ServerEvent): void {
    if (server.getSnapshot().status === 'active') server.send(event);
  }
  server.subscribe({ error: (err) => logger.error({ err }, 'server machine failed') });
  server.start();

  const started = await waitFor(server, (s) => !s.matches('starting'));
  if (started.matches('failed')) throw new ProxyStartError(started.context.startFailure ?? 'could not start');
  logger.info({ socketPath, upstreamPath }, 'listening');
  const stopped = waitFor(server, (s) => s.status === 'done', { timeout: Infinity }).then(() => undefined);

  return {
    socketPath,
    upstreamPath,
    get sessionCount() {
      return sessions.size;
    },
    sessions() {
      return [...sessions.values()].map((session) => session.info());
    },
    close() {
      sendToServer({ type: 'SHUTDOWN' });
      return stopped;
    },
  };
}
