/** The link machine: its state × event table, reachability, and its retry rules. */
import { describe, expect, it } from 'vitest';
import { transition, type AnyMachineSnapshot, type EventObject } from 'xstate';
import { linkMachine, type LinkContext } from '../../machines/link.js';
import { definedTransitions } from '../../src/machineTools/transitions.js';
import { reachability } from '../support/reachability.js';

const STATES = ['spawning', 'handshaking', 'up.quiet', 'up.pinging', 'draining', 'reconnecting', 'closing', 'closed', 'failed'] as const;
type State = (typeof STATES)[number];
type Outcome = State | 'lost→reconnecting' | 'lost→failed' | 'stay' | 'reject' | 'final';

/** What reaches the machine: the runtime's events, and its two actors settling (keyed as the transition keys name them). */
const SAMPLES = {
  LINK_UP: { type: 'LINK_UP' },
  LINK_DOWN: { type: 'LINK_DOWN', cause: 'the transport exited with code 255' },
  LINK_REFUSED: { type: 'LINK_REFUSED', message: 'a gpg-agent is running at /run/user/1000/gnupg/S.gpg-agent' },
  PING_ACKED: { type: 'PING_ACKED' },
  SHUTDOWN: { type: 'SHUTDOWN' },
  'startTransport done': { type: 'xstate.done.actor.startTransport', actorId: 'startTransport', output: undefined },
  'startTransport error': { type: 'xstate.error.actor.startTransport', actorId: 'startTransport', error: Object.assign(new Error('spawn ssh ENOENT'), { code: 'ENOENT' }) },
  'waitForSessions done': { type: 'xstate.done.actor.waitForSessions', actorId: 'waitForSessions', output: undefined },
} satisfies Record<string, EventObject & Record<string, unknown>>;
type EventKey = keyof typeof SAMPLES;
const rejectAll = Object.fromEntries(Object.keys(SAMPLES).map((k) => [k, 'reject'])) as Record<EventKey, Outcome>;
const allFinal = Object.fromEntries(Object.keys(SAMPLES).map((k) => [k, 'final'])) as Record<EventKey, Outcome>;

const SPEC: Record<State, Record<EventKey, Outcome>> = {
  spawning: { ...rejectAll, SHUTDOWN: 'closing', 'startTransport done': 'handshaking', 'startTransport error': 'lost→failed' },
  // A refusal is final: the client end said it cannot serve, and would say it again.
  handshaking: { ...rejectAll, LINK_UP: 'up.quiet', LINK_DOWN: 'lost→reconnecting', LINK_REFUSED: 'lost→failed', SHUTDOWN: 'closing' },
  'up.quiet': { ...rejectAll, LINK_DOWN: 'lost→reconnecting', SHUTDOWN: 'draining' },
  'up.pinging': { ...rejectAll, LINK_DOWN: 'lost→reconnecting', SHUTDOWN: 'draining', PING_ACKED: 'up.quiet' },
  // No new sessions; those open finish. The transport ending now ends the link: nothing is left to drain.
  draining: { ...rejectAll, LINK_DOWN: 'closed', SHUTDOWN: 'stay', 'waitForSessions done': 'closing' },
  reconnecting: { ...rejectAll, SHUTDOWN: 'closed' },
  closing: { ...rejectAll, LINK_DOWN: 'closed', SHUTDOWN: 'stay' },
  closed: allFinal,
  failed: allFinal,
};

const context = (attempts = 1): LinkContext => ({ attempts, maxAttempts: 3, failure: null });
const resolve = (state: State, ctx = context()) =>
  linkMachine.resolveState({ value: state.includes('.') ? { [state.split('.')[0]!]: state.split('.')[1]! } : state, context: ctx });
const text = (s: AnyMachineSnapshot) => (typeof s.value === 'string' ? s.value : Object.entries(s.value).map(([k, v]) => `${k}.${String(v)}`)[0]!);

describe('link machine: state × event table', () => {
  it('the table has a row for every state, and a column for every event the machine handles', () => {
    const leaves = ['spawning', 'handshaking', 'up.quiet', 'up.pinging', 'draining', 'lost', 'reconnecting', 'closing', 'closed', 'failed'];
    expect(Object.keys(linkMachine.root.states).sort()).toEqual(['closed', 'closing', 'draining', 'failed', 'handshaking', 'lost', 'reconnecting', 'spawning', 'up']);
    expect([...STATES, 'lost'].sort()).toEqual(leaves.sort());
    const handled = new Set(definedTransitions(linkMachine).map((t) => t.event));
    expect([...handled].filter((event) => !event.startsWith('after ') && event !== 'always').sort()).toEqual(Object.keys(SAMPLES).sort());
  });

  for (const state of STATES) {
    it.each(Object.entries(SPEC[state]) as Array<[EventKey, Outcome]>)(`${state} + %s → %s`, (key, expected) => {
      const snapshot = resolve(state);
      if (expected === 'final') return expect(snapshot.status).toBe('done');
      const [next, actions] = transition(linkMachine, snapshot, SAMPLES[key] as never);
      expect(actions.some((a) => a.type === 'rejectEvent')).toBe(expected === 'reject');
      const want = expected === 'reject' || expected === 'stay' ? state : expected.replace(/^lost→/, '');
      expect(text(next)).toBe(want);
      // A lost link is always torn down first.
      if (expected.startsWith('lost→')) expect(actions.map((a) => a.type)).toContain('dropTransport');
    });
  }

  it('a link that cannot be started is not retried; one that was lost is, until the attempts run out', () => {
    const [failed] = transition(linkMachine, resolve('spawning'), SAMPLES['startTransport error'] as never);
    expect([text(failed), failed.context.failure]).toEqual(['failed', { reason: 'spawnFailed', code: 'ENOENT' }]);
    const [again] = transition(linkMachine, resolve('handshaking', context(2)), SAMPLES.LINK_DOWN as never);
    expect([text(again), again.context.failure]).toEqual(['reconnecting', { reason: 'linkDown', cause: 'the transport exited with code 255' }]);
    const [givenUp] = transition(linkMachine, resolve('handshaking', context(3)), SAMPLES.LINK_DOWN as never);
    expect(text(givenUp)).toBe('failed');
  });

  it('a link that comes up starts counting its attempts afresh', () => {
    const [upAgain] = transition(linkMachine, resolve('handshaking', context(3)), SAMPLES.LINK_UP as never);
    expect(upAgain.context.attempts).toBe(1);
  });
});

describe('link machine reachability (xstate/graph)', () => {
  const result = reachability(linkMachine, Object.values(SAMPLES), (s: AnyMachineSnapshot) => JSON.stringify([s.value, s.status, s.context.attempts, s.context.failure?.reason]), { maxAttempts: 2 });

  it('reaches every state and takes every transition from the initial state', () => {
    expect(result.definedCount).toBe(24);
    expect(result.unreachedStates).toEqual([]);
    expect(result.untakenTransitions).toEqual([]);
  });
});
