/**
 * The listening side: a Unix socket server that gives each accepted connection its own SessionRuntime (and so
 * its own actor and its own upstream connection). Sessions are independent: one failing never touches another.
 */
import net from 'node:net';
import { createActor, waitFor } from 'xstate';
import { serverMachine, type ServerEvent } from '../machines/server.js';
import { resolveConfig, type ProxyConfig, type ProxyOptions } from './config.js';
import { closeListener, listenPrivately, prepareListenPath, ProxyStartError, removeOwnSocket, type SocketIdentity } from './listenSocket.js';
import { SessionRuntime, type SessionInfo, type SessionSummary } from './session.js';
import { resolveUpstream } from './upstream.js';
import { errLine } from './protocol/errors.js';
import { combineObservers, transitionRecorder } from './machineTools/trace.js';
import { warmUpOnce } from './machineTools/warmUp.js';
import { sessionMachine } from '../machines/session.js';

export type { ProxyConfig, ProxyOptions } from './config.js';

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

/**
 * Starts the proxy: resolves the agent's socket, binds ours, and serves each connection as its own session until
 * `close()`. `options` may be a config made by `resolveConfig` (the CLI's), else it is resolved here.
 */
export async function startProxy(options: ProxyOptions | ProxyConfig = {}): Promise<RunningProxy> {
  // Before anything else: a bad option (an unknown --allow verb, a zero timeout) must stop the start.
  const config = resolveConfig(options);
  const { logger, maxSessions, timeouts } = config;
  const upstreamPath = await resolveUpstream(config.upstream, config.env);
  const requestedPath = config.listenPath;
  // Before the socket accepts anyone: the first sessions of a fresh proxy then run compiled code (see warmUp.ts).
  warmUpOnce(sessionMachine);
  const inspect = combineObservers([
    config.inspect,
    config.traceTransitions
      ? transitionRecorder(({ actor, from, event, to, changesState }) => {
          if (!changesState) return;
          // Session actors are `session-<id>`; the listener's own machine is `server`.
          const who = actor.startsWith('session-') ? { session: actor.slice('session-'.length) } : { actor };
          logger.info({ ...who, from, event, to }, 'transition');
        })
      : undefined,
  ]);

  const sessions = new Map<string, SessionRuntime>();
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
      const session = new SessionRuntime({
        sessionId,
        client,
        upstreamPath,
        timeouts,
        logger,
        maxBufferedClientBytes: config.maxBufferedClientBytes,
        policy: config.policy,
        restrictAgent: config.restricted,
        ...(config.clock ? { clock: config.clock } : {}),
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
    client.end(errLine('limitReached', `the proxy serves at most ${maxSessions} sessions at once`), () => client.destroy());
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
    delays: { drainTimeout: config.drainTimeoutMs },
  });
  const server = createActor(machine, {
    id: 'server',
    ...(config.clock ? { clock: config.clock } : {}),
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
