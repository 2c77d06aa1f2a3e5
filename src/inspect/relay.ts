/**
 * `--inspect` with no URL: our own inspector relay, bound to 127.0.0.1 only (the library's relay binds every
 * interface, with no checks). The proxy streams to it over WebSocket; a browser opening its page gets the
 * Stately inspector (hosted at stately.ai: the browser needs internet, the proxy's host does not) fed with
 * what the relay receives. Late viewers get the last messages first, so they see the live actors.
 */
import http from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { closeServer, isLoopbackRequest, listenOnLoopback, refuse } from '../http/loopback.js';

export const DEFAULT_INSPECTOR_PORT = 8080;
const INSPECTOR_UI = 'https://stately.ai/inspect';
const KEPT_MESSAGES = 500;

export interface InspectorRelay {
  port: number;
  /** Where the proxy sends its inspection stream. */
  streamUrl: string;
  /** The page to open in a browser. */
  pageUrl: string;
  close(): Promise<void>;
}

export async function startInspectorRelay(port = DEFAULT_INSPECTOR_PORT): Promise<InspectorRelay> {
  const server = http.createServer((req, res) => {
    if (!isLoopbackRequest(req)) return refuse(res);
    if (req.url !== '/') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(bridgePage());
  });
  // noServer: upgrades are ours to check, and the HTTP server's errors (EADDRINUSE) stay with the caller of
  // listen instead of being re-emitted on a WebSocketServer nobody listens to (an uncaught exception).
  const sockets = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (!isLoopbackRequest(req)) {
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
      return;
    }
    sockets.handleUpgrade(req, socket, head, (ws) => sockets.emit('connection', ws, req));
  });
  const kept: string[] = [];
  sockets.on('connection', (socket) => {
    for (const message of kept) socket.send(message);
    socket.on('message', (data) => {
      const message = data.toString();
      kept.push(message);
      if (kept.length > KEPT_MESSAGES) kept.shift();
      for (const other of sockets.clients) if (other !== socket && other.readyState === WebSocket.OPEN) other.send(message);
    });
  });
  const bound = await listenOnLoopback(server, port);
  return {
    port: bound,
    streamUrl: `ws://127.0.0.1:${bound}`,
    pageUrl: `http://localhost:${bound}/`,
    async close() {
      for (const client of sockets.clients) client.terminate();
      sockets.close();
      await closeServer(server);
    },
  };
}

/** The page: the hosted inspector in a frame, fed over postMessage with what arrives on this relay's socket. */
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
const socket = new WebSocket('ws://' + location.host);
socket.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (ready) frame.contentWindow.postMessage(m, '*'); else waiting.push(m);
};
</script></body></html>
`;
}
