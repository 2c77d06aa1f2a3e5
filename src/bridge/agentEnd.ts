/**
 * The agent end of a bridge link: it starts the transport command (`ssh -T host`, `kubectl exec -i pod --`, …) with
 * the client end's start appended, sends the client end's code over the transport's stdin, and serves HTTP/2 over
 * the transport's stdio. Each stream is one Assuan session, run by the full session machine against our gpg-agent,
 * exactly as a local client's (policy, restricted mode, limits, logging): the far side is not trusted.
 *
 * The link machine (machines/link.ts) runs the link's lifecycle; this module provides its effects. Each start of
 * the transport is an incarnation of its own: events from one that has been replaced are ignored.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http2 from 'node:http2';
import { Duplex } from 'node:stream';
import { createActor, fromPromise, waitFor, type Actor } from 'xstate';
import { linkMachine, type LinkEvent, type LinkFailure } from '../../machines/link.js';
import type { AuditLog } from '../audit/auditLog.js';
import type { SessionConsent } from '../session/session.js';
import { KeyNames } from '../consent/keyNames.js';
import type { UpstreamTarget } from '../upstream/daemons.js';
import type { ProxyConfig } from '../config.js';
import type { SessionInfo } from '../session/session.js';
import { createSessionHost, observerFor } from '../sessionHost.js';
import { stateText } from '../machineTools/trace.js';
import { clientEndCommand } from './bootstrap.js';
import { BannerSeeker, codePayload, LINK_SETTINGS, SESSION_PATH } from './handshake.js';

export interface LinkTimeouts {
  handshakeMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  closeGraceMs: number;
}

export const LINK_DEFAULTS = Object.freeze({
  handshakeMs: 30_000,
  pingIntervalMs: 15_000,
  pingTimeoutMs: 10_000,
  closeGraceMs: 2_000,
  maxAttempts: 5,
});

export interface ForwardOptions {
  /** The transport command and its arguments; the words that start the client end are appended. */
  transport: readonly string[];
  /** What runs on the far side: the single-file build (`npm run bundle`). */
  clientEndCode: Buffer;
  /** Arguments for the client end (e.g. `--listen PATH`); it asks gpgconf there when none is given. */
  clientEndArgs?: readonly string[];
  /** The `node` to run on the far side (default `node`, found on its PATH). */
  farNode?: string;
  /** The sessions' settings (policy, limits, logger, inspect, clock), as for a local proxy. */
  config: ProxyConfig;
  /** The daemon the sessions relay to. */
  upstream: UpstreamTarget;
  /** Where audit records go (`--audit`). */
  audit?: AuditLog | undefined;
  /** Consent prompts (`--confirm`), shown on this (the agent's) side. */
  consent?: SessionConsent | undefined;
  timeouts?: Partial<LinkTimeouts>;
  /** Starts in a row without the link coming up, before giving up (default 5). */
  maxAttempts?: number;
}

export interface RunningForward {
  /** The link machine's state, e.g. `up.quiet`, `reconnecting`. */
  state(): string;
  /** Why the link was last lost, or failed. */
  failure(): LinkFailure | null;
  sessions(): SessionInfo[];
  readonly sessionCount: number;
  /** The running transport's process id, if one runs. */
  transportPid(): number | undefined;
  /** Resolves when the link machine has stopped: `closed` after close(), `failed` if it gave up. */
  readonly done: Promise<'closed' | 'failed'>;
  /** Drains the sessions (GOAWAY), ends the transport; resolves when done. */
  close(): Promise<'closed' | 'failed'>;
}

/** One start of the transport, with HTTP/2 over its stdio once the client end's banner has come. */
interface Incarnation {
  child: ChildProcess;
  /** The transport's stdio as one stream, once HTTP/2 runs over it. */
  link: Duplex | undefined;
  spawned: Promise<void>;
  session: http2.ServerHttp2Session | undefined;
  server: http2.Http2Server;
}

export function startForward(options: ForwardOptions): RunningForward {
  const { config } = options;
  const { logger } = config;
  const timeouts = { ...LINK_DEFAULTS, ...options.timeouts };
  const keyNames = options.audit ? (options.consent?.keyNames ?? new KeyNames(config.env)) : undefined;
  const registry = createSessionHost(config, { upstream: options.upstream, origin: { link: 'link' }, audit: options.audit, consent: options.consent, keyNames });
  const inspect = observerFor(config);
  let current: Incarnation | undefined;
  let incarnations = 0;
  let actor: Actor<typeof linkMachine>;

  const send = (event: LinkEvent): void => {
    if (actor.getSnapshot().status === 'active') actor.send(event);
  };

  function start(): Incarnation {
    const number = ++incarnations;
    // Events from an incarnation that has been replaced or dropped are history.
    const live = () => current?.child === child;
    const down = (cause: string) => {
      if (live()) send({ type: 'LINK_DOWN', cause });
    };
    const [command, ...args] = options.transport;
    const child = spawn(command!, [...args, ...clientEndCommand(options.farNode)], { stdio: ['pipe', 'pipe', 'pipe'] });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', reject);
    });
    const server = http2.createServer({ settings: LINK_SETTINGS });
    const incarnation: Incarnation = { child, link: undefined, spawned, session: undefined, server };
    child.stdin!.on('error', () => {});
    child.stdin!.write(codePayload(options.clientEndCode, options.clientEndArgs ?? []));
    relayStderr(child, (line) => logger.info({ link: number, line }, 'client end'));
    // 'close', not 'exit': only once its output has been read to the end, so that what the client end said last
    // (a refusal in place of its banner) is seen before the end of the transport is.
    child.on('close', (code, signal) => down(code !== null ? `the transport exited with code ${code}` : `the transport was ended by ${signal}`));

    const seeker = new BannerSeeker();
    const stdout = child.stdout!;
    const seek = (chunk: Buffer) => {
      let rest: Buffer | undefined;
      try {
        rest = seeker.push(chunk);
      } catch (err) {
        stdout.off('data', seek);
        down((err as Error).message);
        return;
      }
      if (seeker.refusal !== undefined) {
        stdout.off('data', seek);
        if (live()) send({ type: 'LINK_REFUSED', message: seeker.refusal });
        return;
      }
      if (rest === undefined) return;
      stdout.off('data', seek);
      stdout.pause();
      if (seeker.skippedBytes > 0) logger.info({ link: number, skippedBytes: seeker.skippedBytes, skipped: seeker.preview }, 'skipped what the transport printed before the link');
      if (rest.length > 0) stdout.unshift(rest);
      server.on('session', (session) => {
        incarnation.session = session;
        // One stream that stops reading must not hold the others: the link as a whole may carry far more.
        session.once('remoteSettings', () => {
          session.setLocalWindowSize(LINK_SETTINGS.initialWindowSize * 256);
          if (live()) send({ type: 'LINK_UP' });
        });
        session.on('error', (err: NodeJS.ErrnoException) => down(`HTTP/2 failed (${err.code ?? err.message})`));
        session.on('close', () => down('HTTP/2 closed'));
      });
      server.on('stream', (stream, headers) => {
        if (headers[':path'] !== SESSION_PATH) {
          stream.respond({ ':status': 404 }, { endStream: true });
          return;
        }
        stream.respond({ ':status': 200 });
        registry.accept(stream);
      });
      incarnation.link = Duplex.from({ readable: stdout, writable: child.stdin! });
      server.emit('connection', incarnation.link);
    };
    stdout.on('data', seek);
    return incarnation;
  }

  const machine = linkMachine.provide({
    actors: {
      startTransport: fromPromise(async () => {
        current = start();
        await current.spawned;
      }),
      waitForSessions: fromPromise(() => registry.whenEmpty()),
    },
    actions: {
      sendPing: () => {
        const session = current?.session;
        if (!session || session.destroyed) return send({ type: 'LINK_DOWN', cause: 'HTTP/2 closed' });
        const child = current?.child;
        session.ping((err) => {
          if (current?.child !== child) return;
          send(err ? { type: 'LINK_DOWN', cause: `PING failed (${(err as NodeJS.ErrnoException).code ?? err.message})` } : { type: 'PING_ACKED' });
        });
      },
      stopAccepting: () => {
        logger.info({ openSessions: registry.count }, 'link draining: no new sessions; commands in flight may finish');
        current?.session?.close();
        registry.stopAll();
      },
      stopSessionsNow: () => {
        logger.info({ openSessions: registry.count }, 'drain time is up: closing the remaining sessions');
        registry.stopAllNow();
      },
      closeTransport: () => {
        current?.session?.close();
        current?.child.stdin?.end();
      },
      dropTransport: () => {
        const dropped = current;
        current = undefined;
        if (!dropped) return;
        // The stream under HTTP/2 first: destroying a session whose last write is still pending on a stream (the
        // transport not reading) trips an assertion inside Node's JS stream socket.
        dropped.link?.destroy();
        dropped.session?.destroy();
        dropped.server.close();
        if (dropped.child.exitCode === null && dropped.child.signalCode === null) {
          dropped.child.kill('SIGTERM');
          setTimeout(() => dropped.child.kill('SIGKILL'), timeouts.closeGraceMs).unref();
        }
      },
      rejectEvent: ({ self }, { type }) => {
        logger.debug({ event: type, state: JSON.stringify(self.getSnapshot().value) }, 'link event not handled in this state; ignored');
      },
    },
    delays: {
      handshakeTimeout: timeouts.handshakeMs,
      pingInterval: timeouts.pingIntervalMs,
      pingTimeout: timeouts.pingTimeoutMs,
      drainTimeout: config.drainTimeoutMs,
      closeGrace: timeouts.closeGraceMs,
    },
  });
  actor = createActor(machine, {
    id: 'link',
    input: { maxAttempts: options.maxAttempts ?? timeouts.maxAttempts },
    ...(config.clock ? { clock: config.clock } : {}),
    ...(inspect ? { inspect } : {}),
  });
  let lastState = '';
  actor.subscribe({
    next: (snapshot) => {
      const state = stateText(snapshot.value);
      if (state === lastState) return;
      // Between PINGs the link stays up: that churn is for debugging only.
      const heartbeat = state.startsWith('up.') && lastState.startsWith('up.');
      lastState = state;
      const fields = { state, ...(snapshot.context.failure ? { failure: snapshot.context.failure } : {}) };
      if (heartbeat) logger.debug(fields, 'link');
      else logger.info(fields, `link ${state}`);
    },
    error: (err) => logger.error({ err }, 'link machine failed'),
  });
  actor.start();
  const done = waitFor(actor, (s) => s.status === 'done', { timeout: Infinity }).then(async (s) => {
    // The sessions end (the link's end does not wait for them, nor forever for them here), then their last audit
    // records, still completing their user ID, reach the file.
    await Promise.race([registry.whenEmpty(), new Promise((resolve) => setTimeout(resolve, config.drainTimeoutMs).unref())]);
    await options.audit?.flushedWithin(10_000);
    return (s.matches('failed') ? 'failed' : 'closed') as 'closed' | 'failed';
  });

  return {
    state: () => stateText(actor.getSnapshot().value),
    failure: () => actor.getSnapshot().context.failure,
    sessions: () => registry.list(),
    transportPid: () => current?.child.pid,
    get sessionCount() {
      return registry.count;
    },
    done,
    close() {
      send({ type: 'SHUTDOWN' });
      return done;
    },
  };
}

/** The transport's stderr (ssh's messages, the client end's log), line by line, bounded. */
function relayStderr(child: ChildProcess, log: (line: string) => void): void {
  let held = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    held += chunk.toString('utf8');
    let end: number;
    while ((end = held.indexOf('\n')) >= 0) {
      log(held.slice(0, Math.min(end, 2_000)));
      held = held.slice(end + 1);
    }
    if (held.length > 64 * 1024) held = '';
  });
}
