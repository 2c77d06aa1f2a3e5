/** The server machine: its state × event table, reachability, and its lifecycle with fakes and a simulated clock. */
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, SimulatedClock, transition, waitFor, type AnyMachineSnapshot, type EventObject } from 'xstate';
import { serverMachine } from '../../machines/server.js';
import { definedTransitions } from '../../src/machineTools/transitions.js';
import { reachability } from '../support/reachability.js';

const STATES = ['starting', 'listening', 'draining', 'closingSessions', 'closed', 'failed'] as const;
type State = (typeof STATES)[number];
type Outcome = State | 'stay' | 'reject' | 'final';

/**
 * What reaches the machine: SHUTDOWN from outside, and the internal events of the two actors it invokes settling
 * (keyed as the transition keys and the diagram name them).
 */
const SAMPLES = {
  SHUTDOWN: { type: 'SHUTDOWN' },
  'listen done': { type: 'xstate.done.actor.listen', actorId: 'listen', output: undefined },
  'listen error': { type: 'xstate.error.actor.listen', actorId: 'listen', error: new Error('something is already listening on /x') },
  'waitForSessions done': { type: 'xstate.done.actor.waitForSessions', actorId: 'waitForSessions', output: undefined },
} satisfies Record<string, EventObject & Record<string, unknown>>;
type EventKey = keyof typeof SAMPLES;
const allFinal = { SHUTDOWN: 'final', 'listen done': 'final', 'listen error': 'final', 'waitForSessions done': 'final' } as const;

const SPEC: Record<State, Record<EventKey, Outcome>> = {
  starting: { SHUTDOWN: 'reject', 'listen done': 'listening', 'listen error': 'failed', 'waitForSessions done': 'reject' },
  listening: { SHUTDOWN: 'draining', 'listen done': 'reject', 'listen error': 'reject', 'waitForSessions done': 'reject' },
  // No connection is accepted once draining; a repeated SHUTDOWN (npm relays Ctrl-C) changes nothing.
  draining: { SHUTDOWN: 'stay', 'listen done': 'reject', 'listen error': 'reject', 'waitForSessions done': 'closed' },
  // Past the drain time: the remaining sessions are being closed; each still ends (and logs) before the server.
  closingSessions: { SHUTDOWN: 'stay', 'listen done': 'reject', 'listen error': 'reject', 'waitForSessions done': 'closed' },
  closed: allFinal,
  failed: allFinal,
};

describe('server machine: state × event table', () => {
  it('the table has a row for every state, and a column for every event the machine handles', () => {
    expect([...STATES].sort()).toEqual(Object.keys(serverMachine.root.states).sort());
    const handled = new Set(definedTransitions(serverMachine).map((t) => t.event));
    expect([...handled].filter((event) => !event.startsWith('after ')).sort()).toEqual(Object.keys(SAMPLES).sort());
  });

  for (const state of STATES) {
    it.each(Object.entries(SPEC[state]) as Array<[EventKey, Outcome]>)(`${state} + %s → %s`, (key, expected) => {
      const snapshot = serverMachine.resolveState({ value: state, context: { startFailure: null } });
      if (expected === 'final') return expect(snapshot.status).toBe('done');
      const [next, actions] = transition(serverMachine, snapshot, SAMPLES[key] as never);
      const rejected = actions.some((a) => a.type === 'rejectEvent');
      expect(rejected).toBe(expected === 'reject');
      expect(next.value).toBe(expected === 'reject' || expected === 'stay' ? state : expected);
    });
  }

  it('a failed start keeps the reason, worded by the listen actor, for the person who started it', () => {
    const starting = serverMachine.resolveState({ value: 'starting', context: { startFailure: null } });
    expect(transition(serverMachine, starting, SAMPLES['listen error'] as never)[0].context.startFailure).toBe('something is already listening on /x');
    const notAnError = { type: 'xstate.error.actor.listen', actorId: 'listen', error: 'EACCES' };
    expect(transition(serverMachine, starting, notAnError as never)[0].context.startFailure).toBe('EACCES');
  });

  it('the socket is removed on the way to closed', () => {
    const draining = serverMachine.resolveState({ value: 'draining', context: { startFailure: null } });
    const [, actions] = transition(serverMachine, draining, SAMPLES['waitForSessions done'] as never);
    expect(actions.map((a) => a.type)).toContain('removeSocket');
  });
});

describe('server machine reachability (xstate/graph)', () => {
  const result = reachability(serverMachine, Object.values(SAMPLES), (s: AnyMachineSnapshot) => JSON.stringify([s.value, s.status]));

  it('reaches every state and takes every transition from the initial state', () => {
    expect(result.definedCount).toBe(8);
    expect(result.unreachedStates).toEqual([]);
    expect(result.untakenTransitions).toEqual([]);
  });
});

describe('server machine lifecycle', () => {
  /** Actors the test settles by hand; `sessions` is what every waitForSessions invocation waits on. */
  function harness(options: { listen?: () => Promise<void>; sessionsOpen?: boolean } = {}) {
    const effects: string[] = [];
    const clock = new SimulatedClock();
    let endSessions!: () => void;
    const sessionsEnded = options.sessionsOpen === false ? Promise.resolve() : new Promise<void>((resolve) => (endSessions = resolve));
    const record = (name: string) => () => void effects.push(name);
    const machine = serverMachine.provide({
      actors: {
        listen: fromPromise(async () => {
          effects.push('listen');
          await (options.listen ?? (() => Promise.resolve()))();
        }),
        waitForSessions: fromPromise(() => {
          effects.push('waitForSessions');
          return sessionsEnded;
        }),
      },
      actions: {
        stopAccepting: record('stopAccepting'),
        stopSessions: record('stopSessions'),
        stopSessionsNow: record('stopSessionsNow'),
        removeSocket: record('removeSocket'),
        rejectEvent: record('rejectEvent'),
      },
      delays: { drainTimeout: 1000 },
    });
    const actor = createActor(machine, { clock }).start();
    return { actor, clock, effects, endSessions: () => endSessions() };
  }

  it('listens, then drains: stops accepting, asks sessions to stop, closes when the last one has ended', async () => {
    const { actor, effects, endSessions } = harness();
    await waitFor(actor, (s) => s.matches('listening'));
    actor.send({ type: 'SHUTDOWN' });
    expect(actor.getSnapshot().value).toBe('draining');
    // A repeated signal while sessions finish changes nothing.
    actor.send({ type: 'SHUTDOWN' });
    expect(actor.getSnapshot().value).toBe('draining');
    endSessions();
    await waitFor(actor, (s) => s.status === 'done');
    expect(actor.getSnapshot().value).toBe('closed');
    expect(effects).toEqual(['listen', 'stopAccepting', 'stopSessions', 'waitForSessions', 'removeSocket']);
  });

  it('with no session open, a shutdown closes at once', async () => {
    const { actor, effects } = harness({ sessionsOpen: false });
    await waitFor(actor, (s) => s.matches('listening'));
    actor.send({ type: 'SHUTDOWN' });
    await waitFor(actor, (s) => s.status === 'done');
    expect(actor.getSnapshot().value).toBe('closed');
    expect(effects).toEqual(['listen', 'stopAccepting', 'stopSessions', 'waitForSessions', 'removeSocket']);
  });

  it('past the drain timeout the remaining sessions are closed, and the server is done once they have ended', async () => {
    const { actor, clock, effects, endSessions } = harness();
    await waitFor(actor, (s) => s.matches('listening'));
    actor.send({ type: 'SHUTDOWN' });
    clock.increment(999);
    expect(actor.getSnapshot().value).toBe('draining');
    clock.increment(1);
    // Stopping here would let the process exit before the session's own end (and its record).
    expect(actor.getSnapshot().value).toBe('closingSessions');
    endSessions();
    await waitFor(actor, (s) => s.status === 'done');
    expect(actor.getSnapshot().value).toBe('closed');
    expect(effects).toEqual(['listen', 'stopAccepting', 'stopSessions', 'waitForSessions', 'stopSessionsNow', 'waitForSessions', 'removeSocket']);
  });

  it('a listen that fails ends the machine in failed, with its reason, and nothing to remove', async () => {
    const { actor, effects } = harness({ listen: () => Promise.reject(new Error('something is already listening on /x')) });
    await waitFor(actor, (s) => s.status === 'done');
    expect(actor.getSnapshot().value).toBe('failed');
    expect(actor.getSnapshot().context.startFailure).toBe('something is already listening on /x');
    expect(effects).toEqual(['listen']);
  });
});
