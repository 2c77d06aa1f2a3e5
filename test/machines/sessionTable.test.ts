/**
 * The session machine against a hand-written table: every resting state × every event variant states its
 * outcome: the state it leads to, `stay` (handled without a state change), `reject` (not handled: the explicit
 * rejectEvent action runs), or `final` (a final state absorbs everything). Variants: every event type, plus a
 * connect failure that is retried, an INQUIRE that takes no data, and each client line the policy forbids.
 * The types make the table exhaustive, and each sample the event its key names; a test checks the list of states
 * against the machine itself.
 */
import { describe, expect, it } from 'vitest';
import { transition, type AnyStateNode, type StateValue } from 'xstate';
import { sessionMachine, type ClientLineEvent, type SessionContext, type SessionEvent, type SessionEventType } from '../../machines/session.js';
import type { CommandVerb } from '../../src/protocol/classify.js';
import { LineHandle } from '../../src/protocol/line.js';

const RESTING_STATES = [
  'connecting.reaching.dialing',
  'connecting.reaching.backingOff',
  'connecting.reaching.handshaking',
  'connecting.launching',
  'connecting.awaitingGreeting',
  'connecting.restricting',
  'awaitingCommand.ready',
  'awaitingCommand.bufferingCommand',
  'command.sendingToAgent',
  'command.waitingForAgent',
  'command.sendingToClient',
  'command.bufferingInquire.answering',
  'command.bufferingInquire.acknowledging',
  'command.bufferingInquire.discarding',
  'held.awaitingConsent',
  'held.awaitingCryptoSlot',
  'closing',
  'closed',
  'fatal',
] as const;
type State = (typeof RESTING_STATES)[number];
/** States left at once by an eventless transition: they never rest, so they have no row. */
const TRANSIENT_STATES = ['error'];

/** The client lines the policy judges: every one but `#` and empty (the runtime never sets refusedBy on those). */
type JudgedClientLine = Exclude<ClientLineEvent['type'], 'CLIENT.COMMENT'>;
type EventKey =
  | SessionEventType
  /** A full listen queue: the one connect failure that is retried. */
  | 'AGENT_CONNECT_FAILED:EAGAIN'
  /** Connected to a socket file's TCP port, whose server reads the nonce first. */
  | 'AGENT_CONNECTED:handshake'
  /** An INQUIRE whose reader takes no data (PINENTRY_LAUNCHED). */
  | 'AGENT.INQUIRE:noData'
  /** A client line the session's policy forbids as a command. */
  | `${JudgedClientLine}:refused`
  /** A command that uses a key, which the person must approve first (`--confirm`). */
  | 'CLIENT.COMMAND:consent'
  /** The person pressed Cancel (the sample without a variant: no answer came in time). */
  | 'CONSENT_REFUSED:cancelled'
  /** A key operation that waits for a crypto slot (`--max-crypto`). */
  | 'CLIENT.COMMAND:cryptoSlot';
type Outcome = State | 'stay' | 'reject' | 'final';
type Row = Record<EventKey, Outcome>;
/** The event type a key is a variant of. */
type TypeOf<K extends EventKey> = K extends `${infer T}:${string}` ? T : K;

const line = new LineHandle(Buffer.from('NOP\n'));
const clientLine = <T extends ClientLineEvent['type']>(type: T, verb: CommandVerb) => ({ type, verb, line, bytes: 8 });
const refused = <T extends JudgedClientLine>(type: T) => ({ type, verb: 'KEYINFO' as const, line, bytes: 8, refusedBy: 'deny' as const });

const SAMPLES: { [K in EventKey]: Extract<SessionEvent, { type: TypeOf<K> }> } = {
  AGENT_CONNECTED: { type: 'AGENT_CONNECTED' },
  AGENT_SPARE_TAKEN: { type: 'AGENT_SPARE_TAKEN' },
  AGENT_CONNECT_FAILED: { type: 'AGENT_CONNECT_FAILED', code: 'ECONNREFUSED' },
  'AGENT_CONNECT_FAILED:EAGAIN': { type: 'AGENT_CONNECT_FAILED', code: 'EAGAIN' },
  'AGENT_CONNECTED:handshake': { type: 'AGENT_CONNECTED', handshake: 'cygwin' },
  AGENT_HANDSHAKE_DONE: { type: 'AGENT_HANDSHAKE_DONE' },
  AGENT_HANDSHAKE_FAILED: { type: 'AGENT_HANDSHAKE_FAILED', defect: 'nonceMismatch' },
  AGENT_UPSTREAM_INVALID: { type: 'AGENT_UPSTREAM_INVALID', defect: 'nonceTooShort' },
  AGENT_LAUNCHED: { type: 'AGENT_LAUNCHED' },
  AGENT_LAUNCH_FAILED: { type: 'AGENT_LAUNCH_FAILED' },
  AGENT_BLOCKED: { type: 'AGENT_BLOCKED' },
  AGENT_DRAINED: { type: 'AGENT_DRAINED' },
  AGENT_CLOSED: { type: 'AGENT_CLOSED', code: 'EOF' },
  'AGENT.OK': { type: 'AGENT.OK', line, bytes: 8 },
  'AGENT.OK_CLOSING': { type: 'AGENT.OK_CLOSING', line, bytes: 8 },
  'AGENT.ERR': { type: 'AGENT.ERR', line, bytes: 8 },
  'AGENT.INQUIRE': { type: 'AGENT.INQUIRE', keyword: 'PASSPHRASE', line, bytes: 8 },
  'AGENT.INQUIRE:noData': { type: 'AGENT.INQUIRE', keyword: 'PINENTRY_LAUNCHED', line, bytes: 8 },
  'AGENT.STATUS': { type: 'AGENT.STATUS', keyword: 'PROGRESS', line, bytes: 8 },
  'AGENT.COMMENT': { type: 'AGENT.COMMENT', line, bytes: 8 },
  'AGENT.DATA': { type: 'AGENT.DATA', line, bytes: 8 },
  'AGENT.END': { type: 'AGENT.END', line, bytes: 8 },
  'AGENT.INVALID': { type: 'AGENT.INVALID', line, bytes: 8 },
  CLIENT_PARTIAL: { type: 'CLIENT_PARTIAL', bytes: 3 },
  'CLIENT.COMMAND': clientLine('CLIENT.COMMAND', 'NOP'),
  'CLIENT.COMMENT': clientLine('CLIENT.COMMENT', ''),
  'CLIENT.DATA': clientLine('CLIENT.DATA', 'D'),
  'CLIENT.MALFORMED_DATA': clientLine('CLIENT.MALFORMED_DATA', 'D'),
  'CLIENT.END': clientLine('CLIENT.END', 'END'),
  'CLIENT.CAN': clientLine('CLIENT.CAN', 'CAN'),
  'CLIENT.COMMAND:refused': refused('CLIENT.COMMAND'),
  'CLIENT.DATA:refused': refused('CLIENT.DATA'),
  'CLIENT.MALFORMED_DATA:refused': refused('CLIENT.MALFORMED_DATA'),
  'CLIENT.END:refused': refused('CLIENT.END'),
  'CLIENT.CAN:refused': refused('CLIENT.CAN'),
  'CLIENT.TOO_LONG': { type: 'CLIENT.TOO_LONG', bytes: 2000 },
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
  'CLIENT.COMMAND:consent': { type: 'CLIENT.COMMAND', verb: 'PKSIGN', line, bytes: 8, consent: 'sign' },
  CONSENT_GRANTED: { type: 'CONSENT_GRANTED', line, by: 'prompt' },
  CONSENT_REFUSED: { type: 'CONSENT_REFUSED', answer: 'notConfirmed' },
  'CONSENT_REFUSED:cancelled': { type: 'CONSENT_REFUSED', answer: 'cancelled' },
  'CLIENT.COMMAND:cryptoSlot': { type: 'CLIENT.COMMAND', verb: 'PKSIGN', line, bytes: 8, cryptoSlot: true },
  CRYPTO_SLOT_GRANTED: { type: 'CRYPTO_SLOT_GRANTED', line },
};

const EVENT_KEYS = Object.keys(SAMPLES) as EventKey[];
const AGENT_LINES = EVENT_KEYS.filter((k) => k.startsWith('AGENT.'));
const allAgentLines = (outcome: Outcome): Partial<Row> => Object.fromEntries(AGENT_LINES.map((k) => [k, outcome]));

/**
 * What every live state does alike: a client that stops reading has the idle timeout to read on, flow control
 * towards the agent is no state of its own, the agent closing is fatal, a client gone or a server shutdown
 * closes.
 */
const live: Partial<Row> = {
  CLIENT_BLOCKED: 'stay',
  CLIENT_DRAINED: 'stay',
  CLIENT_STALLED: 'fatal',
  AGENT_BLOCKED: 'stay',
  AGENT_DRAINED: 'stay',
  AGENT_CLOSED: 'fatal',
  CLIENT_GONE: 'closing',
  STOP: 'closing',
  STOP_NOW: 'closing',
};
const row = (fill: Outcome, cells: Partial<Row>): Row => ({
  ...(Object.fromEntries(EVENT_KEYS.map((k) => [k, fill])) as Row),
  ...(fill === 'final' ? {} : live),
  ...cells,
});

/** Server shutdown with a command in flight: it finishes first (STOP is remembered); past the drain time it closes. */
const finishThenClose: Partial<Row> = { STOP: 'stay', STOP_NOW: 'closing' };

/** ready and bufferingCommand: the agent's command loop reads the next line. */
const awaitingCommand: Partial<Row> = {
  // Outside an INQUIRE every line but # and empty is a command to the agent (it answers stray D/END/CAN itself).
  'CLIENT.COMMAND': 'command.waitingForAgent',
  'CLIENT.DATA': 'command.waitingForAgent',
  'CLIENT.MALFORMED_DATA': 'command.waitingForAgent',
  'CLIENT.END': 'command.waitingForAgent',
  'CLIENT.CAN': 'command.waitingForAgent',
  // Through the transient error state, which answers ERR Forbidden.
  'CLIENT.COMMAND:refused': 'awaitingCommand.ready',
  'CLIENT.DATA:refused': 'awaitingCommand.ready',
  'CLIENT.MALFORMED_DATA:refused': 'awaitingCommand.ready',
  'CLIENT.END:refused': 'awaitingCommand.ready',
  'CLIENT.CAN:refused': 'awaitingCommand.ready',
  // Held until the person decides; the agent sees nothing meanwhile.
  'CLIENT.COMMAND:consent': 'held.awaitingConsent',
  'CLIENT.COMMAND:cryptoSlot': 'held.awaitingCryptoSlot',
  'CLIENT.COMMENT': 'awaitingCommand.ready',
  'CLIENT.TOO_LONG': 'awaitingCommand.ready', // through the transient error state, which answers the ERR
  CLIENT_EOF: 'closing',
  ...allAgentLines('fatal'),
  IDLE_TIMEOUT: 'fatal', // the client is told (ERR Timeout), then the session closes
};

/** sendingToAgent, waitingForAgent, sendingToClient: a command's answer is being relayed. */
const relayingAnswer: Partial<Row> = {
  'AGENT.STATUS': 'command.sendingToClient',
  'AGENT.COMMENT': 'command.sendingToClient',
  'AGENT.DATA': 'command.sendingToClient',
  'AGENT.END': 'command.sendingToClient',
  'AGENT.INQUIRE': 'command.bufferingInquire.answering',
  'AGENT.INQUIRE:noData': 'command.bufferingInquire.acknowledging',
  'AGENT.OK': 'awaitingCommand.ready',
  'AGENT.ERR': 'awaitingCommand.ready',
  'AGENT.OK_CLOSING': 'closing',
  'AGENT.INVALID': 'fatal',
  CLIENT_EOF: 'stay', // passed on to the agent; the answer still comes
  ...finishThenClose,
};

/** The inquire sub-states share their reactions to the client's EOF, a server shutdown and the agent's lines. */
const inquireCommon: Partial<Row> = {
  CLIENT_EOF: 'command.waitingForAgent',
  ...finishThenClose,
  'AGENT.STATUS': 'stay',
  'AGENT.COMMENT': 'stay',
  'AGENT.DATA': 'stay',
  'AGENT.END': 'stay',
  // The agent's reader had returned already: it reads commands again.
  'AGENT.OK': 'awaitingCommand.ready',
  'AGENT.ERR': 'awaitingCommand.ready',
  'AGENT.OK_CLOSING': 'closing',
  'AGENT.INQUIRE': 'fatal', // nested INQUIRE: libassuan never does this
  'AGENT.INQUIRE:noData': 'fatal',
  'AGENT.INVALID': 'fatal',
};

const SPEC: Record<State, Row> = {
  'connecting.reaching.dialing': row('reject', {
    AGENT_CONNECTED: 'connecting.awaitingGreeting',
    'AGENT_CONNECTED:handshake': 'connecting.reaching.handshaking',
    // A connection dialed ahead of the client: its greeting follows as agent lines.
    AGENT_SPARE_TAKEN: 'connecting.awaitingGreeting',
    // Fatal for a path given explicitly; a daemon found by name is launched (see the context-dependent tests).
    AGENT_CONNECT_FAILED: 'fatal',
    'AGENT_CONNECT_FAILED:EAGAIN': 'connecting.reaching.backingOff',
    AGENT_UPSTREAM_INVALID: 'fatal',
  }),
  'connecting.reaching.backingOff': row('reject', {}),
  'connecting.reaching.handshaking': row('reject', {
    AGENT_HANDSHAKE_DONE: 'connecting.awaitingGreeting',
    AGENT_HANDSHAKE_FAILED: 'fatal',
  }),
  'connecting.launching': row('reject', {
    AGENT_LAUNCHED: 'connecting.reaching.dialing',
    AGENT_LAUNCH_FAILED: 'fatal',
  }),
  'connecting.awaitingGreeting': row('reject', {
    ...allAgentLines('fatal'),
    'AGENT.COMMENT': 'stay',
    'AGENT.OK': 'awaitingCommand.ready',
  }),
  'connecting.restricting': row('reject', {
    ...allAgentLines('fatal'),
    'AGENT.STATUS': 'stay',
    'AGENT.COMMENT': 'stay',
    'AGENT.DATA': 'stay',
    'AGENT.END': 'stay',
    'AGENT.OK': 'awaitingCommand.ready',
  }),
  'awaitingCommand.ready': row('reject', { ...awaitingCommand, CLIENT_PARTIAL: 'awaitingCommand.bufferingCommand' }),
  'awaitingCommand.bufferingCommand': row('reject', awaitingCommand),
  'command.sendingToAgent': row('reject', { ...relayingAnswer, AGENT_DRAINED: 'command.waitingForAgent' }),
  'command.waitingForAgent': row('reject', { ...relayingAnswer, AGENT_BLOCKED: 'command.sendingToAgent', RESPONSE_TIMEOUT: 'fatal' }),
  'command.sendingToClient': row('reject', {
    ...relayingAnswer,
    'AGENT.STATUS': 'stay',
    'AGENT.COMMENT': 'stay',
    'AGENT.DATA': 'stay',
    'AGENT.END': 'stay',
  }),
  'command.bufferingInquire.answering': row('reject', {
    ...inquireCommon,
    'CLIENT.DATA': 'stay',
    'CLIENT.DATA:refused': 'stay', // a D line inside a data answer is data, never a command
    'CLIENT.COMMENT': 'stay',
    'CLIENT.MALFORMED_DATA': 'command.bufferingInquire.discarding',
    'CLIENT.MALFORMED_DATA:refused': 'command.bufferingInquire.discarding',
    'CLIENT.TOO_LONG': 'command.bufferingInquire.discarding',
    'CLIENT.END': 'command.waitingForAgent',
    'CLIENT.END:refused': 'command.waitingForAgent',
    'CLIENT.CAN': 'command.waitingForAgent',
    'CLIENT.CAN:refused': 'command.waitingForAgent',
    'CLIENT.COMMAND': 'command.waitingForAgent', // the agent ends the INQUIRE with ERR 274 and consumes the line
    'CLIENT.COMMAND:refused': 'command.waitingForAgent', // never sent: the agent gets CAN in its place
    'CLIENT.COMMAND:consent': 'command.waitingForAgent', // ends the INQUIRE unexecuted: nothing to approve
    'CLIENT.COMMAND:cryptoSlot': 'command.waitingForAgent', // nor a slot to wait for
  }),
  'command.bufferingInquire.acknowledging': row('reject', {
    ...inquireCommon,
    'CLIENT.COMMENT': 'stay',
    // Any other line ends an inquiry that takes no data, a D line too.
    'CLIENT.DATA': 'command.waitingForAgent',
    'CLIENT.DATA:refused': 'command.waitingForAgent',
    'CLIENT.MALFORMED_DATA': 'command.waitingForAgent',
    'CLIENT.MALFORMED_DATA:refused': 'command.waitingForAgent',
    'CLIENT.END': 'command.waitingForAgent',
    'CLIENT.END:refused': 'command.waitingForAgent',
    'CLIENT.CAN': 'command.waitingForAgent',
    'CLIENT.CAN:refused': 'command.waitingForAgent',
    'CLIENT.COMMAND': 'command.waitingForAgent',
    'CLIENT.COMMAND:refused': 'command.waitingForAgent',
    'CLIENT.COMMAND:consent': 'command.waitingForAgent',
    'CLIENT.COMMAND:cryptoSlot': 'command.waitingForAgent',
    'CLIENT.TOO_LONG': 'command.waitingForAgent',
  }),
  'command.bufferingInquire.discarding': row('reject', {
    ...inquireCommon,
    'CLIENT.DATA': 'stay',
    'CLIENT.DATA:refused': 'stay',
    'CLIENT.COMMENT': 'stay',
    'CLIENT.MALFORMED_DATA': 'stay',
    'CLIENT.MALFORMED_DATA:refused': 'stay',
    'CLIENT.TOO_LONG': 'stay',
    'CLIENT.END': 'command.waitingForAgent',
    'CLIENT.END:refused': 'command.waitingForAgent',
    'CLIENT.CAN': 'command.waitingForAgent',
    'CLIENT.CAN:refused': 'command.waitingForAgent',
    'CLIENT.COMMAND': 'command.waitingForAgent',
    'CLIENT.COMMAND:refused': 'command.waitingForAgent',
    'CLIENT.COMMAND:consent': 'command.waitingForAgent',
    'CLIENT.COMMAND:cryptoSlot': 'command.waitingForAgent',
  }),
  'held.awaitingConsent': row('reject', {
    CONSENT_GRANTED: 'command.waitingForAgent',
    // Through the transient error state, which answers Not confirmed or Operation cancelled.
    CONSENT_REFUSED: 'awaitingCommand.ready',
    'CONSENT_REFUSED:cancelled': 'awaitingCommand.ready',
    // The agent reads commands and has not been sent one: anything it says is unsolicited.
    ...allAgentLines('fatal'),
    CLIENT_EOF: 'stay', // passed on once the command is sent
    ...finishThenClose,
  }),
  'held.awaitingCryptoSlot': row('reject', {
    CRYPTO_SLOT_GRANTED: 'command.waitingForAgent',
    ...allAgentLines('fatal'),
    CLIENT_EOF: 'stay',
    ...finishThenClose,
  }),
  closing: row('reject', {
    ...allAgentLines('stay'),
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
  mayLaunchAgent: false,
  launchTried: false,
  consent: null,
  needsCryptoSlot: false,
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

  it('each sample is the event its key names', () => {
    for (const key of EVENT_KEYS) expect(SAMPLES[key].type).toBe(key.split(':')[0]);
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
  it('a daemon found by name is launched once when nothing answers at its socket, then dialed again', () => {
    const byName: SessionContext = { ...BASE_CONTEXT, mayLaunchAgent: true };
    const { actions } = check('connecting.reaching.dialing', 'AGENT_CONNECT_FAILED', 'connecting.launching', byName);
    expect(actions).toContain('launchAgent');
    // Once launched, a second failure is reported: no loop of launches.
    check('connecting.reaching.dialing', 'AGENT_CONNECT_FAILED', 'fatal', { ...byName, launchTried: true });
    // Only a missing or refusing socket is a reason to launch; a full queue is retried, other errors reported.
    check('connecting.reaching.dialing', 'AGENT_CONNECT_FAILED:EAGAIN', 'connecting.reaching.backingOff', byName);
    const other = sessionMachine.resolveState({ value: toValue('connecting.reaching.dialing'), context: byName });
    const [next] = transition(sessionMachine, other, { type: 'AGENT_CONNECT_FAILED', code: 'EACCES' });
    expect(toPath(next.value)).toBe('fatal');
  });


  const owing: SessionContext = { ...BASE_CONTEXT, owedAnswer: 'malformedEscape' };
  const ended: SessionContext = { ...BASE_CONTEXT, clientEnded: true };

  it.each(['command.sendingToAgent', 'command.waitingForAgent', 'command.sendingToClient'] as const)(
    'owing the client an ERR, %s swaps the agent\'s final answer for it and cancels any further INQUIRE',
    (state) => {
      for (const key of ['AGENT.OK', 'AGENT.ERR'] as const) {
        const { actions } = check(state, key, 'awaitingCommand.ready', owing);
        expect(actions).toContain('answerClient');
        expect(actions).not.toContain('relayToClient');
      }
      for (const key of ['AGENT.INQUIRE', 'AGENT.INQUIRE:noData'] as const) {
        const { actions } = check(state, key, 'stay', owing);
        expect(actions).toContain('cancelAgentInquiry');
        expect(actions).not.toContain('relayToClient');
      }
    },
  );

  it('owing the client an ERR, discarding answers it when the agent ends the command', () => {
    for (const key of ['AGENT.OK', 'AGENT.ERR'] as const) {
      const { actions } = check('command.bufferingInquire.discarding', key, 'awaitingCommand.ready', owing);
      expect(actions).toContain('answerClient');
      expect(actions).not.toContain('relayToClient');
    }
  });

  it('once the server asked to stop, a completed answer leads to closing; an INQUIRE may still be answered', () => {
    const stopping: SessionContext = { ...BASE_CONTEXT, stopRequested: true };
    check('command.waitingForAgent', 'AGENT.OK', 'closing', stopping);
    check('command.sendingToClient', 'AGENT.ERR', 'closing', stopping);
    check('command.waitingForAgent', 'AGENT.INQUIRE', 'command.bufferingInquire.answering', stopping);
    check('command.bufferingInquire.answering', 'CLIENT.END', 'command.waitingForAgent', stopping);
  });

  it('a line the policy forbids is never forwarded: answered by the proxy, or (inside an INQUIRE) replaced by CAN', () => {
    for (const state of ['awaitingCommand.ready', 'awaitingCommand.bufferingCommand'] as const) {
      for (const key of ['CLIENT.COMMAND:refused', 'CLIENT.DATA:refused', 'CLIENT.MALFORMED_DATA:refused', 'CLIENT.END:refused', 'CLIENT.CAN:refused'] as const) {
        const { actions } = check(state, key, 'awaitingCommand.ready');
        expect(actions).toEqual(expect.arrayContaining(['noteRefusal', 'beginCommand', 'endCommand', 'answerClient']));
        expect(actions).not.toContain('forwardToAgent');
      }
    }
    for (const state of ['command.bufferingInquire.answering', 'command.bufferingInquire.acknowledging'] as const) {
      const { actions } = check(state, 'CLIENT.COMMAND:refused', 'command.waitingForAgent');
      expect(actions).toEqual(expect.arrayContaining(['cancelAgentInquiry', 'noteRefusal']));
      expect(actions).not.toContain('forwardToAgent');
    }
    const { actions } = check('command.bufferingInquire.discarding', 'CLIENT.COMMAND:refused', 'command.waitingForAgent');
    expect(actions).toContain('cancelAgentInquiry');
    expect(actions).not.toContain('forwardToAgent');
  });

  it('a D line is the answer\'s data for an INQUIRE that takes data, and ends one that takes none', () => {
    expect(check('command.bufferingInquire.answering', 'CLIENT.DATA', 'stay').actions).toContain('forwardToAgent');
    expect(check('command.bufferingInquire.acknowledging', 'CLIENT.DATA', 'command.waitingForAgent').actions).toContain('forwardToAgent');
  });

  it('restricted: the greeting is followed by the proxy\'s own OPTION, whose ERR ends the session', () => {
    const restricting: SessionContext = { ...BASE_CONTEXT, restrictAgent: true };
    check('connecting.awaitingGreeting', 'AGENT.OK', 'connecting.restricting', restricting);
    const { actions } = check('connecting.restricting', 'AGENT.ERR', 'fatal', restricting);
    expect(actions).toContain('abortSession');
  });

  it('once the client has ended, a completed answer leads to closing, and an INQUIRE waits for the agent\'s answer to the EOF', () => {
    check('command.waitingForAgent', 'AGENT.OK', 'closing', ended);
    check('command.waitingForAgent', 'AGENT.INQUIRE', 'command.waitingForAgent', ended);
    check('command.waitingForAgent', 'AGENT.INQUIRE:noData', 'command.waitingForAgent', ended);
  });
});
