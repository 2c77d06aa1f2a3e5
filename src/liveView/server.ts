/**
 * `--ui`: the live view, served by the proxy itself on 127.0.0.1 with no CDN or internet. The page draws each
 * machine's diagram (Mermaid from the installed package, the diagram text from the machine definitions, as
 * `npm run diagrams` does), highlights the states live actors are in, and lists sessions with their recent
 * transitions. Updates are pushed as Server-Sent Events: every actor opening, transition and ending at once,
 * and session statistics (verb, age, bytes) every second while a page is open.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { AnyStateMachine } from 'xstate';
import { toMermaid } from '../machineTools/mermaid.js';
import { closeServer, isLoopbackRequest, listenOnLoopback, refuse } from '../http/loopback.js';
import type { SessionInfo } from '../session.js';
import type { LiveActors, LiveChange } from './liveActors.js';

export const DEFAULT_UI_PORT = 7878;
const STATS_INTERVAL_MS = 1_000;

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
  url: string;
  close(): Promise<void>;
}

const ASSET_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'assets');
const MERMAID_BUNDLE = path.join(path.dirname(createRequire(import.meta.url).resolve('mermaid')), 'mermaid.min.js');

const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: path.join(ASSET_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/live-view.js': { file: path.join(ASSET_DIR, 'live-view.js'), type: 'text/javascript; charset=utf-8' },
  '/live-view.css': { file: path.join(ASSET_DIR, 'live-view.css'), type: 'text/css; charset=utf-8' },
  '/mermaid.min.js': { file: MERMAID_BUNDLE, type: 'text/javascript; charset=utf-8' },
};

const SECURITY_HEADERS = {
  // Mermaid puts style elements in its SVG; nothing is loaded from anywhere but this server.
  'Content-Security-Policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:",
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-store',
};

export async function startLiveView(options: LiveViewOptions): Promise<LiveView> {
  const { actors, proxy } = options;
  const diagrams = options.machines.map((machine) => ({ name: machine.id, mermaid: toMermaid(machine) }));
  const viewers = new Set<http.ServerResponse>();

  const server = http.createServer((req, res) => {
    if (!isLoopbackRequest(req) || req.method !== 'GET') return refuse(res);
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/events') return openStream(res);
    const asset = STATIC[url.pathname];
    if (!asset) {
      res.writeHead(404, SECURITY_HEADERS).end();
      return;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.type });
    fs.createReadStream(asset.file).pipe(res);
  });

  function openStream(res: http.ServerResponse): void {
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': 'text/event-stream', Connection: 'keep-alive' });
    viewers.add(res);
    res.on('close', () => viewers.delete(res));
    send(res, 'init', {
      socketPath: proxy.socketPath,
      upstreamPath: proxy.upstreamPath,
      diagrams,
      actors: actors.list(),
      sessions: proxy.sessions(),
    });
  }

  function send(res: http.ServerResponse, type: string, data: unknown): void {
    res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  function broadcast(type: string, data: unknown): void {
    for (const res of viewers) {
      // A page that does not keep up is dropped (it reconnects and starts from a fresh `init`), so a slow
      // viewer cannot make the proxy buffer without bound.
      if (res.writableLength > 1024 * 1024) res.destroy();
      else send(res, type, data);
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
    url: `http://127.0.0.1:${port}/`,
    async close() {
      clearInterval(stats);
      unsubscribe();
      for (const res of viewers) res.destroy();
      await closeServer(server);
    },
  };
}
