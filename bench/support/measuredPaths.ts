/**
 * The ways to gpg-agent that the sporadic scenarios measure: direct, a relay that keeps running between
 * operations (warm), or a relay started for one operation and stopped after it (fresh).
 */
import type { Relay } from './processes.js';

export interface MeasuredPath {
  name: string;
  /** Makes the path ready for one operation and gives its socket; a fresh relay has started and listens by then. */
  open(): Promise<string>;
  /** After the operation; a fresh relay has been stopped and has exited when this resolves. */
  done(): Promise<void>;
}

export function directPath(socket: string): MeasuredPath {
  return { name: 'direct', open: async () => socket, done: async () => {} };
}

export function standingPath(relay: Relay): MeasuredPath {
  return { name: relay.name, open: async () => relay.socket, done: async () => {} };
}

/** A new relay process for every operation, each on a socket path of its own. */
export function freshPath(name: string, start: (instance: string) => Promise<Relay & { exited: Promise<void> }>): MeasuredPath {
  let started = 0;
  let running: (Relay & { exited: Promise<void> }) | undefined;
  return {
    name,
    open: async () => {
      running = await start(`fresh${++started}`);
      return running.socket;
    },
    done: async () => {
      if (!running) return;
      const relay = running;
      running = undefined;
      relay.stop();
      await relay.exited;
    },
  };
}

/**
 * One operation on `path` as a user's sporadic use meets it: the path is opened, left idle for `idleMs` (a warm
 * relay sits idle, a fresh one has just started listening), then `operation` runs once on its socket.
 */
export async function afterIdle<T>(path: MeasuredPath, idleMs: number, operation: (socket: string) => Promise<T>): Promise<T> {
  const socket = await path.open();
  try {
    await new Promise((resolve) => setTimeout(resolve, idleMs));
    return await operation(socket);
  } finally {
    await path.done();
  }
}
