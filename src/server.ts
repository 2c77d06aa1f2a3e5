/**
 * The listening side: a Unix socket server that gives each accepted connection its own Session (and so
 * its own actor and its own upstream connection). Sessions are independent: one failing never touches another.
 * The server machine (machines/server.ts) runs the lifecycle; the session registry holds and counts the sessions.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createActor, fromPromise, waitFor } from 'xstate';
import { serverMachine, type ServerEvent } from '../machines/server.js';
import { resolveConfig, type ProxyConfig, type ProxyOptions } from './config.js';
import { closeListener, listenOnDescriptor, listenPrivately, prepareListenPath, ProxyStartError, removeOwnSocket, type SocketIdentity } from './listenSocket.js';
import type { SessionInfo } from './session/session.js';
import { createSessionHost, observerFor } from './sessionHost.js';
import { SpareAgentConnection } from './session/spareConnection.js';
import { AuditLog } from './audit/auditLog.js';
import { KeyAllowListError } from './keyAllowList.js';
import { resolveUpstream, restrictedAgentSocket, upstreamAbsence } from './upstream/daemons.js';
import { warmUpSessionsOnce } from './session/warmUp.js';
import { startConsent } from './consent/consentService.js';
import { KeyNames } from './consent/keyNames.js';
import { identifyLocalCaller } from './peer/localCaller.js';
import type { Duplex } from 'node:stream';

export type { ProxyConfig, ProxyOptions } from './config.js';

export interface RunningProxy {
  /** The socket clients connect to. */
  readonly socketPath: string;
  /** The daemon's socket (or socket file) sessions are relayed to. */
  readonly upstreamPath: string;
  /** What the upstream is: gpg-agent, dirmngr, keyboxd or scdaemon. */
  readonly upstreamDaemon: string;
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
  const { logger } = config;
  const upstream = await resolveUpstream(config.upstream, config.env, { launch: config.launchAgent });
  const upstreamPath = upstream.path;
  // A path given explicitly is never started by us: say now, not at every session, that nothing answers there.
  const absence = upstream.launch ? undefined : await upstreamAbsence(upstream);
  if (absence) logger.warn({ upstreamPath }, `nothing answers as ${upstream.daemon} at ${upstreamPath} yet (${absence}): sessions will fail until it does`);
  await checkUpstreamForPolicy(config, upstreamPath, upstream.daemon);
  // Fingerprints become keygrips before anyone is served: until then the allow-list allows nothing.
  await resolveKeys(config);
  const audit = config.auditPath ? AuditLog.open(config.auditPath, logger) : undefined;
  // Before the socket accepts anyone: the first sessions of a fresh proxy then run compiled code (see warmUp.ts).
  await warmUpSessionsOnce(config.timeouts, config.warmUpSessions);
  const inspect = observerFor(config);
  // Dialed once the socket listens, replaced each time a session takes it, closed when the proxy stops accepting.
  // A socket file's server reads a nonce first (and its port moves): only a Unix socket's connection can wait idle.
  const spareUsable = config.spareConnection && isSocket(upstreamPath);
  if (config.spareConnection && !spareUsable) logger.info({ upstreamPath }, '--spare-connection is for an upstream Unix socket; not used in front of a socket file');
  const spare = spareUsable ? new SpareAgentConnection(upstreamPath, config.timeouts.greetingMs, logger) : undefined;
  const consent = await startConsent(config.confirm, config.env, logger);
  // Asked only where a prompt or a record names the caller: a lookup costs a process (ss) and /proc reads.
  const identifyCaller = consent || audit ? (client: Duplex) => identifyLocalCaller(client, logger) : undefined;
  // Audit records name keys by user ID too: one listing shared with the prompts.
  const keyNames = audit ? (consent?.keyNames ?? new KeyNames(config.env)) : undefined;
  const registry = createSessionHost(config, { upstream, spare, audit, consent, identifyCaller, keyNames });
  let socketPath = config.listenPath;
  let ownSocket: SocketIdentity | undefined;

  // allowHalfOpen: a client may send its last command and shut down its write side; it still gets the answer.
  // pauseOnConnect: nothing is read from a client before the agent's greeting has been relayed to it.
  const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => void registry.accept(client));
  listener.on('error', (err) => logger.error({ err }, 'listener error'));

  const machine = serverMachine.provide({
    actors: {
      listen: fromPromise(async () => {
        try {
          if (config.listenFd !== undefined) {
            socketPath = await listenOnDescriptor(listener, config.listenFd);
            // A unit whose ListenStream= is the agent's own socket would have us relay to ourselves.
            if (path.resolve(socketPath) === path.resolve(upstreamPath)) {
              throw new ProxyStartError(`the socket systemd passed is the upstream's own socket ${upstreamPath}: give the proxy a ListenStream= of its own`);
            }
          } else {
            socketPath = await prepareListenPath(config.listenPath, upstreamPath);
            ownSocket = await listenPrivately(listener, socketPath);
          }
          spare?.start();
        } catch (err) {
          // The machine keeps the message for the person who started us: say what went wrong, not where.
          throw err instanceof ProxyStartError ? err : new ProxyStartError(String(err));
        }
      }),
      waitForSessions: fromPromise(() => registry.whenEmpty()),
    },
    actions: {
      stopAccepting: () => {
        logger.info({ openSessions: registry.count }, 'shutting down: no new connections; commands in flight may finish');
        closeListener(listener, socketPath, ownSocket);
        spare?.close();
      },
      stopSessions: () => registry.stopAll(),
      stopSessionsNow: () => {
        logger.info({ openSessions: registry.count }, 'drain time is up: closing the remaining sessions');
        registry.stopAllNow();
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
  logger.info({ socketPath, upstreamPath, upstream: upstream.daemon, ...(config.listenFd !== undefined ? { socketActivated: true } : {}) }, 'listening');
  // Once every session has ended, so have their audit records (still completing their caller and user ID): on disk.
  const stopped = waitFor(server, (s) => s.status === 'done', { timeout: Infinity }).then(() => audit?.flushedWithin(AUDIT_FLUSH_MS));

  return {
    socketPath,
    upstreamPath,
    upstreamDaemon: upstream.daemon,
    get sessionCount() {
      return registry.count;
    },
    sessions() {
      return registry.list();
    },
    close() {
      sendToServer({ type: 'SHUTDOWN' });
      return stopped;
    },
  };
}

/** How long a stopping proxy waits for its last audit records (their lookups are bounded at 5 s). */
const AUDIT_FLUSH_MS = 10_000;

function isSocket(file: string): boolean {
  try {
    return fs.statSync(file).isSocket();
  } catch {
    // Not there yet (an agent launched later): a socket is what will be there.
    return true;
  }
}

/**
 * What the upstream must be for the policy asked: `--confirm` reads key uses as gpg-agent is asked for them (a card's
 * through `SCD`); in front of scdaemon itself (or dirmngr, keyboxd) its commands come bare and would pass unasked.
 * `--preset yubikey` works through SCD, which the agent's extra or browser socket forbids.
 */
export async function checkUpstreamForPolicy(config: ProxyConfig, upstreamPath: string, daemon: string): Promise<void> {
  if (config.confirm && daemon !== 'gpg-agent') {
    throw new ProxyStartError(`--confirm asks about the key uses gpg-agent is sent; in front of ${daemon} (${upstreamPath}) they would pass unasked: give gpg-agent's socket`);
  }
  if (config.preset === undefined) return;
  const restricted = await restrictedAgentSocket(upstreamPath, config.env);
  if (restricted) {
    throw new ProxyStartError(`--preset ${config.preset} works through SCD, which gpg-agent forbids on ${upstreamPath} ('gpgconf --list-dirs ${restricted}'): give the agent's standard socket`);
  }
}

/** Turns the --keys fingerprints into keygrips (gpg, in the proxy's environment); a bad entry stops the start. */
export async function resolveKeys(config: ProxyConfig): Promise<void> {
  try {
    await config.keys?.resolve(config.env, config.logger);
  } catch (err) {
    throw err instanceof KeyAllowListError ? new ProxyStartError(err.message) : err;
  }
}
