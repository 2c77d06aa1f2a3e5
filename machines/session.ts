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

/** A client mistake the proxy answers itself, with an ERR line, instead of passing it to the agent. */
/**
 * What the proxy answers itself, in place of the agent: an ERR for a line it refused (too long, a `%` escape that
 * wedges gpg-agent, a command the policy forbids), or OK to `GETINFO restricted` in restricted mode.
 */
export type ProxyAnswer = 'lineTooLong' | 'malformedEscape' | 'forbidden' | 'restrictedOk';

/** Why a session ended abnormally. `code` is a socket error code such as ECONNREFUSED, or EOF. */
export type SessionFailure =
  | { reason: 'connectFailed'; code: string }
  | { reason: 'connectTimeout'; attempts: number }
  | { reason: 'greetingTimeout' }
  /** The client sent no complete command within the idle timeout after the greeting. */
  | { reason: 'idleTimeout' }
  /** The agent did not start answering a request within the response timeout (off unless configured). */
  | { reason: 'responseTimeout' }
  | { reason: 'badGreeting' }
  | { reason: 'agentClosed'; code: string }
  | { reason: 'agentProtocolViolation' }
  | { reason: 'unsolicitedAgentOutput' }
  /** Set by the runtime, never by the machine: an effect threw (a bug), and the session was ended. */
  | { reason: 'internalError' };

export interface SessionContext {
  readonly sessionId: string;
  /** Connection attempts to the agent so far (retried while its listen queue is full). */
  connectAttempts: number;
  /** Verb of the last command sent to the agent. */
  command: CommandVerb;
  /** Keyword of the open INQUIRE, '' when none. */
  inquire: string;
  /** The client has finished sending (EOF) and all it sent has been taken: nothing more will come from it. */
  clientEnded: boolean;
  /** The server asked this session to close once the command in flight is done. */
  stopRequested: boolean;
  /** An ERR the client is owed in place of the agent's answer, after the proxy refused one of its lines. */
  owedAnswer: ProxyAnswer | null;
  failure: SessionFailure | null;
  /** The response timeout applies (it is off unless configured). */
  readonly responseTimeoutOn: boolean;
}

export type SessionEvent =
  | { type: 'AGENT_CONNECTED' }
  | { type: 'AGENT_CONNECT_FAILED'; code: string }
  | { type: 'AGENT_LINE'; kind: AgentLineKind; keyword: string; bytes: number }
  /** The line just forwarded was accepted by the upstream socket without backpressure. */
  | { type: 'AGENT_WRITTEN' }
  | { type: 'AGENT_CLOSED'; code: string }
  /** Bytes of a command line have arrived, its LF not yet. */
  | { type: 'CLIENT_PARTIAL'; bytes: number }
  | { type: 'CLIENT_LINE'; kind: ClientLineKind; verb: CommandVerb; bytes: number }
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
  /** Raised by the machine itself, `idleTimeout` after the greeting, unless a command came first. */
  | { type: 'IDLE_TIMEOUT' }
  /** Raised by the machine itself, `responseTimeout` after a request reached the agent (only when configured). */
  | { type: 'RESPONSE_TIMEOUT' };

export type SessionEventType = SessionEvent['type'];

export interface SessionInput {
  sessionId: string;
  responseTimeoutOn?: boolean;
}

const agentKind = (event: SessionEvent): AgentLineKind | undefined =>
  event.type === 'AGENT_LINE' ? event.kind : undefined;
const clientKind = (event: SessionEvent): ClientLineKind | undefined =>
  event.type === 'CLIENT_LINE' ? event.kind : undefined;

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
    /** End the open INQUIRE at the agent with CAN, in place of a client answer the proxy refused. */
    cancelAgentInquiry: () => {},
    /** Write the proxy's ERR line for a client line it refused. */
    /** Write the proxy's own answer (an ERR line, or OK) for a client line that did not go to the agent. */
    answerClient: (_, _params: { answer: ProxyAnswer | null }) => {},
    beginCommand: (_, _params: { verb: CommandVerb }) => {},
    endCommand: (_, _params: { outcome: CommandOutcome }) => {},
    /** Tell the client why the session failed (one ERR line), then tear both connections down. */
    abortSession: (_, _params: { failure: SessionFailure | null }) => {},
    /** Pass the client's EOF on to the agent (half-close), as a byte pipe would: it finishes the command, then closes. */
    endAgentInput: () => {},
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
    agentOk: ({ event }) => agentKind(event) === 'ok',
    agentErr: ({ event }) => agentKind(event) === 'err',
    agentFinal: ({ event }) => agentKind(event) === 'ok' || agentKind(event) === 'err',
    agentClosing: ({ event }) => agentKind(event) === 'okClosing',
    agentComment: ({ event }) => agentKind(event) === 'comment',
    owesAnswer: ({ context }) => context.owedAnswer !== null,
    /** The agent's listen queue is full (EAGAIN on a Unix socket): it is there, just busy. */
    connectRetryable: ({ event }) => event.type === 'AGENT_CONNECT_FAILED' && event.code === 'EAGAIN',
    clientEnded: ({ context }) => context.clientEnded,
    /** Nothing more will be taken from the client: it ended, or the server is shutting down. */
    noMoreCommands: ({ context }) => context.clientEnded || context.stopRequested,
    /**
     * Outside an INQUIRE every line but `#` and empty is a command for the agent (it answers stray D/END/CAN too),
     * unless the session's policy keeps it from the agent.
     */
    clientCommand: ({ event }) => {
      const kind = clientKind(event);
      return kind !== undefined && kind !== 'comment' && kind !== 'empty' && kind !== 'forbidden' && kind !== 'restrictedQuery';
    },
    /** A command the session's policy forbids (restricted mode, --deny, or not in --allow). */
    clientForbidden: ({ event }) => clientKind(event) === 'forbidden',
    /** `GETINFO restricted` in restricted mode: the proxy answers OK itself, as the agent's extra socket does. */
    clientRestrictedQuery: ({ event }) => clientKind(event) === 'restrictedQuery',
    clientNoReply: ({ event }) => clientKind(event) === 'comment' || clientKind(event) === 'empty',
    /** Lines that belong inside an INQUIRE answer. */
    clientInquiryData: ({ event }) => {
      const kind = clientKind(event);
      return kind === 'data' || kind === 'comment' || kind === 'empty';
    },
    clientMalformedData: ({ event }) => clientKind(event) === 'malformedData',
    /** END, CAN…, or any other line: the agent's inquire reader ends the INQUIRE on each of them. */
    clientEndsInquiry: ({ event }) => {
      const kind = clientKind(event);
      return kind === 'end' || kind === 'cancel' || kind === 'command' || kind === 'forbidden' || kind === 'restrictedQuery';
    },
  },
  delays: {
    /** Bounds reaching the agent, retries included. */
    connectTimeout: 5_000,
    /** Wait before the next connection attempt: 10 ms, doubling, at most 250 ms. */
    retryBackoff: ({ context }) => Math.min(10 * 2 ** Math.max(context.connectAttempts - 1, 0), 250),
    greetingTimeout: 5_000,
    /** From the greeting to the client's first complete command. */
    idleTimeout: 60_000,
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
 * transitions: an `after` re-arms a timer on every entry to its state, i.e. twice per command on the hot path,
 * where these need one timer per session (idle) or none at all when off (response, the default).
 */
const IDLE_TIMER = 'idleTimer';
const RESPONSE_TIMER = 'responseTimer';
const startIdleTimer = session.raise({ type: 'IDLE_TIMEOUT' } as const, { id: IDLE_TIMER, delay: 'idleTimeout' });
const stopIdleTimer = session.cancel(IDLE_TIMER);
const startResponseTimer = session.enqueueActions(({ context, enqueue }) => {
  if (context.responseTimeoutOn) enqueue.raise({ type: 'RESPONSE_TIMEOUT' }, { id: RESPONSE_TIMER, delay: 'responseTimeout' });
});
const stopResponseTimer = session.enqueueActions(({ context, enqueue }) => {
  if (context.responseTimeoutOn) enqueue.cancel(RESPONSE_TIMER);
});

/** A command the proxy answers itself: it is logged as a command, and never reaches the agent. */
const answeredByProxy = (answer: ProxyAnswer) =>
  session.enqueueActions(({ event, enqueue }) => {
    const verb = event.type === 'CLIENT_LINE' ? event.verb : '';
    enqueue.assign({ command: verb, owedAnswer: answer });
    enqueue.cancel(IDLE_TIMER);
    enqueue({ type: 'beginCommand', params: { verb } });
    enqueue('discardClientLine');
  });

/** ready and bufferingCommand: a client line starts a command, or is a `#`/empty line the agent never answers. */
const awaitingCommand = session.createStateConfig({
  tags: ['clientInput'],
  on: {
    // A client that connects and never sends a command would hold an agent connection for nothing.
    IDLE_TIMEOUT: { target: 'closing', actions: failWith({ reason: 'idleTimeout' }) },
    CLIENT_LINE: [
      {
        guard: 'clientCommand',
        target: 'sendingToAgent',
        actions: [
          stopIdleTimer,
          assign({ command: ({ event }) => event.verb }),
          { type: 'beginCommand', params: ({ event }) => ({ verb: event.verb }) },
          'forwardToAgent',
        ],
      },
      { guard: 'clientNoReply', target: 'ready', actions: 'forwardToAgent' },
      { guard: 'clientForbidden', target: 'error', actions: answeredByProxy('forbidden') },
      { guard: 'clientRestrictedQuery', target: 'error', actions: answeredByProxy('restrictedOk') },
    ],
    CLIENT_LINE_TOO_LONG: { target: 'error', actions: ['discardClientLine', assign({ owedAnswer: 'lineTooLong' })] },
    CLIENT_EOF: 'closing',
    CLIENT_GONE: 'closing',
    AGENT_LINE: { target: 'fatal', actions: ['discardAgentLine', failWith({ reason: 'unsolicitedAgentOutput' })] },
    AGENT_CLOSED: { target: 'fatal', actions: agentClosed },
  },
});

/**
 * sendingToAgent, waitingForAgent, sendingToClient: a command is in flight and its answer is relayed line by line
 * as it arrives. OK/ERR end it; INQUIRE hands the turn to the client.
 */
const relayingAnswer = session.createStateConfig({
  on: {
    AGENT_LINE: [
      { guard: 'agentIntermediate', target: 'sendingToClient', actions: 'relayToClient' },
      // After the proxy has cancelled an INQUIRE for the client, a further INQUIRE is refused for it too.
      { guard: and(['agentInquire', 'owesAnswer']), actions: ['discardAgentLine', 'cancelAgentInquiry'] },
      { guard: 'agentInquire', target: 'bufferingInquire', actions: 'relayToClient' },
      {
        guard: and(['agentFinal', 'owesAnswer']),
        target: 'ready',
        actions: ['discardAgentLine', answerOwed, { type: 'endCommand', params: { outcome: 'refused' } }],
      },
      { guard: 'agentOk', target: 'ready', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'ok' } }] },
      { guard: 'agentErr', target: 'ready', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'err' } }] },
      { guard: 'agentClosing', target: 'closing', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'ok' } }] },
      { target: 'fatal', actions: ['discardAgentLine', failWith({ reason: 'agentProtocolViolation' })] },
    ],
    AGENT_CLOSED: { target: 'fatal', actions: agentClosed },
    CLIENT_GONE: 'closing',
    // Delivered only once every line the client sent has gone to the agent; the answer is still relayed.
    CLIENT_EOF: { actions: [session.assign({ clientEnded: true }), 'endAgentInput'] },
    STOP: { actions: session.assign({ stopRequested: true }) },
  },
});

/** Agent lines while the client is answering an INQUIRE, before the proxy has refused any of the answer. */
const agentLinesDuringInquire = session.createStateConfig({
  on: {
    AGENT_LINE: [
      { guard: 'agentIntermediate', actions: 'relayToClient' },
      // The agent may end the command before the answer is complete (e.g. more data than INQUIRE_MAXLEN):
      // the rest of the client's answer must then not reach the agent as commands.
      { guard: 'agentOk', target: 'draining', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'ok' } }] },
      { guard: 'agentErr', target: 'draining', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'err' } }] },
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
    failure: null,
    responseTimeoutOn: input.responseTimeoutOn ?? false,
  }),
  initial: 'connecting',
  on: {
    // Server shutdown past its drain time: close now, whatever is in flight.
    STOP_NOW: '.closing',
    // Server shutdown: a command in flight may finish (states that hold one override this).
    STOP: '.closing',
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
              { guard: 'agentOk', target: '#session.ready', actions: ['relayToClient', startIdleTimer] },
              { target: '#session.fatal', actions: ['discardAgentLine', failWith({ reason: 'badGreeting' })] },
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

    bufferingInquire: {
      // inquiry: client D lines are the answer's data, each handled as the one before it (the runtime batches them).
      tags: ['clientInput', 'inquiry'],
      initial: 'answering',
      entry: assign({ inquire: ({ event }) => (event.type === 'AGENT_LINE' ? event.keyword : '') }),
      exit: assign({ inquire: '' }),
      // An INQUIRE for a client that has already ended can never be answered.
      always: { guard: 'clientEnded', target: 'closing' },
      on: {
        CLIENT_EOF: 'closing',
        CLIENT_GONE: 'closing',
        AGENT_CLOSED: { target: 'fatal', actions: agentClosed },
        // The INQUIRE is part of the command in flight: the client may still answer it.
        STOP: { actions: session.assign({ stopRequested: true }) },
      },
      states: {
        /** The client's D lines go to the agent until END or CAN. */
        answering: {
          on: {
            ...agentLinesDuringInquire.on,
            CLIENT_LINE: [
              { guard: 'clientInquiryData', actions: 'forwardToAgent' },
              { guard: 'clientMalformedData', target: 'discarding', actions: ['discardClientLine', assign({ owedAnswer: 'malformedEscape' })] },
              { guard: 'clientEndsInquiry', target: '#session.sendingToAgent', actions: 'forwardToAgent' },
            ],
            CLIENT_LINE_TOO_LONG: { target: 'discarding', actions: ['discardClientLine', assign({ owedAnswer: 'lineTooLong' })] },
          },
        },
        /**
         * The proxy refused a line of the answer (too long, or a `%` escape that wedges gpg-agent). The rest of the
         * answer is dropped; at its end the agent gets CAN and the client gets the proxy's ERR for the command.
         */
        discarding: {
          on: {
            CLIENT_LINE: [
              { guard: 'clientEndsInquiry', target: '#session.sendingToAgent', actions: ['discardClientLine', 'cancelAgentInquiry'] },
              { actions: 'discardClientLine' },
            ],
            CLIENT_LINE_TOO_LONG: { actions: 'discardClientLine' },
            AGENT_LINE: [
              { guard: 'agentIntermediate', actions: 'relayToClient' },
              // The agent ended the command on its own; the client still gets the proxy's ERR once its answer ends.
              { guard: 'agentFinal', target: 'draining', actions: ['discardAgentLine', { type: 'endCommand', params: { outcome: 'refused' } }] },
              { guard: 'agentClosing', target: '#session.closing', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'ok' } }] },
              { target: '#session.fatal', actions: ['discardAgentLine', failWith({ reason: 'agentProtocolViolation' })] },
            ],
          },
        },
        /** The agent has finished the command while the client is still sending its answer, which is dropped. */
        draining: {
          on: {
            CLIENT_LINE: [
              { guard: and(['clientEndsInquiry', 'owesAnswer']), target: '#session.ready', actions: ['discardClientLine', answerOwed] },
              { guard: 'clientEndsInquiry', target: '#session.ready', actions: 'discardClientLine' },
              { actions: 'discardClientLine' },
            ],
            CLIENT_LINE_TOO_LONG: { actions: 'discardClientLine' },
            AGENT_LINE: { target: '#session.fatal', actions: ['discardAgentLine', failWith({ reason: 'unsolicitedAgentOutput' })] },
          },
        },
      },
    },

    /**
     * The proxy answers a client line itself (it never reached the agent), then is ready again: an ERR for a
     * refused line, or OK to `GETINFO restricted` in restricted mode.
     */
    error: {
      entry: [
        { type: 'endCommand', params: ({ context }) => ({ outcome: context.owedAnswer === 'restrictedOk' ? 'ok' : 'refused' }) },
        answerOwed,
      ],
      always: 'ready',
    },

    closing: {
      // Closing before any command: the idle timer is still armed.
      entry: [stopIdleTimer, 'closeGracefully'],
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
      entry: { type: 'abortSession', params: ({ context }) => ({ failure: context.failure }) },
    },
  },
});
