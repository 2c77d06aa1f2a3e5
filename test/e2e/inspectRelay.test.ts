/**
 * The `--inspect` relay as another local user meets it: over real loopback sockets, with the proxy's own
 * stream (its stream URL) publishing, and viewers on the page's URL.
 */
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { RELAY_LIMITS, startInspectorRelay, type InspectorRelay } from '../../src/inspect/relay.js';

const relays: InspectorRelay[] = [];
const sockets: Array<WebSocket | net.Socket> = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) if (s instanceof WebSocket) s.terminate(); else s.destroy();
  for (const relay of relays.splice(0)) await relay.close();
});

async function relayWith(limits: Partial<typeof RELAY_LIMITS> = {}): Promise<InspectorRelay> {
  const relay = await startInspectorRelay(0, { ...RELAY_LIMITS, ...limits });
  relays.push(relay);
  return relay;
}

/** The viewers' WebSocket URL: the page's address (with whatever access token it carries) as ws://. */
function viewerUrl(relay: InspectorRelay): string {
  return relay.pageUrl.replace(/^http:\/\/localhost/, 'ws://127.0.0.1');
}

/** An open socket, and every text message it receives. */
async function connect(url: string): Promise<{ ws: WebSocket; received: string[]; next(): Promise<string> }> {
  const ws = new WebSocket(url);
  sockets.push(ws);
  const received: string[] = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (data) => {
    received.push(data.toString());
    for (const wake of waiters.splice(0)) wake();
  });
  await once(ws, 'open');
  let read = 0;
  return {
    ws,
    received,
    async next() {
      while (received.length <= read) await new Promise<void>((r) => waiters.push(r));
      return received[read++]!;
    },
  };
}

/** Resolves once the relay has handled every frame this socket sent before (frames are handled in order). */
async function handled(ws: WebSocket): Promise<void> {
  ws.ping();
  await once(ws, 'pong');
}

/** Reads until `marker` arrives; what came before it. */
async function until(viewer: { next(): Promise<string> }, marker: string): Promise<string[]> {
  const before: string[] = [];
  for (let m = await viewer.next(); m !== marker; m = await viewer.next()) before.push(m);
  return before;
}

describe('inspector relay: who may publish', () => {
  it('what a viewer sends reaches no other viewer and is not replayed to later ones', async () => {
    const relay = await relayWith();
    const proxy = await connect(relay.streamUrl);
    const attacker = await connect(viewerUrl(relay));
    const watcher = await connect(viewerUrl(relay));
    attacker.ws.send(JSON.stringify({ type: '@xstate.event', event: { type: 'INJECTED' } }));
    await handled(attacker.ws).catch(() => {});
    proxy.ws.send('{"type":"marker"}');
    // Before the fix the relay rebroadcast whatever any socket sent: the watcher got INJECTED first.
    expect(await until(watcher, '{"type":"marker"}')).toEqual([]);
    const late = await connect(viewerUrl(relay));
    proxy.ws.send('{"type":"marker2"}');
    expect(await until(late, '{"type":"marker2"}')).toEqual(['{"type":"marker"}']);
  });

  it('the publishing path needs the secret of the proxy\'s stream URL', async () => {
    const relay = await relayWith();
    const guessed = new URL(relay.streamUrl);
    guessed.search = '';
    const intruder = new WebSocket(guessed.href);
    sockets.push(intruder);
    const [err] = (await once(intruder, 'error')) as [Error];
    expect(err.message).toMatch(/Unexpected server response: 40[13]/);
  });
});

describe('inspector relay: bounds', () => {
  it('keeps the newest messages within both the count and the byte bound for late viewers', async () => {
    const relay = await relayWith({ keptMessages: 5, keptBytes: 3_500 });
    const proxy = await connect(relay.streamUrl);
    const messages = Array.from({ length: 10 }, (_, i) => JSON.stringify({ type: 'm', i, pad: 'x'.repeat(1_000) }));
    for (const m of messages) proxy.ws.send(m);
    await handled(proxy.ws);
    const late = await connect(viewerUrl(relay));
    proxy.ws.send('{"type":"marker"}');
    // 3 of about 1 KB fit in 3,500 bytes. Before the fix all 10 were kept (up to 500, of any size).
    expect(await until(late, '{"type":"marker"}')).toEqual(messages.slice(-3));
  });

  it('a message over the size limit closes the stream that sent it (1009) and reaches no viewer', async () => {
    const relay = await relayWith({ maxMessageBytes: 1_000 });
    const viewer = await connect(viewerUrl(relay));
    const first = await connect(relay.streamUrl);
    first.ws.send(JSON.stringify({ type: 'big', pad: 'x'.repeat(2_000) }));
    const [code] = (await once(first.ws, 'close')) as [number];
    expect(code).toBe(1009);
    const second = await connect(relay.streamUrl);
    second.ws.send('{"type":"marker"}');
    expect(await until(viewer, '{"type":"marker"}')).toEqual([]);
  });

  it('a viewer that stops reading is dropped once its queue passes the bound; a reading viewer gets everything', async () => {
    const relay = await relayWith({ maxViewerBacklogBytes: 256 * 1024 });
    const proxy = await connect(relay.streamUrl);
    const reader = await connect(viewerUrl(relay));
    const stalled = await stalledViewer(viewerUrl(relay));
    // Far more than the loopback socket buffers can absorb, so the relay's queue for the stalled viewer grows.
    const chunk = JSON.stringify({ type: 'm', pad: 'x'.repeat(64 * 1024) });
    // One message at a time, each read by the reading viewer before the next is sent: its queue never holds more
    // than one, whatever the machine's load (sent all at once, a loaded run let the reader fall 256 KiB behind and
    // be dropped too, and the test waited for a marker that never came).
    for (let i = 0; i < 400; i++) {
      proxy.ws.send(chunk);
      expect(await reader.next()).toBe(chunk);
    }
    proxy.ws.send('{"type":"marker"}');
    await handled(proxy.ws);
    expect(await until(reader, '{"type":"marker"}')).toEqual([]);
    // Read what the stalled viewer was sent: before the fix the relay queued it all (the marker arrives at the
    // end); now the connection ends before it.
    const { sawMarker } = await stalled.drain('{"type":"marker"}');
    expect(sawMarker).toBe(false);
  });
});

describe('inspector relay: viewers need the token', () => {
  it('the page and the viewer socket answer 401 without the token, and the next viewer past the cap gets 503', async () => {
    const relay = await relayWith({ maxViewers: 2 });
    const bare = new URL(relay.pageUrl);
    expect(bare.searchParams.get('token')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    bare.search = '';
    expect((await fetch(bare, { redirect: 'manual' })).status).toBe(401);
    const wrong = new URL(bare);
    wrong.searchParams.set('token', 'A'.repeat(43));
    expect((await fetch(wrong, { redirect: 'manual' })).status).toBe(401);
    const anonymous = new WebSocket(viewerUrl(relay).replace(/\?.*$/, ''));
    sockets.push(anonymous);
    expect(((await once(anonymous, 'error')) as [Error])[0].message).toContain('401');

    const withToken = await fetch(relay.pageUrl, { redirect: 'manual' });
    expect(withToken.status).toBe(302);
    expect(withToken.headers.get('location')).toBe('/');
    const cookie = withToken.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const pair = cookie.split(';')[0]!;
    expect((await fetch(bare, { headers: { cookie: pair } })).status).toBe(200);
    const byCookie = new WebSocket(viewerUrl(relay).replace(/\?.*$/, ''), { headers: { cookie: pair } });
    sockets.push(byCookie);
    await once(byCookie, 'open');
    await connect(viewerUrl(relay));
    const third = new WebSocket(viewerUrl(relay));
    sockets.push(third);
    expect(((await once(third, 'error')) as [Error])[0].message).toContain('503');
  });
});

/** A viewer on a raw socket that completes the WebSocket handshake and then reads nothing until drained. */
async function stalledViewer(url: string): Promise<{ drain(marker: string): Promise<{ sawMarker: boolean }> }> {
  const { port, pathname, search } = new URL(url);
  const socket = net.connect({ host: '127.0.0.1', port: Number(port) });
  sockets.push(socket);
  await once(socket, 'connect');
  socket.write(
    `GET ${pathname}${search} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${Buffer.alloc(16, 1).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let head = Buffer.alloc(0);
  while (!head.includes('\r\n\r\n')) head = Buffer.concat([head, (await once(socket, 'data'))[0] as Buffer]);
  if (!head.toString('latin1').startsWith('HTTP/1.1 101')) throw new Error(`handshake refused: ${head.toString('latin1').split('\r\n')[0]}`);
  socket.pause();
  return {
    async drain(marker: string) {
      let tail = '';
      let sawMarker = false;
      socket.on('data', (chunk: Buffer) => {
        tail = (tail + chunk.toString('latin1')).slice(-marker.length * 2);
        if (tail.includes(marker)) {
          sawMarker = true;
          socket.destroy();
        }
      });
      socket.on('error', () => {});
      socket.resume();
      await once(socket, 'close');
      return { sawMarker };
    },
  };
}
