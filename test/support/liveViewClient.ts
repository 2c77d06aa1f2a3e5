/** A viewer of the live view over plain HTTP: the cookie its printed URL buys, pages, and the first `init` event. */
import http from 'node:http';

export interface Fetched {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function fetchText(url: string, headers: Record<string, string> = {}): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

/** Opens the printed URL (token included): its origin, and the cookie it buys with a 302. */
export async function viewerSession(pageUrl: string): Promise<{ origin: string; cookie: string; status: number }> {
  const entry = await fetchText(pageUrl);
  return { origin: new URL(pageUrl).origin, cookie: String(entry.headers['set-cookie']?.[0]).split(';')[0]!, status: entry.status };
}

/** The event stream's first event, `init` (what a page is drawn from). */
export async function liveViewInit(pageUrl: string): Promise<unknown> {
  const { origin, cookie } = await viewerSession(pageUrl);
  const events = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(`${origin}/events`, { headers: { cookie } }, resolve).on('error', reject));
  let text = '';
  for await (const chunk of events) {
    text += (chunk as Buffer).toString();
    const match = /event: init\ndata: (.*)\n\n/.exec(text);
    if (match) {
      events.destroy();
      return JSON.parse(match[1]!);
    }
  }
  throw new Error('the event stream ended before init');
}
