/**
 * `--ui` as another local user meets it: the live view's server over real loopback sockets, fed by real
 * machine definitions and a session source of the test's.
 */
import http from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { InspectionEvent } from 'xstate';
import { serverMachine } from '../../machines/server.js';
import { sessionMachine } from '../../machines/session.js';
import { LiveActors } from '../../src/liveView/liveActors.js';
import { startLiveView, type LiveView } from '../../src/liveView/server.js';

const views: LiveView[] = [];
const streams: http.ClientRequest[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const req of streams.splice(0)) req.destroy();
  for (const view of views.splice(0)) await view.close();
});

async function liveView(): Promise<{ view: LiveView; actors: LiveActors; base: URL; token: string }> {
  const actors = new LiveActors();
  const source = { socketPath: '/run/test/S.gpg-agent', upstreamPath: '/run/test/S.agent', sessions: () => [] };
  const view = await startLiveView({ actors, proxy: source, machines: [serverMachine, sessionMachine], port: 0 });
  views.push(view);
  const url = new URL(view.url);
  const token = url.searchParams.get('token') ?? '';
  url.search = '';
  return { view, actors, base: url, token };
}

function get(url: URL, headers: Record<string, string> = {}): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      if (res.headers['content-type']?.startsWith('text/event-stream')) streams.push(req);
      else res.resume();
      resolve(res);
    });
    req.on('error', reject);
  });
}

/** An SSE stream, and the event types it has received. */
async function openStream(base: URL, cookie: string): Promise<{ status: number; types: string[]; next(type: string): Promise<void> }> {
  const res = await get(new URL('/events', base), { cookie });
  const types: string[] = [];
  const waiters: Array<() => void> = [];
  res.on('data', (chunk: Buffer) => {
    for (const m of chunk.toString().matchAll(/^event: (\S+)$/gm)) types.push(m[1]!);
    for (const wake of waiters.splice(0)) wake();
  });
  return {
    status: res.statusCode ?? 0,
    types,
    async next(type: string) {
      while (!types.includes(type)) await new Promise<void>((r) => waiters.push(r));
    },
  };
}

async function cookieFor(base: URL, token: string): Promise<string> {
  if (token === '') return ''; // (the live view before tokens: lets the other checks run against it)
  const res = await get(new URL(`/?token=${token}`, base));
  expect(res.statusCode).toBe(302);
  expect(res.headers.location).toBe('/');
  const setCookie = res.headers['set-cookie']![0]!;
  expect(setCookie).toMatch(/; HttpOnly/);
  expect(setCookie).toMatch(/; SameSite=Strict/);
  return setCookie.split(';')[0]!;
}

describe('live view access', () => {
  it('page, assets and the event stream answer 401 without the token; the token gives a cookie and a redirect', async () => {
    const { base, token } = await liveView();
    // Before the fix the URL had no token, and everything was served to anyone.
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    for (const path of ['/', '/live-view.js', '/live-view.css', '/diagrams/session.svg', '/diagrams/server.svg', '/events']) {
      expect((await get(new URL(path, base))).statusCode, path).toBe(401);
      expect((await get(new URL(`${path}?token=${'A'.repeat(43)}`, base))).statusCode, path).toBe(401);
    }
    const cookie = await cookieFor(base, token);
    for (const path of ['/', '/live-view.js', '/live-view.css', '/diagrams/session.svg', '/diagrams/server.svg']) {
      expect((await get(new URL(path, base), { cookie })).statusCode, path).toBe(200);
    }
    const stream = await openStream(base, cookie);
    expect(stream.status).toBe(200);
    await stream.next('init');
  });

  it('16 viewers at once: the next one gets 503', async () => {
    const { base, token } = await liveView();
    const cookie = await cookieFor(base, token);
    for (let i = 0; i < 16; i++) expect((await openStream(base, cookie)).status).toBe(200);
    // Before the fix there was no cap: 500 viewers slowed the proxy 15 times.
    expect((await openStream(base, cookie)).status).toBe(503);
  });

  it('an update is serialized once, whatever the number of viewers', async () => {
    const { base, token, actors } = await liveView();
    const cookie = await cookieFor(base, token);
    const viewers = [];
    for (let i = 0; i < 4; i++) {
      const stream = await openStream(base, cookie);
      await stream.next('init');
      viewers.push(stream);
    }
    const stringify = vi.spyOn(JSON, 'stringify');
    actors.inspect({
      type: '@xstate.snapshot',
      actorRef: { id: 'session-9' },
      snapshot: { status: 'active', value: 'ready', machine: { id: 'session' } },
      event: { type: 'AGENT.OK' },
    } as unknown as InspectionEvent);
    for (const viewer of viewers) await viewer.next('opened');
    // Before the fix: once per viewer.
    expect(stringify.mock.calls.filter(([value]) => (value as { type?: string })?.type === 'opened')).toHaveLength(1);
  });
});
