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
  'connecting.restricting',
  'ready',
  'bufferingCommand',
  'sendingToAgent',
  'waitingForAgent',
  'sendingToClient',
  'bufferingInquire.answering',
  'bufferingInquire.acknowledging',
  'bufferingInquire.discarding',
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
  /** An INQUIRE whose reader takes no data (PINENTRY_LAUNCHED). */
  | 'AGENT_LINE:inquireNoData'
  | `CLIENT_LINE:${ClientLineKind}`
  /** A command line the session's policy forbids. */
  | 'CLIENT_LINE:refused';
type Outcome = State | 'stay' | 'reject' | 'final';
type Row = Record<EventKey, Outcome>;

const agentLine = (kind: AgentLineKind, keyword = kind === 'inquire' ? 'PASSPHRASE' : ''): SessionEvent => ({ type: 'AGENT_LINE', kind, keyword, bytes: 8 });
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
  'AGENT_LINE:inquireNoData': agentLine('inquire', 'PINENTRY_LAUNCHED'),
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
  'CLIENT_LINE:refused': { type: 'CLIENT_LINE', kind: 'command', verb: 'KEYINFO', bytes: 8, refusedBy: 'deny' },
  CLIENT_LINE_TOO_LONG: { type: 'CLIENT_LINE_TOO_LONG', bytes: 2000 },
  CLIENT_EOF: { type: 'CLIENT_EOF' },
  CLIENT_GONE: { type: 'CLIENT_GONE', code: 'ECONNRESET' },
  SOCKETS_CLOSED: { type: 'SOCKETS_CLOSED' },
  STOP: { type: 'STOP' },
  STOP_NOW: { type: 'STOP_NOW' },
  IDLE_TIMEOUT: { type: 'IDLE_TIMEOUT' },
  RESPONSE_TIMEOUT: { type: 'RESPONSE_TIMEOUT' },
  CLIENT_BLOCKED: { type: 'CLIENT_BLOCKED' },
  CLIENT_DRAINED: { type: 'CLIENT_DRAINED' },
  CLIENT_STALLED: { type: 'CLIENT_STALLED' },
};

const EVENT_KEYS = Object.keys(SAMPLES) as EventKey[];
/** Every live state, from the machine's root: a client that stops reading has the idle timeout to read on. */
const readingBound: Partial<Row> = { CLIENT_BLOCKED: 'stay', CLIENT_DRAINED: 'stay', CLIENT_STALLED: 'fatal' };
const row = (fill: Outcome, cells: Partial<Row>): Row => ({
  ...(Object.fromEntries(EVENT_KEYS.map((k) => [k, fill])) as Row),
  ...(fill === 'final' ? {} : readingBound),
  ...cells,
});

const AGENT_KINDS = ['ok', 'okClosing', 'err', 'inquire', 'inquireNoData', 'status', 'comment', 'data', 'end', 'invalid'] as const;
const ALL_AGENT_LINES = (outcome: Outcome): Partial<Row> => Object.fromEntries(AGENT_KINDS.map((k) => [`AGENT_LINE:${k}`, outcome]));

/** Server shutdown: idle sessions close at once; a command in flight finishes first (STOP is remembered). */
const closeOnStop: Partial<Row> = { STOP: 'closing', STOP_NOW: 'closing' };
const finishThenClose: Partial<Row> = { STOP: 'stay', STOP_NOW: 'closing' };

/** ready and bufferingCommand: the agent's command loop reads the next line. */
const awaitingCommand: Partial<Row> = {
  // Outside an INQUIRE every line but # and empty is a command to the agent (it answers stray D/END/CAN itself).
  'CLIENT_LINE:command': 'sendingToAgent',
  'CLIENT_LINE:data': 'sendingToAgent',
  'CLIENT_LINE:malformedData': 'sendingToAgent',
  'CLIENT_LINE:end': 'sendingToAgent',
  'CLIENT_LINE:cancel': 'sendingToAgent',
  'CLIENT_LINE:refused': 'ready', // through the transient error state, which answers ERR Forbidden
  'CLIENT_LINE:comment': 'ready',
  'CLIENT_LINE:empty': 'ready',
  CLIENT_LINE_TOO_LONG: 'ready', // through the transient error state, which answers the ERR
  CLIENT_EOF: 'closing',
  CLIENT_GONE: 'closing',
  ...ALL_AGENT_LINES('fatal'),
  AGENT_CLOSED: 'fatal',
  IDLE_TIMEOUT: 'fatal', // the client is told (ERR Timeout), then the session closes
  ...closeOnStop,
};

/** sendingToAgent, waitingForAgent, sendingToClient: a command's answer is being relayed. */
const relayingAnswer: Partial<Row> = {
  'AGENT_LINE:status': 'sendingToClient',
  'AGENT_LINE:comment': 'sendingToClient',
  'AGENT_LINE:data': 'sendingToClient',
  'AGENT_LINE:end': 'sendingToClient',
  'AGENT_LINE:inquire': 'bufferingInquire.answering',
  'AGENT_LINE:inquireNoData': 'bufferingInquire.acknowledging',
  'AGENT_LINE:ok': 'ready',
  'AGENT_LINE:err': 'ready',
  'AGENT_LINE:okClosing': 'closing',
  'AGENT_LINE:invalid': 'fatal',
  AGENT_CLOSED: 'fatal',
  CLIENT_GONE: 'closing',
  CLIENT_EOF: 'stay', // passed on to the agent; the answer still comes
  ...finishThenClose,
};

/** The inquire sub-states share their reactions to the client leaving and the agent closing. */
const inquireCommon: Partial<Row> = { CLIENT_EOF: 'waitingForAgent', CLIENT_GONE: 'closing', AGENT_CLOSED: 'fatal', ...finishThenClose };
const agentDuringInquiry: Partial<Row> = {
  'AGENT_LINE:status': 'stay',
  'AGENT_LINE:comment': 'stay',
  'AGENT_LINE:data': 'stay',
  'AGENT_LINE:end': 'stay',
  // The agent's reader had returned already: it reads commands again.
  'AGENT_LINE:ok': 'ready',
  'AGENT_LINE:err': 'ready',
  'AGENT_LINE:okClosing': 'closing',
  'AGENT_LINE:inquire': 'fatal', // nested INQUIRE: libassuan never does this
  'AGENT_LINE:inquireNoData': 'fatal',
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
  'connecting.restricting': row('reject', {
    ...ALL_AGENT_LINES('fatal'),
    'AGENT_LINE:status': 'stay',
    'AGENT_LINE:comment': 'stay',
    'AGENT_LINE:data': 'stay',
    'AGENT_LINE:end': 'stay',
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
    'CLIENT_LINE:refused': 'sendingToAgent', // never sent: the agent gets CAN in its place
  }),
  'bufferingInquire.acknowledging': row('reject', {
    ...inquireCommon,
    ...agentDuringInquiry,
    'CLIENT_LINE:comment': 'stay',
    'CLIENT_LINE:empty': 'stay',
    // Any other line ends an inquiry that takes no data, a D line too.
    'CLIENT_LINE:data': 'sendingToAgent',
    'CLIENT_LINE:malformedData': 'sendingToAgent',
    'CLIENT_LINE:end': 'sendingToAgent',
    'CLIENT_LINE:cancel': 'sendingToAgent',
    'CLIENT_LINE:command': 'sendingToAgent',
    'CLIENT_LINE:refused': 'sendingToAgent',
    CLIENT_LINE_TOO_LONG: 'sendingToAgent',
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
    'CLIENT_LINE:refused': 'sendingToAgent',
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
  refusedVerb: '',
  failure: null,
  responseTimeoutOn: false,
  restrictAgent: false,
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
      for (const key of ['AGENT_LINE:inquire', 'AGENT_LINE:inquireNoData'] as const) {
        const { actions } = check(state, key, 'stay', owing);
        expect(actions).toEqual(expect.arrayContaining(['discardAgentLine', 'cancelAgentInquiry']));
      }
    },
  );

  it('owing the client an ERR, discarding answers it when the agent ends the command', () => {
    expect(check('bufferingInquire.discarding', 'AGENT_LINE:err', 'ready', owing).actions).toContain('answerClient');
  });

  it('once the server asked to stop, a completed answer leads to closing; an INQUIRE may still be answered', () => {
    const stopping: SessionContext = { ...BASE_CONTEXT, stopRequested: true };
    check('waitingForAgent', 'AGENT_LINE:ok', 'closing', stopping);
    check('sendingToClient', 'AGENT_LINE:err', 'closing', stopping);
    check('waitingForAgent', 'AGENT_LINE:inquire', 'bufferingInquire.answering', stopping);
    check('bufferingInquire.answering', 'CLIENT_LINE:end', 'sendingToAgent', stopping);
  });

  it('a line the policy forbids is never forwarded: answered by the proxy, or (inside an INQUIRE) replaced by CAN', () => {
    for (const state of ['ready', 'bufferingCommand'] as const) {
      const { actions } = check(state, 'CLIENT_LINE:refused', 'ready');
      expect(actions).toEqual(expect.arrayContaining(['discardClientLine', 'noteRefusal', 'beginCommand', 'endCommand', 'answerClient']));
      expect(actions).not.toContain('forwardToAgent');
    }
    for (const state of ['bufferingInquire.answering', 'bufferingInquire.acknowledging'] as const) {
      const { actions } = check(state, 'CLIENT_LINE:refused', 'sendingToAgent');
      expect(actions).toEqual(expect.arrayContaining(['discardClientLine', 'cancelAgentInquiry', 'noteRefusal']));
      expect(actions).not.toContain('forwardToAgent');
    }
    const { actions } = check('bufferingInquire.discarding', 'CLIENT_LINE:refused', 'sendingToAgent');
    expect(actions).not.toContain('forwardToAgent');
  });

  it('a D line is the answer\'s data for an INQUIRE that takes data, and ends one that takes none', () => {
    expect(check('bufferingInquire.answering', 'CLIENT_LINE:data', 'stay').actions).toContain('forwardToAgent');
    expect(check('bufferingInquire.acknowledging', 'CLIENT_LINE:data', 'sendingToAgent').actions).toContain('forwardToAgent');
  });

  it('restricted: the greeting is followed by the proxy\'s own OPTION, whose ERR ends the session', () => {
    const restricting: SessionContext = { ...BASE_CONTEXT, restrictAgent: true };
    check('connecting.awaitingGreeting', 'AGENT_LINE:ok', 'connecting.restricting', restricting);
    const { actions } = check('connecting.restricting', 'AGENT_LINE:err', 'fatal', restricting);
    expect(actions).toContain('abortSession');
  });

  it('once the client has ended, a completed answer leads to closing, and an INQUIRE waits for the agent\'s answer to the EOF', () => {
    check('waitingForAgent', 'AGENT_LINE:ok', 'closing', ended);
    check('waitingForAgent', 'AGENT_LINE:inquire', 'waitingForAgent', ended);
    check('waitingForAgent', 'AGENT_LINE:inquireNoData', 'waitingForAgent', ended);
  });
});
