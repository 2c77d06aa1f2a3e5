/**
 * `--inspect` with no URL: our own inspector relay, bound to 127.0.0.1 only (the library's relay binds every
 * interface, with no checks). The proxy publishes its inspection stream to it over WebSocket; a browser opening
 * its page gets the Stately inspector (hosted at stately.ai: the browser needs internet, the proxy's host does
 * not) fed with what the proxy published. Late viewers get the last messages first, so they see the live actors.
 *
 * Any local user can reach a loopback port, so: only the proxy may publish (its stream URL carries a secret of
 * its own); viewers need the printed token (see ../http/viewerAccess.ts) and can send nothing that is relayed;
 * what is kept, what one message may weigh, how many watch and what is queued for each are all bounded.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { closeServer, isLoopbackRequest, listenOnLoopback, refuse } from '../http/loopback.js';
import { ViewerAccess } from '../http/viewerAccess.js';
import { KeptMessages } from './keptMessages.js';

export const DEFAULT_INSPECTOR_PORT = 8080;
const INSPECTOR_UI = 'https://stately.ai/inspect';
const PUBLISH_PATH = '/publish';

export const RELAY_LIMITS = {
  /** Messages replayed to a new viewer: at most this many... */
  keptMessages: 500,
  /** ...and at most this many bytes. */
  keptBytes: 4 * 1024 * 1024,
  /** One message from the proxy; a larger one closes its stream (1009). */
  maxMessageBytes: 1024 * 1024,
  /** Viewers send nothing we use. */
  maxViewerMessageBytes: 1024,
  /** Viewers at once; the next is answered 503. */
  maxViewers: 16,
  /** Queued for a viewer that does not keep up; past this it is dropped (it can reload the page). */
  maxViewerBacklogBytes: 8 * 1024 * 1024,
};

export interface InspectorRelay {
  port: number;
  /** Where the proxy sends its inspection stream (carries the publishing secret: not for viewers). */
  streamUrl: string;
  /** The page to open in a browser, with the viewer token. */
  pageUrl: string;
  /** A viewer's WebSocket URL, with the viewer token (for viewers other than the page). */
  viewerUrl: string;
  close(): Promise<void>;
}

export async function startInspectorRelay(port = DEFAULT_INSPECTOR_PORT, limits = RELAY_LIMITS): Promise<InspectorRelay> {
  const access = new ViewerAccess();
  const publishSecret = Buffer.from(crypto.randomBytes(32).toString('base64url'));
  const kept = new KeptMessages(limits.keptMessages, limits.keptBytes);

  const server = http.createServer((req, res) => {
    if (!isLoopbackRequest(req)) return refuse(res);
    if (!access.admit(req, res, { 'Cache-Control': 'no-store' })) return;
    if (new URL(req.url ?? '/', 'http://localhost').pathname !== '/') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(bridgePage());
  });

  // noServer: upgrades are ours to check, and the HTTP server's errors (EADDRINUSE) stay with the caller of
  // listen instead of being re-emitted on a WebSocketServer nobody listens to (an uncaught exception).
  const publishers = new WebSocketServer({ noServer: true, maxPayload: limits.maxMessageBytes });
  const viewers = new WebSocketServer({ noServer: true, maxPayload: limits.maxViewerMessageBytes });

  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!isLoopbackRequest(req)) return rejectUpgrade(socket, 403, 'Forbidden');
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === PUBLISH_PATH) {
      if (!sameSecret(url.searchParams.get('key'), publishSecret)) return rejectUpgrade(socket, 403, 'Forbidden');
      publishers.handleUpgrade(req, socket, head, (ws) => publish(ws));
      return;
    }
    if (!access.allows(req)) return rejectUpgrade(socket, 401, 'Unauthorized');
    if (viewers.clients.size >= limits.maxViewers) return rejectUpgrade(socket, 503, 'Service Unavailable');
    viewers.handleUpgrade(req, socket, head, (ws) => watch(ws));
  });

  function publish(ws: WebSocket): void {
    ws.on('error', () => {});
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) return;
      kept.add(data);
      // The same buffer goes to every viewer: nothing is converted or copied per viewer.
      for (const viewer of viewers.clients) sendOrDrop(viewer, data);
    });
  }

  function watch(ws: WebSocket): void {
    ws.on('error', () => {});
    // What a viewer sends is never relayed.
    ws.on('message', () => {});
    for (const message of kept.list()) sendOrDrop(ws, message);
  }

  function sendOrDrop(viewer: WebSocket, message: Buffer): void {
    if (viewer.readyState !== WebSocket.OPEN) return;
    if (viewer.bufferedAmount > limits.maxViewerBacklogBytes) viewer.terminate();
    else viewer.send(message, { binary: false });
  }

  const bound = await listenOnLoopback(server, port);
  return {
    port: bound,
    streamUrl: `ws://127.0.0.1:${bound}${PUBLISH_PATH}?key=${publishSecret.toString()}`,
    pageUrl: access.withToken(`http://localhost:${bound}/`),
    viewerUrl: access.withToken(`ws://127.0.0.1:${bound}/`),
    async close() {
      for (const client of [...publishers.clients, ...viewers.clients]) client.terminate();
      publishers.close();
      viewers.close();
      await closeServer(server);
    },
  };
}

function sameSecret(given: string | null, expected: Buffer): boolean {
  if (given === null) return false;
  const candidate = Buffer.from(given);
  return candidate.length === expected.length && crypto.timingSafeEqual(candidate, expected);
}

function rejectUpgrade(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

/**
 * The page: the hosted inspector in a frame, fed over postMessage with what arrives on this relay's socket
 * (which the browser opens with the access cookie).
 */
function bridgePage(): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>assuan-proxy: XState inspector</title>
<style>html,body,iframe{margin:0;height:100%;width:100%;border:0}</style></head>
<body><iframe id="inspector" src="${INSPECTOR_UI}"></iframe>
<script>
const frame = document.getElementById('inspector');
const waiting = [];
let ready = false;
window.addEventListener('message', (e) => {
  if (e.data && e.data.type === '@statelyai.connected') {
    ready = true;
    for (const m of waiting.splice(0)) frame.contentWindow.postMessage(m, '*');
  }
});
const socket = new WebSocket('ws://' + location.host + '/');
socket.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (ready) frame.contentWindow.postMessage(m, '*'); else waiting.push(m);
};
</script></body></html>
`;
}
