/** The session registry with fake sessions and fake client sockets: admission, the limit, stopping, emptiness. */
import type net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SessionRegistry, type RegisteredSession } from '../src/sessionRegistry.js';
import type { SessionInfo } from '../src/session/session.js';

interface FakeClient {
  written: string[];
  ended: boolean;
  destroyed: boolean;
}

function fakeClient(): { socket: net.Socket; client: FakeClient } {
  const client: FakeClient = { written: [], ended: false, destroyed: false };
  const socket = {
    on: () => socket,
    end: (data: Buffer) => {
      client.written.push(data.toString('latin1'));
      client.ended = true;
      return socket;
    },
    destroy: () => {
      client.destroyed = true;
      return socket;
    },
  };
  return { socket: socket as unknown as net.Socket, client };
}

interface FakeSession extends RegisteredSession {
  id: string;
  calls: string[];
  end(): void;
}

function harness(maxSessions = 2, options: { failCreating?: boolean } = {}) {
  const logs: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const sessions: FakeSession[] = [];
  const registry = new SessionRegistry({
    maxSessions,
    closeGraceMs: 2000,
    logger: pino({ level: 'trace' }, destination),
    createSession: (id, _client, onEnd) => {
      if (options.failCreating) throw new Error('no more file descriptors');
      const calls: string[] = [];
      const session: FakeSession = {
        id,
        calls,
        start: () => calls.push('start'),
        stop: () => calls.push('stop'),
        stopNow: () => calls.push('stopNow'),
        info: () => ({ sessionId: id, state: 'ready' }) as SessionInfo,
        end: onEnd,
      };
      sessions.push(session);
      return session;
    },
  });
  const settled = (promise: Promise<void>) => {
    let done = false;
    void promise.then(() => (done = true));
    return async () => {
      await Promise.resolve();
      return done;
    };
  };
  return { registry, sessions, logs, settled };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('session registry', () => {
  it('accepts and starts sessions up to the limit, each with its own id, and lists them', () => {
    const { registry, sessions } = harness(2);
    expect(registry.accept(fakeClient().socket)).toBe('accepted');
    expect(registry.accept(fakeClient().socket)).toBe('accepted');
    expect(registry.count).toBe(2);
    expect(sessions.map((s) => [s.id, s.calls])).toEqual([['1', ['start']], ['2', ['start']]]);
    expect(registry.list().map((info) => info.sessionId)).toEqual(['1', '2']);
  });

  it('past the limit a client gets the Limit reached line and is closed, and the refusal is logged', () => {
    const { registry, sessions, logs } = harness(1);
    registry.accept(fakeClient().socket);
    const { socket, client } = fakeClient();
    expect(registry.accept(socket)).toBe('refused');
    expect(client.written).toEqual(['ERR 67109047 Limit reached <assuan-proxy> - the proxy serves at most 1 sessions at once\n']);
    expect(client.ended).toBe(true);
    expect(sessions).toHaveLength(1);
    expect(registry.count).toBe(1);
    expect(logs).toEqual([expect.objectContaining({ msg: 'session limit reached: connection refused', openSessions: 1, maxSessions: 1, refusedConnections: 1 })]);
  });

  it('a refused client that does not read is cut after the close grace', () => {
    vi.useFakeTimers();
    const { registry } = harness(1);
    registry.accept(fakeClient().socket);
    const { socket, client } = fakeClient();
    registry.accept(socket);
    vi.advanceTimersByTime(1999);
    expect(client.destroyed).toBe(false);
    vi.advanceTimersByTime(1);
    expect(client.destroyed).toBe(true);
  });

  it('logs the first ten refusals, then every hundredth', () => {
    const { registry, logs } = harness(1);
    registry.accept(fakeClient().socket);
    for (let i = 0; i < 250; i++) registry.accept(fakeClient().socket);
    expect(logs.map((r) => r.refusedConnections)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 200]);
  });

  it('a session that has ended frees its slot for the next client', () => {
    const { registry, sessions } = harness(1);
    registry.accept(fakeClient().socket);
    sessions[0]!.end();
    expect(registry.count).toBe(0);
    expect(registry.accept(fakeClient().socket)).toBe('accepted');
    expect(registry.list().map((info) => info.sessionId)).toEqual(['2']);
  });

  it('stopAll and stopAllNow reach every open session', () => {
    const { registry, sessions } = harness(3);
    for (let i = 0; i < 3; i++) registry.accept(fakeClient().socket);
    sessions[1]!.end();
    registry.stopAll();
    registry.stopAllNow();
    expect(sessions.map((s) => s.calls)).toEqual([['start', 'stop', 'stopNow'], ['start'], ['start', 'stop', 'stopNow']]);
  });

  it('whenEmpty resolves at once with no session open, and otherwise when the last one ends', async () => {
    const { registry, sessions, settled } = harness(2);
    expect(await settled(registry.whenEmpty())()).toBe(true);
    registry.accept(fakeClient().socket);
    registry.accept(fakeClient().socket);
    const empty = settled(registry.whenEmpty());
    sessions[0]!.end();
    expect(await empty()).toBe(false);
    // An end reported twice is not a second session ending.
    sessions[0]!.end();
    expect(registry.count).toBe(1);
    sessions[1]!.end();
    expect(await empty()).toBe(true);
  });

  it('a session that cannot be created: the client is closed, the failure logged, nothing counted', () => {
    const { registry, logs } = harness(2, { failCreating: true });
    const { socket, client } = fakeClient();
    expect(registry.accept(socket)).toBe('failed');
    expect(client.destroyed).toBe(true);
    expect(registry.count).toBe(0);
    expect(logs).toEqual([expect.objectContaining({ msg: 'could not start session', session: '1' })]);
  });
});
