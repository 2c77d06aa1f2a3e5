/**
 * Who may watch: a loopback port is open to every local user, and what the viewers show (session states, verbs,
 * socket paths, byte counts) is theirs only who started the proxy. As Jupyter does, a random token is printed
 * once in the URL to open; a request carrying it gets an HttpOnly, SameSite=Strict cookie and a redirect to the
 * same URL without the token (so it leaves the address bar and history); every other request needs the cookie
 * (a WebSocket may carry the token in its URL instead, it cannot follow a redirect).
 */
import crypto from 'node:crypto';
import type http from 'node:http';

const TOKEN_BYTES = 32;

export class ViewerAccess {
  readonly token = crypto.randomBytes(TOKEN_BYTES).toString('base64url');
  private readonly expected = Buffer.from(this.token);

  /** `url` with the token in its query: the URL to print. */
  withToken(url: string): string {
    const withToken = new URL(url);
    withToken.searchParams.set('token', this.token);
    return withToken.href;
  }

  /** The request carries the right token (query) or cookie. */
  allows(req: http.IncomingMessage): boolean {
    return this.tokenInQuery(req) || this.matches(cookieValue(req.headers.cookie, cookieName(req)));
  }

  /**
   * For a plain HTTP request: true when it may be served. Otherwise the answer has been sent: a redirect that
   * sets the cookie (right token in the query), or 401.
   */
  admit(req: http.IncomingMessage, res: http.ServerResponse, headers: http.OutgoingHttpHeaders = {}): boolean {
    if (this.tokenInQuery(req)) {
      const target = new URL(req.url ?? '/', 'http://localhost');
      target.searchParams.delete('token');
      res.writeHead(302, {
        ...headers,
        Location: target.pathname + target.search,
        'Set-Cookie': `${cookieName(req)}=${this.token}; HttpOnly; SameSite=Strict; Path=/`,
      });
      res.end();
      return false;
    }
    if (this.matches(cookieValue(req.headers.cookie, cookieName(req)))) return true;
    res.writeHead(401, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('Open the URL with the token that assuan-proxy printed when it started.\n');
    return false;
  }

  private tokenInQuery(req: http.IncomingMessage): boolean {
    return this.matches(new URL(req.url ?? '/', 'http://localhost').searchParams.get('token') ?? undefined);
  }

  private matches(candidate: string | undefined): boolean {
    if (candidate === undefined) return false;
    const given = Buffer.from(candidate);
    return given.length === this.expected.length && crypto.timingSafeEqual(given, this.expected);
  }
}

/** Cookies are per host, not per port: the port in the name keeps two servers on localhost apart. */
function cookieName(req: http.IncomingMessage): string {
  return `assuan-proxy-${req.socket.localPort ?? 0}`;
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
