/**
 * Guards for the loopback-only HTTP servers (live view, inspector relay). Binding 127.0.0.1 keeps other hosts
 * out; checking Host and Origin keeps out web pages in the user's own browser (DNS rebinding, cross-site
 * WebSocket connections), which can reach 127.0.0.1 too.
 */
import http from 'node:http';
import type net from 'node:net';

export const LOOPBACK_HOST = '127.0.0.1';

const LOOPBACK_NAMES = new Set(['127.0.0.1', 'localhost', '[::1]']);

function hostnameOf(hostHeader: string): string {
  return hostHeader.startsWith('[') ? hostHeader.slice(0, hostHeader.indexOf(']') + 1) : hostHeader.split(':')[0] ?? '';
}

/** The request names a loopback host, and comes from no page or from one served on loopback. */
export function isLoopbackRequest(req: http.IncomingMessage): boolean {
  const host = req.headers.host;
  if (host === undefined || !LOOPBACK_NAMES.has(hostnameOf(host).toLowerCase())) return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return LOOPBACK_NAMES.has(new URL(origin).host.replace(/:\d+$/, '').toLowerCase());
  } catch {
    return false;
  }
}

export function refuse(res: http.ServerResponse): void {
  res.writeHead(403, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end('Only loopback requests are served.\n');
}

/** Listens on 127.0.0.1:port (0 picks a free port) and resolves with the port bound. */
export function listenOnLoopback(server: http.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, LOOPBACK_HOST, () => {
      server.off('error', onError);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

export function closeServer(server: http.Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
