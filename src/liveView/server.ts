/**
 * `--ui`: the live view, served by the proxy itself on 127.0.0.1 with no CDN or internet. The page shows each
 * machine's lifecycle view (drawn ahead of time by `npm run diagrams`: diagrams/<machine>-lifecycle.svg, so no
 * Mermaid is installed with the proxy), highlights the boxes live actors are in, and lists sessions with their
 * recent transitions. Updates are pushed as Server-Sent Events: every actor opening, transition and ending at once,
 * and session statistics (verb, age, bytes) every second while a page is open.
 *
 * Any local user can reach a loopback port: every request needs the token printed at start, or the cookie it
 * buys (see ../http/viewerAccess.ts), and viewers are capped.
 */
import http from 'node:http';
import type { AnyStateMachine } from 'xstate';
import { lifecycleView } from '../machineTools/diagramViews.js';
import { VIEW_SPECS } from '../machineTools/viewSpecs.js';
import { readPackageFile, RUNTIME_FILES, type RuntimeFile } from '../packageFiles.js';
import { closeServer, isLoopbackRequest, listenOnLoopback, refuse } from '../http/loopback.js';
import { ViewerAccess } from '../http/viewerAccess.js';
import type { SessionInfo } from '../session/session.js';
import type { LiveActors, LiveChange } from './liveActors.js';

export const DEFAULT_UI_PORT = 7878;
const STATS_INTERVAL_MS = 1_000;
/** Event streams open at once; the next page gets 503. */
export const MAX_LIVE_VIEWERS = 16;
/** Queued for a page that does not keep up; past this it is dropped (it reconnects and starts from `init`). */
const MAX_VIEWER_BACKLOG_BYTES = 1024 * 1024;

export interface LiveViewSource {
  socketPath: string;
  upstreamPath: string;
  sessions(): SessionInfo[];
}

export interface LiveViewOptions {
  actors: LiveActors;
  proxy: LiveViewSource;
  machines: AnyStateMachine[];
  /** 0 picks a free port. Default 7878. */
  port?: number;
}

export interface LiveView {
  /** The URL to open, with the access token. */
  url: string;
  close(): Promise<void>;
}

const PAGE_FILES: Record<string, { file: RuntimeFile; type: string }> = {
  '/': { file: 'src/liveView/assets/index.html', type: 'text/html; charset=utf-8' },
  '/live-view.js': { file: 'src/liveView/assets/live-view.js', type: 'text/javascript; charset=utf-8' },
  '/live-view.css': { file: 'src/liveView/assets/live-view.css', type: 'text/css; charset=utf-8' },
};

/** Where the page fetches a machine's drawing from, and the package file it is. */
const diagramUrl = (machineId: string) => `/diagrams/${machineId}.svg`;
function drawingFile(machineId: string): RuntimeFile {
  const file = `diagrams/${machineId}-lifecycle.svg`;
  if (!(RUNTIME_FILES as readonly string[]).includes(file)) throw new Error(`the live view has no drawing of the ${machineId} machine (${file})`);
  return file as RuntimeFile;
}

const SECURITY_HEADERS = {
  // The drawings carry Mermaid's style elements; nothing is loaded from anywhere but this server.
  'Content-Security-Policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
};

export async function startLiveView(options: LiveViewOptions): Promise<LiveView> {
  const { actors, proxy } = options;
  // Each machine's lifecycle drawing, and which of its boxes show each state (a collapsed box stands for its
  // states). Everything the page loads is read once, here.
  const assets = new Map<string, { body: Buffer; type: string }>();
  for (const [url, { file, type }] of Object.entries(PAGE_FILES)) assets.set(url, { body: readPackageFile(file), type });
  const diagrams = options.machines.map((machine) => {
    assets.set(diagramUrl(machine.id), { body: readPackageFile(drawingFile(machine.id)), type: 'image/svg+xml' });
    return { name: machine.id, url: diagramUrl(machine.id), drawnStates: lifecycleView(machine, VIEW_SPECS[machine.id]).drawnStates };
  });
  const viewers = new Set<http.ServerResponse>();
  const access = new ViewerAccess();

  const server = http.createServer((req, res) => {
    if (!isLoopbackRequest(req) || req.method !== 'GET') return refuse(res);
    if (!access.admit(req, res, SECURITY_HEADERS)) return;
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/events') return openStream(res);
    const asset = assets.get(url.pathname);
    if (!asset) {
      res.writeHead(404, SECURITY_HEADERS).end();
      return;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.type, 'Content-Length': asset.body.length }).end(asset.body);
  });

  function openStream(res: http.ServerResponse): void {
    if (viewers.size >= MAX_LIVE_VIEWERS) {
      res.writeHead(503, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' }).end('Too many viewers.\n');
      return;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream', Connection: 'keep-alive' });
    viewers.add(res);
    res.on('close', () => viewers.delete(res));
    res.write(serverSentEvent('init', {
      socketPath: proxy.socketPath,
      upstreamPath: proxy.upstreamPath,
      diagrams,
      actors: actors.list(),
      sessions: proxy.sessions(),
    }));
  }

  function broadcast(type: string, data: unknown): void {
    // Serialized once, the same bytes for every page.
    const message = serverSentEvent(type, data);
    for (const res of viewers) {
      // A page that does not keep up is dropped (it reconnects and starts from a fresh `init`), so a slow
      // viewer cannot make the proxy buffer without bound.
      if (res.writableLength > MAX_VIEWER_BACKLOG_BYTES) res.destroy();
      else res.write(message);
    }
  }

  const unsubscribe = actors.subscribe((change: LiveChange) => {
    if (viewers.size > 0) broadcast(change.type, change);
  });
  const stats = setInterval(() => {
    if (viewers.size > 0) broadcast('sessions', proxy.sessions());
  }, STATS_INTERVAL_MS);
  stats.unref();

  const port = await listenOnLoopback(server, options.port ?? DEFAULT_UI_PORT);
  return {
    url: access.withToken(`http://127.0.0.1:${port}/`),
    async close() {
      clearInterval(stats);
      unsubscribe();
      for (const res of viewers) res.destroy();
      await closeServer(server);
    },
  };
}

function serverSentEvent(type: string, data: unknown): Buffer {
  return Buffer.from(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
}
