/**
 * The session machine against a hand-written table: every resting state × every event variant (line events
 * expanded by line kind) states its outcome: the state it leads to, `stay` (handled without a state change),
 * `reject` (not handled: the explicit rejectEvent action runs), or `final` (a final state absorbs everything).
 * The types make the table exhaustive; a test checks the list of states against the machine itself.
 */
import { describe, expect, it } from 'vitest';
import { transition, type AnyStateNode, type StateValue } from 'xstate';
import { sessionMachine, type SessionContext, type SessionEvent } from '../../machines/session.js';
import type { AgentLineKind, ClientLineKind } from '../../src/protocol/classify.js';

const RESTING_STATES = [
  'connecting.reaching.dialing',
  'connecting.reaching.backingOff',
  'connecting.awaitingGreeting',
  'ready',
  'bufferingCommand',
  'sendingToAgent',
  'waitingForAgent',
  'sendingToClient',
  'bufferingInquire.answering',
  'bufferingInquire.discarding',
  'bufferingInquire.draining',
  'closing',
  'closed',
  'fatal',
] as const;
type State = (typeof RESTING_STATES)[number];
/** States left at once by an eventless transition: they never rest, so they have no row. */
const TRANSIENT_STATES = ['error'];

type EventKey =
  | Exclude<SessionEvent['type'], 'AGENT_LINE' | 'CLIENT_LINE'>
  /** A full listen queue: the one connect failure that is retried. */
  | 'AGENT_CONNECT_FAILED:EAGAIN'
  | `AGENT_LINE:${AgentLineKind}`
  | `CLIENT_LINE:${ClientLineKind}`;
type Outcome = State | 'stay' | 'reject' | 'final';
type Row = Record<EventKey, Outcome>;

const agentLine = (kind: AgentLineKind): SessionEvent => ({ type: 'AGENT_LINE', kind, keyword: kind === 'inquire' ? 'PASSPHRASE' : '', bytes: 8 });
const clientLine = (kind: ClientLineKind): SessionEvent => ({ type: 'CLIENT_LINE', kind, verb: kind === 'command' ? 'NOP' : '', bytes: 8 });

const SAMPLES: Record<EventKey, SessionEvent> = {
  AGENT_CONNECTED: { type: 'AGENT_CONNECTED' },
  AGENT_CONNECT_FAILED: { type: 'AGENT_CONNECT_FAILED', code: 'ECONNREFUSED' },
  'AGENT_CONNECT_FAILED:EAGAIN': { type: 'AGENT_CONNECT_FAILED', code: 'EAGAIN' },
  AGENT_WRITTEN: { type: 'AGENT_WRITTEN' },
  AGENT_CLOSED: { type: 'AGENT_CLOSED', code: 'EOF' },
  'AGENT_LINE:ok': agentLine('ok'),
  'AGENT_LINE:okClosing': agentLine('okClosing'),
  'AGENT_LINE:err': agentLine('err'),
  'AGENT_LINE:inquire': agentLine('inquire'),
  'AGENT_LINE:status': agentLine('status'),
  'AGENT_LINE:comment': agentLine('comment'),
  'AGENT_LINE:data': agentLine('data'),
  'AGENT_LINE:end': agentLine('end'),
  'AGENT_LINE:invalid': agentLine('invalid'),
  CLIENT_PARTIAL: { type: 'CLIENT_PARTIAL', bytes: 3 },
  'CLIENT_LINE:command': clientLine('command'),
  'CLIENT_LINE:comment': clientLine('comment'),
  'CLIENT_LINE:empty': clientLine('empty'),
  'CLIENT_LINE:data': clientLine('data'),
  'CLIENT_LINE:malformedData': clientLine('malformedData'),
  'CLIENT_LINE:end': clientLine('end'),
  'CLIENT_LINE:cancel': clientLine('cancel'),
  'CLIENT_LINE:forbidden': clientLine('forbidden'),
  'CLIENT_LINE:restrictedQuery': clientLine('restrictedQuery'),
  CLIENT_LINE_TOO_LONG: { type: 'CLIENT_LINE_TOO_LONG', bytes: 2000 },
  CLIENT_EOF: { type: 'CLIENT_EOF' },
  CLIENT_GONE: { type: 'CLIENT_GONE', code: 'ECONNRESET' },
  SOCKETS_CLOSED: { type: 'SOCKETS_CLOSED' },
  STOP: { type: 'STOP' },
  STOP_NOW: { type: 'STOP_NOW' },
  IDLE_TIMEOUT: { type: 'IDLE_TIMEOUT' },
  RESPONSE_TIMEOUT: { type: 'RESPONSE_TIMEOUT' },
};

const EVENT_KEYS = Object.keys(SAMPLES) as EventKey[];
const row = (fill: Outcome, cells: Partial<Row>): Row => ({ ...(Object.fromEntries(EVENT_KEYS.map((k) => [k, fill])) as Row), ...cells });

const ALL_AGENT_LINES = (outcome: Outcome): Partial<Row> =>
  Object.fromEntries((['ok', 'okClosing', 'err', 'inquire', 'status', 'comment', 'data', 'end', 'invalid'] as const).map((k) => [`AGENT_LINE:${k}`, outcome]));

/** Server shutdown: idle sessions close at once; a command in flight finishes first (STOP is remembered). */
const closeOnStop: Partial<Row> = { STOP: 'closing', STOP_NOW: 'closing' };
const finishThenClose: Partial<Row> = { STOP: 'stay', STOP_NOW: 'closing' };

/** ready and bufferingCommand: waiting for the client's next command. */
const awaitingCommand: Partial<Row> = {
  'CLIENT_LINE:command': 'sendingToAgent',
  'CLIENT_LINE:data': 'sendingToAgent',
  'CLIENT_LINE:malformedData': 'sendingToAgent', // outside an INQUIRE the agent answers a stray D line itself
  'CLIENT_LINE:end': 'sendingToAgent',
  'CLIENT_LINE:cancel': 'sendingToAgent',
  // Through the transient error state, which answers ERR Forbidden, or OK to GETINFO restricted.
  'CLIENT_LINE:forbidden': 'ready',
  'CLIENT_LINE:restrictedQuery': 'ready',
  'CLIENT_LINE:comment': 'ready',
  'CLIENT_LINE:empty': 'ready',
  CLIENT_LINE_TOO_LONG: 'ready', // through the transient error state, which answers the ERR
  CLIENT_EOF: 'closing',
  CLIENT_GONE: 'closing',
  ...ALL_AGENT_LINES('fatal'),
  AGENT_CLOSED: 'fatal',
  IDLE_TIMEOUT: 'closing', // raised only while no command has been sent since the greeting
  ...closeOnStop,
};

/** sendingToAgent, waitingForAgent, sendingToClient: a command's answer is being relayed. */
const relayingAnswer: Partial<Row> = {
  'AGENT_LINE:status': 'sendingToClient',
  'AGENT_LINE:comment': 'sendingToClient',
  'AGENT_LINE:data': 'sendingToClient',
  'AGENT_LINE:end': 'sendingToClient',
  'AGENT_LINE:inquire': 'bufferingInquire.answering',
  'AGENT_LINE:ok': 'ready',
  'AGENT_LINE:err': 'ready',
  'AGENT_LINE:okClosing': 'closing',
  'AGENT_LINE:invalid': 'fatal',
  AGENT_CLOSED: 'fatal',
  CLIENT_GONE: 'closing',
  CLIENT_EOF: 'stay', // passed on to the agent; the answer still comes
  ...finishThenClose,
};

/** The three inquire sub-states share their reactions to the client leaving and the agent closing. */
const inquireCommon: Partial<Row> = { CLIENT_EOF: 'closing', CLIENT_GONE: 'closing', AGENT_CLOSED: 'fatal', ...finishThenClose };
const agentDuringInquiry: Partial<Row> = {
  'AGENT_LINE:status': 'stay',
  'AGENT_LINE:comment': 'stay',
  'AGENT_LINE:data': 'stay',
  'AGENT_LINE:end': 'stay',
  'AGENT_LINE:ok': 'bufferingInquire.draining',
  'AGENT_LINE:err': 'bufferingInquire.draining',
  'AGENT_LINE:okClosing': 'closing',
  'AGENT_LINE:inquire': 'fatal', // nested INQUIRE: libassuan never does this
  'AGENT_LINE:invalid': 'fatal',
};

const SPEC: Record<State, Row> = {
  'connecting.reaching.dialing': row('reject', {
    AGENT_CONNECTED: 'connecting.awaitingGreeting',
    AGENT_CONNECT_FAILED: 'fatal',
    'AGENT_CONNECT_FAILED:EAGAIN': 'connecting.reaching.backingOff',
    AGENT_CLOSED: 'fatal',
    CLIENT_GONE: 'closing',
    ...closeOnStop,
  }),
  'connecting.reaching.backingOff': row('reject', {
    AGENT_CLOSED: 'fatal',
    CLIENT_GONE: 'closing',
    ...closeOnStop,
  }),
  'connecting.awaitingGreeting': row('reject', {
    ...ALL_AGENT_LINES('fatal'),
    'AGENT_LINE:comment': 'stay',
    'AGENT_LINE:ok': 'ready',
    AGENT_CLOSED: 'fatal',
    CLIENT_GONE: 'closing',
    ...closeOnStop,
  }),
  ready: row('reject', { ...awaitingCommand, CLIENT_PARTIAL: 'bufferingCommand' }),
  bufferingCommand: row('reject', awaitingCommand),
  sendingToAgent: row('reject', { ...relayingAnswer, AGENT_WRITTEN: 'waitingForAgent' }),
  waitingForAgent: row('reject', { ...relayingAnswer, RESPONSE_TIMEOUT: 'fatal' }),
  sendingToClient: row('reject', {
    ...relayingAnswer,
    'AGENT_LINE:status': 'stay',
    'AGENT_LINE:comment': 'stay',
    'AGENT_LINE:data': 'stay',
    'AGENT_LINE:end': 'stay',
  }),
  'bufferingInquire.answering': row('reject', {
    ...inquireCommon,
    ...agentDuringInquiry,
    'CLIENT_LINE:data': 'stay',
    'CLIENT_LINE:comment': 'stay',
    'CLIENT_LINE:empty': 'stay',
    'CLIENT_LINE:malformedData': 'bufferingInquire.discarding',
    CLIENT_LINE_TOO_LONG: 'bufferingInquire.discarding',
    'CLIENT_LINE:end': 'sendingToAgent',
    'CLIENT_LINE:cancel': 'sendingToAgent',
    'CLIENT_LINE:command': 'sendingToAgent', // the agent ends the INQUIRE with ERR 274 and consumes the line
    'CLIENT_LINE:forbidden': 'sendingToAgent', // the same: inside an INQUIRE no line is run as a command
    'CLIENT_LINE:restrictedQuery': 'sendingToAgent',
  }),
  'bufferingInquire.discarding': row('reject', {
    ...inquireCommon,
    ...agentDuringInquiry,
    'CLIENT_LINE:data': 'stay',
    'CLIENT_LINE:comment': 'stay',
    'CLIENT_LINE:empty': 'stay',
    'CLIENT_LINE:malformedData': 'stay',
    CLIENT_LINE_TOO_LONG: 'stay',
    'CLIENT_LINE:end': 'sendingToAgent',
    'CLIENT_LINE:cancel': 'sendingToAgent',
    'CLIENT_LINE:command': 'sendingToAgent',
    'CLIENT_LINE:forbidden': 'sendingToAgent',
    'CLIENT_LINE:restrictedQuery': 'sendingToAgent',
  }),
  'bufferingInquire.draining': row('reject', {
    ...inquireCommon,
    ...ALL_AGENT_LINES('fatal'),
    'CLIENT_LINE:data': 'stay',
    'CLIENT_LINE:comment': 'stay',
    'CLIENT_LINE:empty': 'stay',
    'CLIENT_LINE:malformedData': 'stay',
    CLIENT_LINE_TOO_LONG: 'stay',
    'CLIENT_LINE:end': 'ready',
    'CLIENT_LINE:cancel': 'ready',
    'CLIENT_LINE:command': 'ready',
    'CLIENT_LINE:forbidden': 'ready',
    'CLIENT_LINE:restrictedQuery': 'ready',
  }),
  closing: row('reject', {
    ...ALL_AGENT_LINES('stay'),
    SOCKETS_CLOSED: 'closed',
    AGENT_CLOSED: 'stay',
    CLIENT_GONE: 'stay',
    CLIENT_EOF: 'stay',
    STOP: 'stay',
    STOP_NOW: 'stay',
  }),
  closed: row('final', {}),
  fatal: row('final', {}),
};

const BASE_CONTEXT: SessionContext = {
  sessionId: 't',
  connectAttempts: 1,
  command: 'NOP',
  inquire: '',
  clientEnded: false,
  stopRequested: false,
  owedAnswer: null,
  failure: null,
  responseTimeoutOn: false,
};

function toValue(state: string): StateValue {
  const [head, ...rest] = state.split('.');
  return rest.length ? { [head!]: toValue(rest.join('.')) } : head!;
}

function toPath(value: StateValue): string {
  if (typeof value === 'string') return value;
  const [key, inner] = Object.entries(value)[0]!;
  return `${key}.${toPath(inner as StateValue)}`;
}

function check(state: string, eventKey: EventKey, expected: Outcome, context: SessionContext = BASE_CONTEXT) {
  const snapshot = sessionMachine.resolveState({ value: toValue(state), context });
  if (expected === 'final') {
    // Final states absorb every event in a live actor (the pure transition() does not model that).
    expect(snapshot.status).toBe('done');
    return { actions: [] as string[] };
  }
  expect(snapshot.status).toBe('active');
  const [next, actions] = transition(sessionMachine, snapshot, SAMPLES[eventKey]);
  const actionTypes = actions.map((a) => a.type);
  const rejected = actionTypes.includes('rejectEvent');
  if (expected === 'reject') {
    expect(rejected, 'rejectEvent ran').toBe(true);
    expect(toPath(next.value)).toBe(state);
  } else {
    expect(rejected, 'rejectEvent did not run').toBe(false);
    expect(toPath(next.value)).toBe(expected === 'stay' ? state : expected);
  }
  return { actions: actionTypes };
}

/** Leaf states of the machine, as dotted paths. */
function leafStates(node: AnyStateNode): string[] {
  const children = Object.values(node.states) as AnyStateNode[];
  if (children.length === 0) return [node.path.join('.')];
  return children.flatMap(leafStates);
}

describe('session machine: state × event table', () => {
  it('the table has a row for every state the machine can rest in', () => {
    expect([...RESTING_STATES, ...TRANSIENT_STATES].sort()).toEqual(leafStates(sessionMachine.root).sort());
    for (const transient of TRANSIENT_STATES) {
      expect(sessionMachine.root.states[transient]!.always?.length, `${transient} leaves at once`).toBeGreaterThan(0);
    }
  });

  for (const state of RESTING_STATES) {
    describe(state, () => {
      it.each(EVENT_KEYS.map((key) => [key, SPEC[state][key]] as const))('%s → %s', (key, expected) => {
        check(state, key, expected);
      });
    });
  }
});

describe('session machine: outcomes that depend on context', () => {
  const owing: SessionContext = { ...BASE_CONTEXT, owedAnswer: 'malformedEscape' };
  const ended: SessionContext = { ...BASE_CONTEXT, clientEnded: true };

  it.each(['sendingToAgent', 'waitingForAgent', 'sendingToClient'] as const)(
    'owing the client an ERR, %s swaps the agent\'s final answer for it and cancels any further INQUIRE',
    (state) => {
      for (const key of ['AGENT_LINE:ok', 'AGENT_LINE:err'] as const) {
        const { actions } = check(state, key, 'ready', owing);
        expect(actions).toContain('answerClient');
        expect(actions).not.toContain('relayToClient');
      }
      const { actions } = check(state, 'AGENT_LINE:inquire', 'stay', owing);
      expect(actions).toEqual(expect.arrayContaining(['discardAgentLine', 'cancelAgentInquiry']));
    },
  );

  it('owing the client an ERR, draining answers it at the end of the client\'s answer', () => {
    expect(check('bufferingInquire.draining', 'CLIENT_LINE:end', 'ready', owing).actions).toContain('answerClient');
    expect(check('bufferingInquire.draining', 'CLIENT_LINE:end', 'ready').actions).not.toContain('answerClient');
  });

  it('once the server asked to stop, a completed answer leads to closing; an INQUIRE may still be answered', () => {
    const stopping: SessionContext = { ...BASE_CONTEXT, stopRequested: true };
    check('waitingForAgent', 'AGENT_LINE:ok', 'closing', stopping);
    check('sendingToClient', 'AGENT_LINE:err', 'closing', stopping);
    check('waitingForAgent', 'AGENT_LINE:inquire', 'bufferingInquire.answering', stopping);
    check('bufferingInquire.answering', 'CLIENT_LINE:end', 'sendingToAgent', stopping);
  });

  it('a forbidden command and GETINFO restricted are answered by the proxy and never forwarded', () => {
    for (const key of ['CLIENT_LINE:forbidden', 'CLIENT_LINE:restrictedQuery'] as const) {
      const { actions } = check('ready', key, 'ready');
      expect(actions).toEqual(expect.arrayContaining(['discardClientLine', 'beginCommand', 'endCommand', 'answerClient']));
      expect(actions).not.toContain('forwardToAgent');
    }
  });

  it('once the client has ended, a completed answer or an INQUIRE leads to closing, not ready', () => {
    check('waitingForAgent', 'AGENT_LINE:ok', 'closing', ended);
    check('waitingForAgent', 'AGENT_LINE:inquire', 'closing', ended);
    check('bufferingInquire.draining', 'CLIENT_LINE:end', 'closing', ended);
  });
});
