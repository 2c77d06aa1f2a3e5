/** The server machine: its state × event table, reachability, and its lifecycle with fakes and a simulated clock. */
import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock, transition, type AnyMachineSnapshot } from 'xstate';
import { serverMachine, type ServerContext, type ServerEvent } from '../../machines/server.js';
import { reachability } from '../support/reachability.js';

const STATES = ['starting', 'listening', 'draining', 'closingSessions', 'closed', 'failed'] as const;
type State = (typeof STATES)[number];
type EventType = ServerEvent['type'];
type Outcome = State | 'stay' | 'reject' | 'final';

const SAMPLES: Record<EventType, ServerEvent> = {
  LISTENING: { type: 'LISTENING' },
  LISTEN_FAILED: { type: 'LISTEN_FAILED', reason: 'something is already listening on /x' },
  SESSION_OPENED: { type: 'SESSION_OPENED' },
  SESSION_ENDED: { type: 'SESSION_ENDED' },
  SHUTDOWN: { type: 'SHUTDOWN' },
};
const allFinal = { LISTENING: 'final', LISTEN_FAILED: 'final', SESSION_OPENED: 'final', SESSION_ENDED: 'final', SHUTDOWN: 'final' } as const;

/** Rows are for a server with two sessions open (draining does not end at once). */
const SPEC: Record<State, Record<EventType, Outcome>> = {
  starting: { LISTENING: 'listening', LISTEN_FAILED: 'failed', SESSION_OPENED: 'reject', SESSION_ENDED: 'reject', SHUTDOWN: 'reject' },
  listening: { LISTENING: 'reject', LISTEN_FAILED: 'reject', SESSION_OPENED: 'stay', SESSION_ENDED: 'stay', SHUTDOWN: 'draining' },
  // No connection is accepted once draining; a repeated SHUTDOWN (npm relays Ctrl-C) changes nothing.
  draining: { LISTENING: 'reject', LISTEN_FAILED: 'reject', SESSION_OPENED: 'reject', SESSION_ENDED: 'stay', SHUTDOWN: 'stay' },
  // Past the drain time: the remaining sessions are being closed; each still ends (and logs) before the server.
  closingSessions: { LISTENING: 'reject', LISTEN_FAILED: 'reject', SESSION_OPENED: 'reject', SESSION_ENDED: 'stay', SHUTDOWN: 'stay' },
  closed: allFinal,
  failed: allFinal,
};

const twoOpen: ServerContext = { openSessions: 2, startFailure: null };

describe('server machine: state × event table', () => {
  it('the table has a row for every state', () => {
    expect([...STATES].sort()).toEqual(Object.keys(serverMachine.root.states).sort());
  });

  for (const state of STATES) {
    it.each(Object.entries(SPEC[state]) as Array<[EventType, Outcome]>)(`${state} + %s → %s`, (type, expected) => {
      const snapshot = serverMachine.resolveState({ value: state, context: twoOpen });
      if (expected === 'final') return expect(snapshot.status).toBe('done');
      const [next, actions] = transition(serverMachine, snapshot, SAMPLES[type]);
      const rejected = actions.some((a) => a.type === 'rejectEvent');
      expect(rejected).toBe(expected === 'reject');
      expect(next.value).toBe(expected === 'reject' || expected === 'stay' ? state : expected);
    });
  }

  it('draining ends when the last session ends', () => {
    const snapshot = serverMachine.resolveState({ value: 'draining', context: { openSessions: 1, startFailure: null } });
    const [next, actions] = transition(serverMachine, snapshot, SAMPLES.SESSION_ENDED);
    expect(next.value).toBe('closed');
    expect(actions.map((a) => a.type)).toContain('removeSocket');
  });
});

describe('server machine reachability (xstate/graph)', () => {
  // The session count is bounded in the serialization (0, 1, 2 or more) so the traversal ends.
  const result = reachability(serverMachine, Object.values(SAMPLES), (s: AnyMachineSnapshot) =>
    JSON.stringify([s.value, Math.min(s.context.openSessions as number, 2), s.status]),
  );

  it('reaches every state and takes every transition from the initial state', () => {
    expect(result.unreachedStates).toEqual([]);
    expect(result.untakenTransitions).toEqual([]);
  });

  it('never counts below zero sessions', () => {
    const snapshot = serverMachine.resolveState({ value: 'listening', context: { openSessions: 0, startFailure: null } });
    expect(transition(serverMachine, snapshot, SAMPLES.SESSION_ENDED)[0].context.openSessions).toBe(0);
  });
});

describe('server machine lifecycle', () => {
  function harness() {
    const effects: string[] = [];
    const clock = new SimulatedClock();
    const record = (name: string) => () => void effects.push(name);
    const machine = serverMachine.provide({
      actions: {
        listen: record('listen'),
        stopAccepting: record('stopAccepting'),
        stopSessions: record('stopSessions'),
        stopSessionsNow: record('stopSessionsNow'),
        removeSocket: record('removeSocket'),
        rejectEvent: record('rejectEvent'),
      },
      delays: { drainTimeout: 1000 },
    });
    const actor = createActor(machine, { clock }).start();
    return { actor, clock, effects };
  }

  it('drains: stops accepting, asks sessions to stop, closes when the last one ends', () => {
    const { actor, effects } = harness();
    actor.send({ type: 'LISTENING' });
    actor.send({ type: 'SESSION_OPENED' });
    actor.send({ type: 'SESSION_OPENED' });
    actor.send({ type: 'SESSION_ENDED' });
    actor.send({ type: 'SHUTDOWN' });
    expect(actor.getSnapshot().value).toBe('draining');
    actor.send({ type: 'SESSION_ENDED' });
    expect(actor.getSnapshot().value).toBe('closed');
    expect(effects).toEqual(['listen', 'stopAccepting', 'stopSessions', 'removeSocket']);
  });

  it('past the drain timeout the remaining sessions are closed, and the server is done once they have ended', () => {
    const { actor, clock, effects } = harness();
    actor.send({ type: 'LISTENING' });
    actor.send({ type: 'SESSION_OPENED' });
    actor.send({ type: 'SHUTDOWN' });
    clock.increment(999);
    expect(actor.getSnapshot().value).toBe('draining');
    clock.increment(1);
    // Stopping here would let the process exit before the session's own end (and its record).
    expect(actor.getSnapshot().value).toBe('closingSessions');
    actor.send({ type: 'SESSION_ENDED' });
    expect(actor.getSnapshot().value).toBe('closed');
    expect(effects).toEqual(['listen', 'stopAccepting', 'stopSessions', 'stopSessionsNow', 'removeSocket']);
  });

  it('a failed start keeps the reason for the person who started it', () => {
    const { actor } = harness();
    actor.send(SAMPLES.LISTEN_FAILED);
    expect(actor.getSnapshot().status).toBe('done');
    expect(actor.getSnapshot().context.startFailure).toBe('something is already listening on /x');
  });
});
