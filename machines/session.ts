/**
 * One client connection relayed to gpg-agent.
 *
 * Pure definition: effects are named actions the runtime (src/session.ts) provides, timeouts are named delays.
 * Events and context carry line kinds, fixed-vocabulary verbs and byte counts; the runtime holds the bytes of
 * the line an event describes and the actions act on that line.
 *
 * Assuan is strictly one command at a time: a command line goes to the agent, the agent answers with any number
 * of S/#/D lines and INQUIREs and ends with OK or ERR. While an INQUIRE is open the client's D/#/empty lines go
 * to the agent until END or CAN. `#` and empty lines outside a command get no reply, so they never make us wait.
 */
import { and, assign, setup } from 'xstate';
import type { AgentLineKind, ClientLineKind, CommandVerb } from '../src/protocol/classify.js';
import { inquiryTakesData } from '../src/protocol/inquiries.js';

/**
 * What the proxy answers itself, in place of the agent: an ERR for a line it refused (too long, a `%` escape that
 * wedges gpg-agent, a line the session's policy forbids).
 */
export type ProxyAnswer = 'lineTooLong' | 'malformedEscape' | 'forbidden';

/** Why a session ended abnormally. `code` is a socket error code such as ECONNREFUSED, or EOF. */
export type SessionFailure =
  | { reason: 'connectFailed'; code: string }
  | { reason: 'connectTimeout'; attempts: number }
  | { reason: 'greetingTimeout' }
  /** The agent refused `OPTION pretend-request-origin=remote` (restricted mode cannot be enforced by the agent). */
  | { reason: 'restrictFailed' }
  /** The client sent no complete command within the idle timeout (after the greeting, or after its last answer). */
  | { reason: 'idleTimeout' }
  /** The client did not finish answering an INQUIRE within the inquiry timeout. */
  | { reason: 'inquiryTimeout' }
  /** The client read nothing of what it was sent for the idle timeout (its socket stayed full). */
  | { reason: 'clientStalled' }
  /** The agent did not start answering a request within the response timeout (off unless configured). */
  | { reason: 'responseTimeout' }
  | { reason: 'badGreeting' }
  | { reason: 'agentClosed'; code: string }
  | { reason: 'agentProtocolViolation' }
  | { reason: 'unsolicitedAgentOutput' }
  /** Set by the runtime, never by the machine: an effect threw (a bug), and the session was ended. */
  | { reason: 'internalError' };

/** The rule of the session's policy that refused a line (see src/policy.ts). */
export type PolicyRule = 'deny' | 'allow' | 'restricted';

export interface SessionContext {
  readonly sessionId: string;
  /** Connection attempts to the agent so far (retried while its listen queue is full). */
  connectAttempts: number;
  /** Verb of the last command sent to the agent. */
  command: string;
  /** Keyword of the open INQUIRE, '' when none. */
  inquire: string;
  /** The client has finished sending (EOF) and all it sent has been taken: nothing more will come from it. */
  clientEnded: boolean;
  /** The server asked this session to close once the command in flight is done. */
  stopRequested: boolean;
  /** An ERR the client is owed in place of the agent's answer, after the proxy refused one of its lines. */
  owedAnswer: ProxyAnswer | null;
  /** Verb of the last line the policy refused ('' when none), for the ERR that names it. */
  refusedVerb: string;
  failure: SessionFailure | null;
  /** The response timeout applies (it is off unless configured). */
  readonly responseTimeoutOn: boolean;
  /** Restricted mode: the agent itself is asked to treat this connection as remote before any client command. */
  readonly restrictAgent: boolean;
}

export type SessionEvent =
  | { type: 'AGENT_CONNECTED' }
  | { type: 'AGENT_CONNECT_FAILED'; code: string }
  /** An agent line; `bytes` is absent for the answer of a command whose answer is secret (GET_PASSPHRASE). */
  | { type: 'AGENT_LINE'; kind: AgentLineKind; keyword: string; bytes?: number }
  /** The line just forwarded was accepted by the upstream socket without backpressure. */
  | { type: 'AGENT_WRITTEN' }
  | { type: 'AGENT_CLOSED'; code: string }
  /** Bytes of a command line have arrived, its LF not yet. */
  | { type: 'CLIENT_PARTIAL'; bytes: number }
  /**
   * A complete client line. `refusedBy` names the policy rule that forbids it as a command (absent: allowed);
   * whether it is a command depends on where the agent's reader is. `bytes` is absent for the answer to an
   * INQUIRE whose answer is secret: not even its length is published.
   */
  | { type: 'CLIENT_LINE'; kind: ClientLineKind; verb: CommandVerb; bytes?: number; refusedBy?: PolicyRule }
  | { type: 'CLIENT_LINE_TOO_LONG'; bytes: number }
  /** The client finished sending, and every line it sent before has been taken by the machine. */
  | { type: 'CLIENT_EOF' }
  /** The client connection failed (reset, or a write to it failed). */
  | { type: 'CLIENT_GONE'; code: string }
  /** Both sockets are closed. */
  | { type: 'SOCKETS_CLOSED' }
  /** The server is shutting down: finish the command in flight (if any), then close. */
  | { type: 'STOP' }
  /** The server's drain time is up: close now, gracefully. */
  | { type: 'STOP_NOW' }
  /** Raised by the machine itself, `idleTimeout` after the greeting or the last answer, unless a command came first. */
  | { type: 'IDLE_TIMEOUT' }
  /** Raised by the machine itself, `responseTimeout` after a request reached the agent (only when configured). */
  | { type: 'RESPONSE_TIMEOUT' }
  /** The client's socket took a write only in part: the client is not reading (the agent is paused meanwhile). */
  | { type: 'CLIENT_BLOCKED' }
  /** The client read what was pending. */
  | { type: 'CLIENT_DRAINED' }
  /** Raised by the machine itself, `idleTimeout` after the client stopped reading, unless it read on. */
  | { type: 'CLIENT_STALLED' };

export type SessionEventType = SessionEvent['type'];

export interface SessionInput {
  sessionId: string;
  responseTimeoutOn?: boolean;
  restrictAgent?: boolean;
}

const agentKind = (event: SessionEvent): AgentLineKind | undefined =>
  event.type === 'AGENT_LINE' ? event.kind : undefined;
const clientKind = (event: SessionEvent): ClientLineKind | undefined =>
  event.type === 'CLIENT_LINE' ? event.kind : undefined;
const refused = (event: SessionEvent): boolean => event.type === 'CLIENT_LINE' && event.refusedBy !== undefined;

const session = setup({
  types: {
    context: {} as SessionContext,
    events: {} as SessionEvent,
    input: {} as SessionInput,
    tags: {} as 'clientInput' | 'idle' | 'inquiry',
  },
  actions: {
    /** Open the upstream connection to gpg-agent. */
    dialAgent: () => {},
    /** Send `OPTION pretend-request-origin=remote` to the agent: from now on it runs this connection restricted. */
    restrictAgent: () => {},
    /** Write the agent line of the current event to the client, unchanged. */
    relayToClient: () => {},
    /** Write the client line of the current event to the agent, unchanged. */
    forwardToAgent: () => {},
    /** Send AGENT_WRITTEN once the upstream socket has taken what was forwarded (at once, or when it drains). */
    watchAgentWrite: () => {},
    /** Drop the client line of the current event (the proxy answers for it instead). */
    discardClientLine: () => {},
    /** Drop the agent line of the current event (the client is owed the proxy's own answer instead). */
    discardAgentLine: () => {},
    /** End the open INQUIRE at the agent with CAN, in place of a client line the proxy refused. */
    cancelAgentInquiry: () => {},
    /** Write the proxy's own ERR line for a client line that did not go to the agent. */
    answerClient: (_, _params: { answer: ProxyAnswer | null }) => {},
    /** Record (and log) that the policy refused the current client line, read as a command or inside an INQUIRE. */
    noteRefusal: (_, _params: { verb: CommandVerb; rule: PolicyRule | undefined; during: 'command' | 'inquire' }) => {},
    beginCommand: (_, _params: { verb: CommandVerb }) => {},
    endCommand: (_, _params: { outcome: CommandOutcome }) => {},
    /** Tell the client why the session failed (one ERR line), then tear both connections down. */
    abortSession: (_, _params: { failure: SessionFailure | null }) => {},
    /**
     * Pass the client's EOF on to the agent (half-close), as a byte pipe would: the agent finishes the command (an
     * open INQUIRE fails with End of file), then closes. `withPartialLine`: inside an INQUIRE the bytes of an
     * unfinished last line go first, so the agent answers as it would directly (Incomplete line).
     */
    endAgentInput: (_, _params: { withPartialLine: boolean }) => {},
    /** End both connections once what is queued has been written. */
    closeGracefully: () => {},
    /** Close both connections now. */
    destroySockets: () => {},
    /** An event the current state does not handle: log it, change nothing. */
    rejectEvent: (_, _params: { type: string }) => {},
  },
  guards: {
    agentIntermediate: ({ event }) => {
      const kind = agentKind(event);
      return kind === 'status' || kind === 'comment' || kind === 'data' || kind === 'end';
    },
    agentInquire: ({ event }) => agentKind(event) === 'inquire',
    /** An INQUIRE whose reader takes no data (PINENTRY_LAUNCHED): a D line ends it, as any other line does. */
    agentInquireNoData: ({ event }) => event.type === 'AGENT_LINE' && event.kind === 'inquire' && !inquiryTakesData(event.keyword),
    agentOk: ({ event }) => agentKind(event) === 'ok',
    agentErr: ({ event }) => agentKind(event) === 'err',
    agentFinal: ({ event }) => agentKind(event) === 'ok' || agentKind(event) === 'err',
    agentClosing: ({ event }) => agentKind(event) === 'okClosing',
    agentComment: ({ event }) => agentKind(event) === 'comment',
    owesAnswer: ({ context }) => context.owedAnswer !== null,
    /** The agent's listen queue is full (EAGAIN on a Unix socket): it is there, just busy. */
    connectRetryable: ({ event }) => event.type === 'AGENT_CONNECT_FAILED' && event.code === 'EAGAIN',
    restrictAgent: ({ context }) => context.restrictAgent,
    clientEnded: ({ context }) => context.clientEnded,
    /** Nothing more will be taken from the client: it ended, or the server is shutting down. */
    noMoreCommands: ({ context }) => context.clientEnded || context.stopRequested,
    /** `#` and empty lines: every reader of the agent skips them, and none answers them. */
    clientNoReply: ({ event }) => clientKind(event) === 'comment' || clientKind(event) === 'empty',
    /** A line the policy forbids as a command. */
    clientRefused: ({ event }) => refused(event),
    /** Lines a data INQUIRE's reader takes as part of the answer. */
    clientInquiryData: ({ event }) => {
      const kind = clientKind(event);
      return kind === 'data' || kind === 'comment' || kind === 'empty';
    },
    clientMalformedData: ({ event }) => clientKind(event) === 'malformedData',
    /** END or CAN…: the client's own end of its answer. */
    clientEndsAnswer: ({ event }) => clientKind(event) === 'end' || clientKind(event) === 'cancel',
    /** A D line (well-formed or not): ends an INQUIRE that takes no data. */
    clientData: ({ event }) => clientKind(event) === 'data' || clientKind(event) === 'malformedData',
  },
  delays: {
    /** Bounds reaching the agent, retries included. */
    connectTimeout: 5_000,
    /** Wait before the next connection attempt: 10 ms, doubling, at most 250 ms. */
    retryBackoff: ({ context }) => Math.min(10 * 2 ** Math.max(context.connectAttempts - 1, 0), 250),
    /** For the agent's greeting, and for its answer to the proxy's own OPTION in restricted mode. */
    greetingTimeout: 5_000,
    /** From the greeting, or the end of the last answer, to the client's next complete command. */
    idleTimeout: 60_000,
    /** From an INQUIRE reaching the client to the end of its answer (a person may be typing a passphrase). */
    inquiryTimeout: 300_000,
    /** From a request reaching the agent to the agent's first line of answer (when responseTimeoutOn). */
    responseTimeout: 60_000,
    /** How long a closing session waits for its peers to close before destroying the sockets. */
    closeGrace: 2_000,
  },
});

export type CommandOutcome = 'ok' | 'err' | 'refused';

const failWith = (failure: SessionFailure) => session.assign({ failure: () => failure });
const agentClosed = session.assign({
  failure: ({ event }): SessionFailure => ({ reason: 'agentClosed', code: event.type === 'AGENT_CLOSED' ? event.code : 'EOF' }),
});
/** Write the ERR the client is owed for a line the proxy refused, and forget the debt. */
const answerOwed = session.enqueueActions(({ context, enqueue }) => {
  enqueue({ type: 'answerClient', params: { answer: context.owedAnswer } });
  enqueue.assign({ owedAnswer: null });
});
/*
 * The idle and response timers are delayed events the machine raises and cancels itself, rather than `after`
 * transitions: the idle timer runs while the session waits for a command, across ready and bufferingCommand and
 * unmoved by `#` lines (a client must not hold its slot with comments), and the response timer costs nothing
 * when off (the default).
 */
const IDLE_TIMER = 'idleTimer';
const RESPONSE_TIMER = 'responseTimer';
// Raised only where no idle timer runs (every command start cancels it), so it needs no cancel first: a cancel
// wrapped in enqueueActions cost ~12 µs per round trip (measured in a machine-only loop).
const startIdleTimer = session.raise({ type: 'IDLE_TIMEOUT' } as const, { id: IDLE_TIMER, delay: 'idleTimeout' });
const stopIdleTimer = session.cancel(IDLE_TIMER);
/** A client that stops reading holds the session (and pauses the agent): it has the idle timeout to read on. */
const STALL_TIMER = 'stallTimer';
const startStallTimer = session.raise({ type: 'CLIENT_STALLED' } as const, { id: STALL_TIMER, delay: 'idleTimeout' });
const stopStallTimer = session.cancel(STALL_TIMER);
const startResponseTimer = session.enqueueActions(({ context, enqueue }) => {
  if (context.responseTimeoutOn) enqueue.raise({ type: 'RESPONSE_TIMEOUT' }, { id: RESPONSE_TIMER, delay: 'responseTimeout' });
});
const stopResponseTimer = session.enqueueActions(({ context, enqueue }) => {
  if (context.responseTimeoutOn) enqueue.cancel(RESPONSE_TIMER);
});

/** A command's answer is complete: the agent reads commands again, and the client has the idle timeout for its next. */
const commandDone = (outcome: CommandOutcome) => [{ type: 'endCommand', params: { outcome } } as const, startIdleTimer];

/**
 * The policy refused the current line: it never reaches the agent; the refusal is logged with where the agent's
 * reader was, and the client is owed ERR Forbidden naming the verb. Read as a command, the line is also logged as
 * a command of its own, answered by the proxy (through the error state); inside an INQUIRE the agent gets CAN.
 */
const refuse = (during: 'command' | 'inquire') =>
  session.enqueueActions(({ event, enqueue }) => {
    if (event.type !== 'CLIENT_LINE') return;
    if (during === 'command') {
      enqueue.assign({ command: event.verb });
      enqueue.cancel(IDLE_TIMER);
      enqueue({ type: 'beginCommand', params: { verb: event.verb } });
    }
    enqueue('discardClientLine');
    // Inside an INQUIRE the agent's reader still waits: CAN ends it in place of the refused line.
    if (during === 'inquire') enqueue('cancelAgentInquiry');
    enqueue({ type: 'noteRefusal', params: { verb: event.verb, rule: event.refusedBy, during } });
    enqueue.assign({ owedAnswer: 'forbidden', refusedVerb: event.verb });
  });

/** Inside an INQUIRE, a line the policy forbids never reaches the agent: the inquiry is cancelled in its place. */
const refuseInsideInquiry = refuse('inquire');

/** ready and bufferingCommand: the agent's command loop reads the next line; the client's lines wait for it. */
const awaitingCommand = session.createStateConfig({
  tags: ['clientInput'],
  on: {
    // A client that neither sends a command nor leaves would hold a session slot and an agent connection.
    IDLE_TIMEOUT: { target: 'fatal', actions: failWith({ reason: 'idleTimeout' }) },
    CLIENT_LINE: [
      { guard: 'clientNoReply', target: 'ready', actions: 'forwardToAgent' },
      // Every other line is a command to the agent's command loop (it answers stray D/END/CAN too): the policy
      // decides each of them.
      { guard: 'clientRefused', target: 'error', actions: refuse('command') },
      {
        target: 'sendingToAgent',
        actions: [
          stopIdleTimer,
          assign({ command: ({ event }) => event.verb }),
          { type: 'beginCommand', params: ({ event }) => ({ verb: event.verb }) },
          'forwardToAgent',
        ],
      },
    ],
    CLIENT_LINE_TOO_LONG: { target: 'error', actions: [stopIdleTimer, 'discardClientLine', assign({ owedAnswer: 'lineTooLong' })] },
    CLIENT_EOF: 'closing',
    CLIENT_GONE: 'closing',
    AGENT_LINE: { target: 'fatal', actions: ['discardAgentLine', failWith({ reason: 'unsolicitedAgentOutput' })] },
    AGENT_CLOSED: { target: 'fatal', actions: agentClosed },
  },
});

/**
 * sendingToAgent, waitingForAgent, sendingToClient: a command is in flight and its answer is relayed line by line
 * as it arrives. OK/ERR end it; INQUIRE hands the turn to the client. The agent reads nothing meanwhile, so no
 * client line is taken: what the client sends waits, in order, for the agent's command loop.
 */
const relayingAnswer = session.createStateConfig({
  on: {
    AGENT_LINE: [
      { guard: 'agentIntermediate', target: 'sendingToClient', actions: 'relayToClient' },
      // After the proxy has cancelled an INQUIRE for the client, a further INQUIRE is refused for it too.
      { guard: and(['agentInquire', 'owesAnswer']), actions: ['discardAgentLine', 'cancelAgentInquiry'] },
      { guard: 'agentInquireNoData', target: 'bufferingInquire.acknowledging', actions: 'relayToClient' },
      { guard: 'agentInquire', target: 'bufferingInquire.answering', actions: 'relayToClient' },
      { guard: and(['agentFinal', 'owesAnswer']), target: 'ready', actions: ['discardAgentLine', answerOwed, ...commandDone('refused')] },
      { guard: 'agentOk', target: 'ready', actions: ['relayToClient', ...commandDone('ok')] },
      { guard: 'agentErr', target: 'ready', actions: ['relayToClient', ...commandDone('err')] },
      { guard: 'agentClosing', target: 'closing', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'ok' } }] },
      { target: 'fatal', actions: ['discardAgentLine', failWith({ reason: 'agentProtocolViolation' })] },
    ],
    AGENT_CLOSED: { target: 'fatal', actions: agentClosed },
    CLIENT_GONE: 'closing',
    // Delivered only once every line the client sent has gone to the agent; the answer is still relayed. An
    // unfinished last line goes too: should the command INQUIRE next, the agent's reader fails on it as directly.
    CLIENT_EOF: { actions: [session.assign({ clientEnded: true }), { type: 'endAgentInput', params: { withPartialLine: true } }] },
    STOP: { actions: session.assign({ stopRequested: true }) },
  },
});

/**
 * Agent lines while its inquiry reader is open. It cannot end the command before its reader returns, so OK/ERR
 * here mean the inquiry was over at the agent already (one this model does not know, e.g. a daemon's inquiry
 * that takes no data): the agent reads commands now, and so the client's next lines go to it as commands, as
 * they would directly.
 */
const agentLinesDuringInquiry = session.createStateConfig({
  on: {
    AGENT_LINE: [
      { guard: 'agentIntermediate', actions: 'relayToClient' },
      { guard: 'agentOk', target: '#session.ready', actions: ['relayToClient', ...commandDone('ok')] },
      { guard: 'agentErr', target: '#session.ready', actions: ['relayToClient', ...commandDone('err')] },
      { guard: 'agentClosing', target: '#session.closing', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'ok' } }] },
      { target: '#session.fatal', actions: ['discardAgentLine', failWith({ reason: 'agentProtocolViolation' })] },
    ],
  },
});

export const sessionMachine = session.createMachine({
  id: 'session',
  context: ({ input }) => ({
    sessionId: input.sessionId,
    connectAttempts: 0,
    command: '',
    inquire: '',
    clientEnded: false,
    stopRequested: false,
    owedAnswer: null,
    refusedVerb: '',
    failure: null,
    responseTimeoutOn: input.responseTimeoutOn ?? false,
    restrictAgent: input.restrictAgent ?? false,
  }),
  initial: 'connecting',
  on: {
    // Server shutdown past its drain time: close now, whatever is in flight.
    STOP_NOW: '.closing',
    // Server shutdown: a command in flight may finish (states that hold one override this).
    STOP: '.closing',
    // In every state: a client that reads nothing of what it is sent must not hold the session for ever.
    CLIENT_BLOCKED: { actions: startStallTimer },
    CLIENT_DRAINED: { actions: stopStallTimer },
    CLIENT_STALLED: { target: '.fatal', actions: failWith({ reason: 'clientStalled' }) },
    '*': { actions: { type: 'rejectEvent', params: ({ event }) => ({ type: event.type }) } },
  },
  states: {
    connecting: {
      initial: 'reaching',
      on: {
        AGENT_CLOSED: { target: 'fatal', actions: agentClosed },
        CLIENT_GONE: 'closing',
      },
      states: {
        reaching: {
          initial: 'dialing',
          after: {
            connectTimeout: {
              target: '#session.fatal',
              actions: session.assign({ failure: ({ context }) => ({ reason: 'connectTimeout', attempts: context.connectAttempts }) }),
            },
          },
          states: {
            dialing: {
              entry: [session.assign({ connectAttempts: ({ context }) => context.connectAttempts + 1 }), 'dialAgent'],
              on: {
                AGENT_CONNECTED: '#session.connecting.awaitingGreeting',
                AGENT_CONNECT_FAILED: [
                  { guard: 'connectRetryable', target: 'backingOff' },
                  {
                    target: '#session.fatal',
                    actions: assign({ failure: ({ event }) => ({ reason: 'connectFailed', code: event.code }) }),
                  },
                ],
              },
            },
            backingOff: {
              after: { retryBackoff: 'dialing' },
            },
          },
        },
        awaitingGreeting: {
          after: { greetingTimeout: { target: '#session.fatal', actions: failWith({ reason: 'greetingTimeout' }) } },
          on: {
            AGENT_LINE: [
              // A server may send `#` lines before its OK greeting; libassuan clients skip them.
              { guard: 'agentComment', actions: 'relayToClient' },
              { guard: and(['agentOk', 'restrictAgent']), target: 'restricting', actions: 'relayToClient' },
              { guard: 'agentOk', target: '#session.ready', actions: ['relayToClient', startIdleTimer] },
              { target: '#session.fatal', actions: ['discardAgentLine', failWith({ reason: 'badGreeting' })] },
            ],
          },
        },
        /**
         * Restricted mode: the proxy's own `OPTION pretend-request-origin=remote` goes first, so the agent itself
         * runs this connection as its extra socket would (its rules, a passphrase cache of its own, the remote-site
         * note in the pinentry). Its answer is the proxy's, not the client's; client lines wait meanwhile.
         */
        restricting: {
          entry: 'restrictAgent',
          after: { greetingTimeout: { target: '#session.fatal', actions: failWith({ reason: 'greetingTimeout' }) } },
          on: {
            AGENT_LINE: [
              { guard: 'agentIntermediate', actions: 'discardAgentLine' },
              { guard: 'agentOk', target: '#session.ready', actions: ['discardAgentLine', startIdleTimer] },
              { guard: 'agentErr', target: '#session.fatal', actions: ['discardAgentLine', failWith({ reason: 'restrictFailed' })] },
              { target: '#session.fatal', actions: ['discardAgentLine', failWith({ reason: 'agentProtocolViolation' })] },
            ],
          },
        },
      },
    },

    ready: {
      ...awaitingCommand,
      tags: ['clientInput', 'idle'],
      // The client left, or the server is shutting down, while a command was in flight: that answer was the last.
      always: { guard: 'noMoreCommands', target: 'closing' },
      on: { ...awaitingCommand.on, CLIENT_PARTIAL: 'bufferingCommand' },
    },

    bufferingCommand: awaitingCommand,

    sendingToAgent: {
      entry: 'watchAgentWrite',
      on: {
        ...relayingAnswer.on,
        AGENT_WRITTEN: 'waitingForAgent',
      },
    },

    waitingForAgent: {
      entry: startResponseTimer,
      exit: stopResponseTimer,
      on: {
        ...relayingAnswer.on,
        RESPONSE_TIMEOUT: { target: 'fatal', actions: failWith({ reason: 'responseTimeout' }) },
      },
    },

    sendingToClient: {
      on: {
        ...relayingAnswer.on,
        AGENT_LINE: [{ guard: 'agentIntermediate', actions: 'relayToClient' }, ...relayingAnswer.on.AGENT_LINE.slice(1)],
      },
    },

    /**
     * The agent's inquiry reader is open: the client's lines are its answer until one ends the inquiry at the
     * agent. After that line the agent reads nothing until the command ends, so the proxy takes nothing either.
     */
    bufferingInquire: {
      tags: ['clientInput'],
      initial: 'answering',
      entry: assign({ inquire: ({ event }) => (event.type === 'AGENT_LINE' ? event.keyword : '') }),
      exit: assign({ inquire: '' }),
      // A person may take a while to type a passphrase; a client that never answers must not hold the slot.
      after: { inquiryTimeout: { target: 'fatal', actions: failWith({ reason: 'inquiryTimeout' }) } },
      // The client ended while the command was in flight: the agent already has our EOF and its reader fails on it.
      always: { guard: 'clientEnded', target: 'waitingForAgent' },
      on: {
        // Half-close: the agent reads EOF inside its inquiry and answers (ERR End of file), as it would directly.
        CLIENT_EOF: {
          target: 'waitingForAgent',
          actions: [session.assign({ clientEnded: true }), { type: 'endAgentInput', params: { withPartialLine: true } }],
        },
        CLIENT_GONE: 'closing',
        AGENT_CLOSED: { target: 'fatal', actions: agentClosed },
        // The INQUIRE is part of the command in flight: the client may still answer it.
        STOP: { actions: session.assign({ stopRequested: true }) },
      },
      states: {
        /** An inquiry that takes data: D, `#` and empty lines go to the agent until END, CAN or any other line. */
        answering: {
          // Client D lines are the answer's data, each handled as the one before it (the runtime batches them).
          tags: ['inquiry'],
          on: {
            ...agentLinesDuringInquiry.on,
            CLIENT_LINE: [
              { guard: 'clientInquiryData', actions: 'forwardToAgent' },
              { guard: 'clientMalformedData', target: 'discarding', actions: ['discardClientLine', assign({ owedAnswer: 'malformedEscape' })] },
              { guard: 'clientEndsAnswer', target: '#session.sendingToAgent', actions: 'forwardToAgent' },
              // Any other line ends the inquiry unexecuted (ERR 274); one the policy forbids is not sent at all.
              { guard: 'clientRefused', target: '#session.sendingToAgent', actions: refuseInsideInquiry },
              { target: '#session.sendingToAgent', actions: 'forwardToAgent' },
            ],
            CLIENT_LINE_TOO_LONG: { target: 'discarding', actions: ['discardClientLine', assign({ owedAnswer: 'lineTooLong' })] },
          },
        },
        /** An inquiry that takes no data (PINENTRY_LAUNCHED): any line but `#` and empty ends it, a D line too. */
        acknowledging: {
          on: {
            ...agentLinesDuringInquiry.on,
            CLIENT_LINE: [
              { guard: 'clientNoReply', actions: 'forwardToAgent' },
              { guard: 'clientData', target: '#session.sendingToAgent', actions: 'forwardToAgent' },
              { guard: 'clientEndsAnswer', target: '#session.sendingToAgent', actions: 'forwardToAgent' },
              { guard: 'clientRefused', target: '#session.sendingToAgent', actions: refuseInsideInquiry },
              { target: '#session.sendingToAgent', actions: 'forwardToAgent' },
            ],
            // The agent would end the inquiry on it and read the rest of the line as a command: CAN instead.
            CLIENT_LINE_TOO_LONG: {
              target: '#session.sendingToAgent',
              actions: ['discardClientLine', 'cancelAgentInquiry', assign({ owedAnswer: 'lineTooLong' })],
            },
          },
        },
        /**
         * The proxy refused a line of a data answer (too long, or a `%` escape that wedges gpg-agent). The agent is
         * still reading; the rest of the answer is dropped, and where it ends the agent gets CAN and the client the
         * proxy's ERR for the command.
         */
        discarding: {
          tags: ['inquiry'],
          on: {
            CLIENT_LINE: [
              { guard: 'clientInquiryData', actions: 'discardClientLine' },
              { guard: 'clientMalformedData', actions: 'discardClientLine' },
              { target: '#session.sendingToAgent', actions: ['discardClientLine', 'cancelAgentInquiry'] },
            ],
            CLIENT_LINE_TOO_LONG: { actions: 'discardClientLine' },
            CLIENT_EOF: {
              target: '#session.waitingForAgent',
              actions: [session.assign({ clientEnded: true }), 'cancelAgentInquiry', { type: 'endAgentInput', params: { withPartialLine: false } }],
            },
            AGENT_LINE: [
              { guard: 'agentIntermediate', actions: 'relayToClient' },
              // The agent ended the command on its own: the client gets the proxy's ERR in place of its answer.
              { guard: 'agentFinal', target: '#session.ready', actions: ['discardAgentLine', answerOwed, ...commandDone('refused')] },
              { guard: 'agentClosing', target: '#session.closing', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'ok' } }] },
              { target: '#session.fatal', actions: ['discardAgentLine', failWith({ reason: 'agentProtocolViolation' })] },
            ],
          },
        },
      },
    },

    /** The proxy answers a client line itself (it never reached the agent) with an ERR, then is ready again. */
    error: {
      entry: [answerOwed, ...commandDone('refused')],
      always: 'ready',
    },

    closing: {
      // Closing while waiting for a command: the idle timer is still armed. The close grace bounds a client that
      // does not read from here on (sooner than the stall timer, unless configured otherwise).
      entry: [stopIdleTimer, stopStallTimer, 'closeGracefully'],
      after: { closeGrace: { target: 'closed', actions: 'destroySockets' } },
      on: {
        SOCKETS_CLOSED: 'closed',
        // Expected while both sides wind down.
        STOP: {},
        STOP_NOW: {},
        AGENT_CLOSED: {},
        CLIENT_GONE: {},
        CLIENT_EOF: {},
        AGENT_LINE: { actions: 'discardAgentLine' },
      },
    },

    closed: { type: 'final', entry: 'destroySockets' },

    fatal: {
      type: 'final',
      entry: [stopIdleTimer, { type: 'abortSession', params: ({ context }) => ({ failure: context.failure }) }],
    },
  },
});
