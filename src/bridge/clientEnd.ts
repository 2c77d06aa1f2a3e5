/**
 * The client end of a bridge link, on the far side (a container, a remote host): it binds the path where gpg there
 * looks for its agent, and opens one HTTP/2 stream over the link for each connection, relaying its bytes as they
 * are. Everything Assuan (the session machine, the policy, the limits) runs at the agent end: this end is not
 * trusted, and holds nothing worth taking.
 *
 * It runs as long as its link (the transport's stdin and stdout): when the link ends, each open client gets one
 * ERR naming the cause, the socket is removed, and the process exits. It logs to stderr; stdout is the link.
 */
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { Duplex, type Readable, type Writable } from 'node:stream';
import type { Logger } from 'pino';
import { closeListener, ensurePrivateDirectory, identityOf, isOurs, listenPrivately, ProxyStartError, removeOwnSocket, type SocketIdentity } from '../listenSocket.js';
import { errLine } from '../protocol/errors.js';
import { greetingAt } from '../upstream/daemons.js';
import { BANNER, LINK_AUTHORITY, LINK_SETTINGS, REFUSAL, SESSION_PATH } from './handshake.js';

export interface ClientEndOptions {
  /** Where gpg on this side looks for its agent (`gpgconf --list-dirs agent-socket` here). */
  socketPath: string;
  /** The link: what the agent end sends, and where this end writes. */
  input: Readable;
  output: Writable;
  logger: Logger;
  /** How long a client that connects before the link is up waits for it, before it gets an ERR. */
  linkWaitMs: number;
}

/** Runs the client end until its link ends; resolves with the process's exit code. */
export async function runClientEnd(options: ClientEndOptions): Promise<number> {
  const { logger, socketPath } = options;
  const clients = new Set<RelayedClient>();
  /** Wakes the clients waiting for the link to come up (or to be lost). */
  const waiting = new Set<() => void>();
  let link: http2.ClientHttp2Session | undefined;
  let up = false;
  let draining = false;
  let downCause: string | undefined;
  let linkEnded!: (cause: string) => void;
  const ended = new Promise<string>((resolve) => (linkEnded = resolve));
  const down = (cause: string) => {
    if (downCause !== undefined) return;
    downCause = cause;
    for (const wake of waiting) wake();
    linkEnded(cause);
  };

  const listener = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    const client = new RelayedClient(socket);
    clients.add(client);
    socket.on('close', () => clients.delete(client));
    void startRelay(client);
  });
  listener.on('error', (err) => logger.error({ err }, 'listener error'));

  async function startRelay(client: RelayedClient): Promise<void> {
    if (!up && downCause === undefined) {
      const inTime = await new Promise<boolean>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          waiting.delete(wake);
          resolve(true);
        };
        const timer = setTimeout(() => {
          waiting.delete(wake);
          resolve(false);
        }, options.linkWaitMs);
        waiting.add(wake);
      });
      if (!inTime) return client.fail(`the link to the agent is not up after ${options.linkWaitMs} ms`);
    }
    if (draining) return client.fail('the agent end is shutting down');
    if (!link || downCause !== undefined || link.closed || link.destroyed) return client.fail(`the link to the agent is down: ${downCause ?? 'closed'}`);
    client.relay(link.request({ ':method': 'POST', ':path': SESSION_PATH }, { endStream: false }));
  }

  let ours: SocketIdentity;
  try {
    ours = await bindAgentPath(listener, socketPath);
  } catch (err) {
    // In place of the banner: the agent end gives up rather than start this end again and again.
    const message = (err as Error).message;
    logger.error({ socketPath }, message);
    options.output.end(Buffer.concat([REFUSAL, Buffer.from(`${message.replace(/[\r\n]/g, ' ')}\n`)]));
    return 1;
  }
  logger.info({ socketPath }, 'listening');
  const watcher = watchForTakeover(socketPath, () => ours, logger, async () => {
    ours = await rebind(listener, socketPath, logger);
  });

  // The path is ours: the agent end skips whatever the transport printed before this line, then HTTP/2 begins.
  options.output.write(BANNER);
  const stdio = Duplex.from({ readable: options.input, writable: options.output });
  const session = http2.connect(`http://${LINK_AUTHORITY}`, { createConnection: () => stdio, settings: LINK_SETTINGS });
  link = session;
  session.once('remoteSettings', () => {
    up = true;
    // One stream that stops reading must not hold the others: the link as a whole may carry far more.
    session.setLocalWindowSize(LINK_SETTINGS.initialWindowSize * 256);
    logger.info('link up');
    for (const wake of waiting) wake();
  });
  session.on('error', (err: NodeJS.ErrnoException) => down(`HTTP/2 failed (${err.code ?? err.message})`));
  // The agent end drains: sessions open go on, new ones are refused until the link closes.
  session.on('goaway', () => {
    draining = true;
  });
  session.on('close', () => down('the link closed'));
  options.input.on('end', () => down('the link ended'));

  const cause = await ended;
  logger.info({ cause, openClients: clients.size }, 'link down: closing');
  watcher.close();
  closeListener(listener, socketPath, ours);
  removeOwnSocket(socketPath, ours);
  for (const client of clients) client.fail(`the link to the agent ended: ${cause}`);
  // The stream under HTTP/2 first (see agentEnd.ts: a pending write would trip an assertion in Node).
  stdio.destroy();
  session.destroy();
  return 0;
}

/**
 * One local client and its stream. Bytes go both ways as they come (HTTP/2 flow control and the socket's own
 * backpressure bound what is held), half-closes included. If the stream ends abnormally, the client is told why in
 * one ERR line, when the answer stopped at a line boundary (inside a line, an ERR would be part of that line).
 */
class RelayedClient {
  private atLineStart = true;
  private finished = false;

  constructor(readonly socket: net.Socket) {
    socket.on('error', () => socket.destroy());
  }

  relay(stream: http2.ClientHttp2Stream): void {
    const { socket } = this;
    stream.on('data', (chunk: Buffer) => {
      this.atLineStart = chunk[chunk.length - 1] === 0x0a;
      if (!socket.write(chunk)) stream.pause();
    });
    socket.on('drain', () => stream.resume());
    stream.on('end', () => {
      this.finished = true;
      socket.end();
    });
    stream.on('error', () => {});
    stream.on('close', () => {
      if (!this.finished) this.fail('the link to the agent was lost');
    });
    socket.pipe(stream);
    socket.on('close', () => {
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    });
    socket.resume();
  }

  fail(reason: string): void {
    if (this.finished) return;
    this.finished = true;
    const { socket } = this;
    if (socket.destroyed || socket.writableEnded) return;
    if (this.atLineStart) socket.end(errLine('connectFailed', reason));
    else socket.end();
    setTimeout(() => socket.destroy(), 2_000).unref();
  }
}

/**
 * Binds the path gpg looks for its agent at: a stale socket there is replaced; a live one is refused with what to
 * do (a gpg-agent started here would serve empty keyrings in place of the forwarded agent).
 */
async function bindAgentPath(listener: net.Server, socketPath: string): Promise<SocketIdentity> {
  ensurePrivateDirectory(path.dirname(socketPath));
  const stat = lstat(socketPath);
  if (stat && !stat.isSocket()) throw new ProxyStartError(`${socketPath} exists and is not a socket; not touching it`);
  if (stat) {
    const greeting = await greetingAt(socketPath);
    if (greeting !== undefined) {
      throw new ProxyStartError(
        greeting.startsWith('OK')
          ? `a gpg-agent is running at ${socketPath}: stop it (gpgconf --kill gpg-agent) and keep it from starting again (${NO_AUTOSTART_ADVICE})`
          : `something is already listening on ${socketPath}`,
      );
    }
    fs.unlinkSync(socketPath);
  }
  return listenPrivately(listener, socketPath);
}

const NO_AUTOSTART_ADVICE = "no-autostart in gpg.conf and gpgsm.conf; 'systemctl --user mask gpg-agent.socket' where systemd starts it";

/** Watches the socket's directory: if our socket is replaced (a gpg-agent started here), says so loudly and binds again. */
function watchForTakeover(socketPath: string, ours: () => SocketIdentity, logger: Logger, rebindNow: () => Promise<void>): fs.FSWatcher {
  let rebinding = false;
  const watcher = fs.watch(path.dirname(socketPath), (_event, name) => {
    if (rebinding || (name !== null && name !== path.basename(socketPath))) return;
    const now = identityOf(socketPath);
    if (now === undefined || isOurs(socketPath, ours())) return;
    rebinding = true;
    logger.warn(
      { socketPath },
      `something replaced our socket (a gpg-agent started on this side?): taking the path back; to stop it: gpgconf --kill gpg-agent, and ${NO_AUTOSTART_ADVICE}`,
    );
    rebindNow()
      .catch((err: unknown) => logger.error({ socketPath, err }, 'could not bind the socket again'))
      .finally(() => {
        rebinding = false;
      });
  });
  return watcher;
}

async function rebind(listener: net.Server, socketPath: string, logger: Logger): Promise<SocketIdentity> {
  // libuv unlinks the path when the listener closes: that removes the intruder's socket, and ours is bound anew.
  await new Promise<void>((resolve) => listener.close(() => resolve()));
  if (lstat(socketPath)) fs.unlinkSync(socketPath);
  const identity = await listenPrivately(listener, socketPath);
  logger.warn({ socketPath }, 'socket bound again');
  return identity;
}

function lstat(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
