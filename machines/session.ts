/**
 * One client connection relayed to gpg-agent.
 *
 * Pure definition: effects are named actions the runtime (src/session/effects.ts) provides, timeouts are named
 * delays. Each line is one event named after what it is on the wire (`AGENT.OK`, `CLIENT.DATA`, …); the event
 * carries its kind, a fixed-vocabulary verb or keyword, a byte count that may be published, and an opaque handle
 * on the bytes (src/protocol/line.ts) that the action relaying the line writes.
 *
 * Assuan is strictly one command at a time: a command line goes to the agent, the agent answers with any number
 * of S/#/D lines and INQUIREs and ends with OK or ERR. While an INQUIRE is open the client's D/#/empty lines go
 * to the agent until END or CAN. `#` and empty lines outside a command get no reply, so they never make us wait.
 *
 * Shared behaviour lives in parents: the root handles what every state does (stop, a client gone, the agent
 * closed, a client that stops reading), `awaitingCommand` what ready and bufferingCommand share, `command` how
 * an answer is relayed in all the states of a command in flight.
 */
import { assign, setup } from 'xstate';
import type { ConsentOperation } from '../src/consent/consentRequest.js';
import type { CommandVerb } from '../src/protocol/classify.js';
import { inquiryTakesData } from '../src/protocol/inquiries.js';
import type { LineHandle } from '../src/protocol/line.js';
import type { HandshakeDefect } from '../src/upstream/handshake.js';
import type { SocketFileDefect } from '../src/upstream/socketFile.js';

/**
 * What the proxy answers itself, in place of the agent: an ERR for a line it refused (too long, a `%` escape that
 * wedges gpg-agent, a line the session's policy forbids), or a key use the person did not approve (refused at the
 * prompt: cancelled; not answered in time, or no prompt could be shown: notConfirmed).
 */
export type ProxyAnswer = 'lineTooLong' | 'malformedEscape' | 'forbidden' | 'cancelled' | 'notConfirmed' | 'acknowledged';

/** Why a session ended abnormally. `code` is a socket error code such as ECONNREFUSED, or EOF. */
export type SessionFailure =
  | { reason: 'connectFailed'; code: string }
  /** The upstream path is a socket file (redirect, Windows or Cygwin form) that cannot be read as one. */
  | { reason: 'badUpstreamFile'; defect: SocketFileDefect }
  /** The Cygwin-form handshake failed (the server did not echo our nonce). */
  | { reason: 'handshakeFailed'; defect: HandshakeDefect }
  /** The daemon was not running and could not be started (`gpgconf --launch`). */
  | { reason: 'launchFailed' }
  | { reason: 'connectTimeout'; attempts: number }
  | { reason: 'greetingTimeout' }
  /** The agent did not answer the proxy's `OPTION pretend-request-origin=remote` in time. */
  | { reason: 'restrictTimeout' }
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
  /** The agent closed the connection before it greeted. */
  | { reason: 'closedBeforeGreeting'; code: string }
  | { reason: 'agentClosed'; code: string }
  | { reason: 'agentProtocolViolation' }
  | { reason: 'unsolicitedAgentOutput' }
  /** Set by the runtime, never by the machine: an effect threw (a bug), and the session was ended. */
  | { reason: 'internalError' };

/**
 * The rule of the session's policy that refused a line (see src/policy.ts): a verb rule, the key allow-list, an
 * argument check, an OPTION setting the pinentry's environment (acknowledged, not sent: `environment`), or the
 * person asked for consent (`confirm`).
 */
export type PolicyRule = 'deny' | 'allow' | 'restricted' | 'keys' | 'arguments' | 'environment' | 'confirm';

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
  /** The daemon may be started (gpgconf --launch) when nothing answers at its socket: found by name, not by path. */
  readonly mayLaunchAgent: boolean;
  /** This session has started the daemon once already: a second failure is reported, not retried. */
  launchTried: boolean;
  /** How the command in flight was approved, when it needed consent (`--confirm`): at a prompt, or by a window. */
  consent: 'prompt' | 'window' | null;
  /** The command in flight waits for a crypto slot once approved (`--max-crypto`). */
  needsCryptoSlot: boolean;
}

/** gpg-error's GPG_ERR_FORBIDDEN, the code part (low 16 bits) of gpg-agent's `ERR 67109115 Forbidden`. */
const GPG_ERR_FORBIDDEN = 251;

/**
 * A line from the agent. `bytes` is its length where it may be published (absent in the answer of a command whose
 * answer is secret, GET_PASSPHRASE); `line` holds the bytes for the action that relays them.
 */
export interface AgentLine<T extends string> {
  type: T;
  line: LineHandle;
  bytes?: number;
}
export type AgentLineEvent =
  | AgentLine<'AGENT.OK'>
  /** `OK closing connection`: the agent closes the connection next (BYE, KILLAGENT). */
  | AgentLine<'AGENT.OK_CLOSING'>
  /** `code`: the gpg-error code the line carries (0 if none can be read). */
  | (AgentLine<'AGENT.ERR'> & { code?: number })
  /** `keyword` from a fixed vocabulary (OTHER otherwise). */
  | (AgentLine<'AGENT.INQUIRE'> & { keyword: string })
  | (AgentLine<'AGENT.STATUS'> & { keyword: string })
  | AgentLine<'AGENT.COMMENT'>
  /** A D line, or a run of D lines that arrived back to back (every state handles each alike). */
  | AgentLine<'AGENT.DATA'>
  | AgentLine<'AGENT.END'>
  /** Not an Assuan response line (or longer than libassuan allows): a libassuan client would abort on it. */
  | AgentLine<'AGENT.INVALID'>;

/**
 * A complete line from the client. Whether it is a command depends on where the agent's reader is, so each
 * carries the verb it would be as one, and `refusedBy`, the policy rule that forbids it as a command (absent:
 * allowed). `bytes` is absent for the answer to an INQUIRE whose answer is secret: not even its length is shown.
 */
export interface ClientLine<T extends string> {
  type: T;
  verb: CommandVerb;
  line: LineHandle;
  bytes?: number;
  refusedBy?: PolicyRule;
  /** Read as a command, a key use the person must approve first (`--confirm`); absent: none needed. */
  consent?: ConsentOperation;
  /** Read as a command, a key operation that waits for one of the upstream's crypto slots (`--max-crypto`). */
  cryptoSlot?: true;
}
export type ClientLineEvent =
  | ClientLine<'CLIENT.COMMAND'>
  /** A `#` comment or an empty line: every reader of the agent skips it, and none answers it. */
  | ClientLine<'CLIENT.COMMENT'>
  /** A D line (or a run of them, inside an INQUIRE's answer). */
  | ClientLine<'CLIENT.DATA'>
  /** A D line with a `%` not followed by two hex digits: wedges gpg-agent 2.2.40 inside an INQUIRE. */
  | ClientLine<'CLIENT.MALFORMED_DATA'>
  | ClientLine<'CLIENT.END'>
  /** Any line starting with CAN (libassuan's inquiry reader takes each as a cancel). */
  | ClientLine<'CLIENT.CAN'>;

export type SessionEvent =
  | AgentLineEvent
  | ClientLineEvent
  /** A client line longer than libassuan accepts; its bytes were dropped as they arrived. */
  | { type: 'CLIENT.TOO_LONG'; bytes?: number }
  /**
   * Connected. `handshake`: the upstream is a socket file's TCP port (Windows or Cygwin form), whose server reads
   * the file's nonce before anything else; none for a Unix socket.
   */
  | { type: 'AGENT_CONNECTED'; handshake?: 'windows' | 'cygwin' }
  /** The nonce has been sent (and, in the Cygwin form, echoed and the credentials exchanged): Assuan follows. */
  | { type: 'AGENT_HANDSHAKE_DONE' }
  | { type: 'AGENT_HANDSHAKE_FAILED'; defect: HandshakeDefect }
  /** The upstream path is a file that is not a valid socket file; `defect` says what is wrong (never its bytes). */
  | { type: 'AGENT_UPSTREAM_INVALID'; defect: SocketFileDefect }
  /** The daemon was started (or was found running) after nothing answered at its socket. */
  | { type: 'AGENT_LAUNCHED' }
  | { type: 'AGENT_LAUNCH_FAILED' }
  /** A connection dialed ahead of this client was taken; the greeting the agent sent on it follows as AGENT lines. */
  | { type: 'AGENT_SPARE_TAKEN' }
  | { type: 'AGENT_CONNECT_FAILED'; code: string }
  /** The agent's socket took a write only in part: the agent is not reading what we send. */
  | { type: 'AGENT_BLOCKED' }
  /** The agent read what was pending. */
  | { type: 'AGENT_DRAINED' }
  | { type: 'AGENT_CLOSED'; code: string }
  /** Bytes of a command line have arrived, its LF not yet. */
  | { type: 'CLIENT_PARTIAL'; bytes: number }
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
  | { type: 'CLIENT_STALLED' }
  /** The person approved the held command (`by` a prompt, or a window still open); `line` is the command, held since. */
  | { type: 'CONSENT_GRANTED'; line: LineHandle; by: 'prompt' | 'window' }
  /** The person refused it (`cancelled`), or no answer came or no prompt could be shown (`notConfirmed`). */
  | { type: 'CONSENT_REFUSED'; answer: 'cancelled' | 'notConfirmed' }
  /** One of the upstream's crypto slots is this session's until its command ends; `line` is the command, held since. */
  | { type: 'CRYPTO_SLOT_GRANTED'; line: LineHandle };

export type SessionEventType = SessionEvent['type'];

export interface SessionInput {
  sessionId: string;
  responseTimeoutOn?: boolean;
  restrictAgent?: boolean;
  mayLaunchAgent?: boolean;
}

export type CommandOutcome = 'ok' | 'err' | 'refused';

const session = setup({
  types: {
    context: {} as SessionContext,
    events: {} as SessionEvent,
    input: {} as SessionInput,
    tags: {} as 'clientInput' | 'idle' | 'inquiry',
  },
  actions: {
    /** Open the upstream connection to gpg-agent, or take the spare one dialed ahead of this client. */
    dialAgent: () => {},
    /** Send the socket file's nonce (and, in the Cygwin form, exchange the echo and credentials). */
    handshakeAgent: () => {},
    /** Start the daemon (`gpgconf --launch`, shared by every session waiting for it). */
    launchAgent: () => {},
    /** Send `OPTION pretend-request-origin=remote` to the agent: from now on it runs this connection restricted. */
    restrictAgent: () => {},
    /** Write the event's agent line to the client, unchanged. */
    relayToClient: () => {},
    /** Write the event's client line to the agent, unchanged. */
    forwardToAgent: () => {},
    /** End the open INQUIRE at the agent with CAN, in place of a client line the proxy refused. */
    cancelAgentInquiry: () => {},
    /** Write the proxy's own ERR line for a client line that did not go to the agent. */
    answerClient: (_, _params: { answer: ProxyAnswer | null }) => {},
    /** Ask the person to approve the event's command (held by the runtime, not sent) before it reaches the agent. */
    askConsent: (_, _params: { operation: ConsentOperation }) => {},
    /** The answer is no longer wanted (decided, timed out, the client left): take down a prompt still showing. */
    withdrawConsent: () => {},
    /** Queue for one of the upstream's crypto slots, holding the event's command (`--max-crypto`). */
    requestCryptoSlot: () => {},
    /** Leave the queue for a slot not granted yet (a slot granted is given back when its command ends). */
    leaveCryptoQueue: () => {},
    /** Record (and log) that the policy refused a client line, read as a command or inside an INQUIRE. */
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
    /**
     * The agent refused to restrict the connection with Forbidden: it is restricted already (gpg-agent forbids
     * every OPTION but agent-awareness on a restricted connection: its extra socket), which is what was asked.
     */
    agentAlreadyRestricted: ({ event }) => event.type === 'AGENT.ERR' && ((event.code ?? 0) & 0xffff) === GPG_ERR_FORBIDDEN,
    /** An INQUIRE whose reader takes no data (PINENTRY_LAUNCHED): a D line ends it, as any other line does. */
    inquiryTakesNoData: ({ event }) => event.type === 'AGENT.INQUIRE' && !inquiryTakesData(event.keyword),
    /** The proxy refused a line of this command: the client gets its ERR in place of the agent's answer. */
    owesAnswer: ({ context }) => context.owedAnswer !== null,
    /** The agent's listen queue is full (EAGAIN on a Unix socket): it is there, just busy. */
    agentBusy: ({ event }) => event.type === 'AGENT_CONNECT_FAILED' && event.code === 'EAGAIN',
    /**
     * Nothing listens at the daemon's socket (no file, or a stale one), and it was found by name: start it once, as
     * gpg would (clients told `no-autostart` rely on the proxy for that).
     */
    agentMayBeLaunched: ({ context, event }) =>
      context.mayLaunchAgent && !context.launchTried && event.type === 'AGENT_CONNECT_FAILED' && (event.code === 'ENOENT' || event.code === 'ECONNREFUSED'),
    handshakeNeeded: ({ event }) => event.type === 'AGENT_CONNECTED' && event.handshake !== undefined,
    restrictAgent: ({ context }) => context.restrictAgent,
    clientEnded: ({ context }) => context.clientEnded,
    /** Nothing more will be taken from the client: it ended, or the server is shutting down. */
    noMoreCommands: ({ context }) => context.clientEnded || context.stopRequested,
    /** The policy forbids this line as a command. */
    refusedByPolicy: ({ event }) => 'refusedBy' in event && event.refusedBy !== undefined,
    /** Read as a command, this line is a key use the person must approve first. */
    needsConsent: ({ event }) => 'consent' in event && event.consent !== undefined,
    /** Read as a command, this line is a key operation that waits for a crypto slot. */
    needsCryptoSlot: ({ event }) => 'cryptoSlot' in event && event.cryptoSlot === true,
    /** The person said no (Cancel, No), as opposed to no answer, or no prompt. */
    refusedAtPrompt: ({ event }) => event.type === 'CONSENT_REFUSED' && event.answer === 'cancelled',
    /** The approved command still waits for a crypto slot. */
    approvedNeedsCryptoSlot: ({ context }) => context.needsCryptoSlot,
  },
  delays: {
    /** Bounds reaching the agent, retries included. */
    connectTimeout: 5_000,
    /** For `gpgconf --launch` (bounded at 15 s itself) to start the daemon. */
    launchTimeout: 20_000,
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
    /** For the person to answer a consent prompt; past it the use is not confirmed. */
    consentTimeout: 60_000,
  },
});

const failWith = (failure: SessionFailure) => session.assign({ failure: () => failure });
const agentClosed = session.assign({
  failure: ({ event }): SessionFailure => ({ reason: 'agentClosed', code: event.type === 'AGENT_CLOSED' ? event.code : 'EOF' }),
});
const protocolViolation = { target: '#session.fatal', actions: failWith({ reason: 'agentProtocolViolation' }) } as const;
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
const commandDone = (outcome: CommandOutcome) =>
  [{ type: 'endCommand', params: { outcome } } as const, session.assign({ consent: null, needsCryptoSlot: false }), startIdleTimer] as const;
const clientEndsInput = (withPartialLine: boolean) =>
  [session.assign({ clientEnded: true }), { type: 'endAgentInput', params: { withPartialLine } }] as const;

/**
 * The policy refused the event's line: it never reaches the agent; the refusal is logged with where the agent's
 * reader was, and the client is owed ERR Forbidden naming the verb. Read as a command, the line is also counted
 * as a command of its own, answered by the proxy (through the error state); inside an INQUIRE the agent gets CAN.
 */
const refuse = (during: 'command' | 'inquire') =>
  session.enqueueActions(({ event, enqueue }) => {
    if (!('verb' in event)) return;
    if (during === 'command') {
      enqueue.assign({ command: event.verb });
      enqueue.cancel(IDLE_TIMER);
      enqueue({ type: 'beginCommand', params: { verb: event.verb } });
    }
    // Inside an INQUIRE the agent's reader still waits: CAN ends it in place of the refused line.
    if (during === 'inquire') enqueue('cancelAgentInquiry');
    enqueue({ type: 'noteRefusal', params: { verb: event.verb, rule: event.refusedBy, during } });
    // An OPTION for the pinentry's environment, read as a command, is answered OK (src/argumentChecks.ts).
    const acknowledged = during === 'command' && event.refusedBy === 'environment';
    enqueue.assign({ owedAnswer: acknowledged ? 'acknowledged' : 'forbidden', refusedVerb: event.verb });
  });

/** A client line read as a command: the idle timer stops, and the command begins (whether sent now or held). */
const beginCommand = [
  stopIdleTimer,
  session.assign({ command: ({ event }) => ('verb' in event ? event.verb : '') }),
  { type: 'beginCommand', params: ({ event }: { event: SessionEvent }): { verb: CommandVerb } => ({ verb: 'verb' in event ? event.verb : '' }) },
] as const;

/**
 * What a held command does while it waits (for the person, or a crypto slot): the agent reads commands and has not
 * been sent one, so anything it says is unsolicited; the client's EOF is remembered and passed on once the command
 * is sent; a server shutdown lets the command be decided and run first.
 */
const whileHeld = {
  CLIENT_EOF: { actions: session.assign({ clientEnded: true }) },
  STOP: { actions: session.assign({ stopRequested: true }) },
  'AGENT.*': { target: '#session.fatal', actions: failWith({ reason: 'unsolicitedAgentOutput' }) },
} as const;
/** A held command goes to the agent at last; a client that ended meanwhile has its EOF passed on behind it. */
const sendHeldCommand = [
  'forwardToAgent',
  session.enqueueActions(({ context, enqueue }) => {
    if (context.clientEnded) enqueue({ type: 'endAgentInput', params: { withPartialLine: true } });
  }),
] as const;

/**
 * The person did not approve a held command: it never reaches the agent, and the client gets the agent's own code
 * for it at once (the command ends here, as in the error state; the agent still waits for a command).
 */
const consentRefused = (answer: 'cancelled' | 'notConfirmed') => [
  session.enqueueActions(({ context, enqueue }) => {
    enqueue({ type: 'noteRefusal', params: { verb: context.command as CommandVerb, rule: 'confirm', during: 'command' } });
    enqueue.assign({ owedAnswer: answer, refusedVerb: context.command });
  }),
  answerOwed,
  ...commandDone('refused'),
];

/** A line that ends an INQUIRE at the agent: the reader returns and the command goes on. */
const endsInquiry = { target: '#session.command.waitingForAgent', actions: 'forwardToAgent' } as const;
/** Inside an INQUIRE a command line ends it unexecuted (ERR 274); one the policy forbids is not sent at all. */
const commandInsideInquiry = [
  { guard: 'refusedByPolicy', target: '#session.command.waitingForAgent', actions: refuse('inquire') },
  endsInquiry,
] as const;

/** S, #, D and END lines from the agent: part of an answer, relayed as they come. */
const INTERMEDIATE_AGENT_LINES = ['AGENT.STATUS', 'AGENT.COMMENT', 'AGENT.DATA', 'AGENT.END'] as const;
const forIntermediateAgentLines = <T>(transition: T) =>
  Object.fromEntries(INTERMEDIATE_AGENT_LINES.map((type) => [type, transition])) as Record<(typeof INTERMEDIATE_AGENT_LINES)[number], T>;

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
    mayLaunchAgent: input.mayLaunchAgent ?? false,
    launchTried: false,
    consent: null,
    needsCryptoSlot: false,
  }),
  initial: 'connecting',
  on: {
    // Server shutdown past its drain time: close now, whatever is in flight.
    STOP_NOW: '.closing',
    // Server shutdown: a command in flight may finish (the command state overrides this).
    STOP: '.closing',
    CLIENT_GONE: '.closing',
    AGENT_CLOSED: { target: '.fatal', actions: agentClosed },
    // In every state: a client that reads nothing of what it is sent must not hold the session for ever.
    CLIENT_BLOCKED: { actions: startStallTimer },
    CLIENT_DRAINED: { actions: stopStallTimer },
    CLIENT_STALLED: { target: '.fatal', actions: failWith({ reason: 'clientStalled' }) },
    // Flow control towards the agent is the runtime's (it stops taking client lines); only a request matters here.
    AGENT_BLOCKED: {},
    AGENT_DRAINED: {},
    '*': { actions: { type: 'rejectEvent', params: ({ event }) => ({ type: event.type }) } },
  },
  states: {
    connecting: {
      initial: 'reaching',
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
                AGENT_CONNECTED: [{ guard: 'handshakeNeeded', target: 'handshaking' }, { target: '#session.connecting.awaitingGreeting' }],
                AGENT_SPARE_TAKEN: '#session.connecting.awaitingGreeting',
                AGENT_CONNECT_FAILED: [
                  { guard: 'agentBusy', target: 'backingOff' },
                  { guard: 'agentMayBeLaunched', target: '#session.connecting.launching' },
                  { target: '#session.fatal', actions: assign({ failure: ({ event }) => ({ reason: 'connectFailed', code: event.code }) }) },
                ],
                AGENT_UPSTREAM_INVALID: {
                  target: '#session.fatal',
                  actions: assign({ failure: ({ event }) => ({ reason: 'badUpstreamFile', defect: event.defect }) }),
                },
              },
            },
            backingOff: {
              after: { retryBackoff: 'dialing' },
            },
            /** A socket file's server (Gpg4win, Cygwin) reads its nonce first; a wrong one is dropped unanswered. */
            handshaking: {
              entry: 'handshakeAgent',
              on: {
                AGENT_HANDSHAKE_DONE: '#session.connecting.awaitingGreeting',
                AGENT_HANDSHAKE_FAILED: {
                  target: '#session.fatal',
                  actions: assign({ failure: ({ event }) => ({ reason: 'handshakeFailed', defect: event.defect }) }),
                },
              },
            },
          },
        },
        /**
         * Nothing answered at the daemon's socket: it is started (once per session), then reached anew, with a connect
         * timeout of its own. The launch has its own bound: starting an agent takes longer than a connect.
         */
        launching: {
          entry: [session.assign({ launchTried: true }), 'launchAgent'],
          after: { launchTimeout: { target: '#session.fatal', actions: failWith({ reason: 'launchFailed' }) } },
          on: {
            AGENT_LAUNCHED: 'reaching',
            AGENT_LAUNCH_FAILED: { target: '#session.fatal', actions: failWith({ reason: 'launchFailed' }) },
          },
        },
        awaitingGreeting: {
          after: { greetingTimeout: { target: '#session.fatal', actions: failWith({ reason: 'greetingTimeout' }) } },
          on: {
            // Not the agent's end of a session: it never greeted (a server behind a socket file drops a wrong nonce so).
            AGENT_CLOSED: {
              target: '#session.fatal',
              actions: assign({ failure: ({ event }) => ({ reason: 'closedBeforeGreeting', code: event.code }) }),
            },
            // A server may send `#` lines before its OK greeting; libassuan clients skip them.
            'AGENT.COMMENT': { actions: 'relayToClient' },
            'AGENT.OK': [
              { guard: 'restrictAgent', target: 'restricting', actions: 'relayToClient' },
              { target: '#session.awaitingCommand', actions: ['relayToClient', startIdleTimer] },
            ],
            'AGENT.*': { target: '#session.fatal', actions: failWith({ reason: 'badGreeting' }) },
          },
        },
        /**
         * Restricted mode: the proxy's own `OPTION pretend-request-origin=remote` goes first, so the agent itself
         * runs this connection as its extra socket would (its rules, a passphrase cache of its own, the remote-site
         * note in the pinentry). Its answer is the proxy's, not the client's; client lines wait meanwhile.
         */
        restricting: {
          entry: 'restrictAgent',
          after: { greetingTimeout: { target: '#session.fatal', actions: failWith({ reason: 'restrictTimeout' }) } },
          on: {
            ...forIntermediateAgentLines({}),
            'AGENT.OK': { target: '#session.awaitingCommand', actions: startIdleTimer },
            'AGENT.ERR': [
              { guard: 'agentAlreadyRestricted', target: '#session.awaitingCommand', actions: startIdleTimer },
              { target: '#session.fatal', actions: failWith({ reason: 'restrictFailed' }) },
            ],
            'AGENT.*': protocolViolation,
          },
        },
      },
    },

    /** The agent's command loop reads the next line; the client's lines are taken one at a time. */
    awaitingCommand: {
      tags: ['clientInput'],
      initial: 'ready',
      on: {
        // A client that neither sends a command nor leaves would hold a session slot and an agent connection.
        IDLE_TIMEOUT: { target: '#session.fatal', actions: failWith({ reason: 'idleTimeout' }) },
        'CLIENT.COMMENT': { target: '.ready', actions: 'forwardToAgent' },
        'CLIENT.TOO_LONG': { target: '#session.error', actions: [stopIdleTimer, assign({ owedAnswer: 'lineTooLong' })] },
        // Every other client line is a command to the agent's command loop (it answers stray D/END/CAN too), and
        // the policy decides each of them.
        'CLIENT.*': [
          { guard: 'refusedByPolicy', target: '#session.error', actions: refuse('command') },
          {
            guard: 'needsConsent',
            target: '#session.held.awaitingConsent',
            actions: [...beginCommand, assign({ needsCryptoSlot: ({ event }) => 'cryptoSlot' in event && event.cryptoSlot === true })],
          },
          { guard: 'needsCryptoSlot', target: '#session.held.awaitingCryptoSlot', actions: beginCommand },
          { target: '#session.command', actions: [...beginCommand, 'forwardToAgent'] },
        ],
        CLIENT_EOF: '#session.closing',
        'AGENT.*': { target: '#session.fatal', actions: failWith({ reason: 'unsolicitedAgentOutput' }) },
      },
      states: {
        ready: {
          tags: ['idle'],
          // The client left, or the server is shutting down, while a command was in flight: that answer was the last.
          always: { guard: 'noMoreCommands', target: '#session.closing' },
          on: { CLIENT_PARTIAL: 'bufferingCommand' },
        },
        /** Part of a command line has arrived. */
        bufferingCommand: {},
      },
    },

    /**
     * A command is in flight: its answer is relayed line by line as it arrives. OK/ERR end it; INQUIRE hands the
     * turn to the client. Outside an INQUIRE the agent reads nothing, so no client line is taken: what the client
     * sends waits, in order, for the agent's command loop.
     */
    command: {
      initial: 'waitingForAgent',
      on: {
        ...forIntermediateAgentLines({ actions: 'relayToClient' }),
        'AGENT.INQUIRE': [
          // After the proxy has cancelled an INQUIRE for the client, a further INQUIRE is refused for it too.
          { guard: 'owesAnswer', actions: 'cancelAgentInquiry' },
          { guard: 'inquiryTakesNoData', target: '.bufferingInquire.acknowledging', actions: 'relayToClient' },
          { target: '.bufferingInquire.answering', actions: 'relayToClient' },
        ],
        'AGENT.OK': [
          { guard: 'owesAnswer', target: '#session.awaitingCommand', actions: [answerOwed, ...commandDone('refused')] },
          { target: '#session.awaitingCommand', actions: ['relayToClient', ...commandDone('ok')] },
        ],
        'AGENT.ERR': [
          { guard: 'owesAnswer', target: '#session.awaitingCommand', actions: [answerOwed, ...commandDone('refused')] },
          { target: '#session.awaitingCommand', actions: ['relayToClient', ...commandDone('err')] },
        ],
        'AGENT.OK_CLOSING': { target: '#session.closing', actions: ['relayToClient', { type: 'endCommand', params: { outcome: 'ok' } }] },
        'AGENT.*': protocolViolation,
        // Delivered only once every line the client sent has gone to the agent; the answer is still relayed. An
        // unfinished last line goes too: should the command INQUIRE next, the agent's reader fails on it as directly.
        CLIENT_EOF: { actions: clientEndsInput(true) },
        STOP: { actions: session.assign({ stopRequested: true }) },
      },
      states: {
        /** The agent's socket has not taken the whole request yet (it is not reading). */
        sendingToAgent: {
          on: {
            ...forIntermediateAgentLines({ target: 'sendingToClient', actions: 'relayToClient' }),
            AGENT_DRAINED: 'waitingForAgent',
          },
        },
        /** The request is with the agent; no line of its answer yet. */
        waitingForAgent: {
          entry: startResponseTimer,
          exit: stopResponseTimer,
          on: {
            ...forIntermediateAgentLines({ target: 'sendingToClient', actions: 'relayToClient' }),
            AGENT_BLOCKED: 'sendingToAgent',
            RESPONSE_TIMEOUT: { target: '#session.fatal', actions: failWith({ reason: 'responseTimeout' }) },
          },
        },
        /** The agent is answering: its lines go to the client as they come. */
        sendingToClient: {},

        /**
         * The agent's inquiry reader is open: the client's lines are its answer until one ends the inquiry at the
         * agent. After that line the agent reads nothing until the command ends, so the proxy takes nothing either.
         * It cannot end the command before its reader returns, so OK/ERR here mean the inquiry was over at the agent
         * already (one this model does not know): the client's next lines go to it as commands, as they would
         * directly.
         */
        bufferingInquire: {
          tags: ['clientInput'],
          initial: 'answering',
          entry: assign({ inquire: ({ event }) => (event.type === 'AGENT.INQUIRE' ? event.keyword : '') }),
          exit: assign({ inquire: '' }),
          // A person may take a while to type a passphrase; a client that never answers must not hold the slot.
          after: { inquiryTimeout: { target: '#session.fatal', actions: failWith({ reason: 'inquiryTimeout' }) } },
          // The client ended while the command was in flight: the agent already has our EOF and its reader fails on it.
          always: { guard: 'clientEnded', target: 'waitingForAgent' },
          on: {
            // The agent cannot inquire again while its reader is open.
            'AGENT.INQUIRE': protocolViolation,
            'CLIENT.COMMAND': commandInsideInquiry,
            // Half-close: the agent reads EOF inside its inquiry and answers (ERR End of file), as it would directly.
            CLIENT_EOF: { target: 'waitingForAgent', actions: clientEndsInput(true) },
          },
          states: {
            /** An inquiry that takes data: D, `#` and empty lines go to the agent until END, CAN or any other line. */
            answering: {
              // Client D lines are the answer's data, each handled as the one before it (the runtime batches them).
              tags: ['inquiry'],
              on: {
                'CLIENT.DATA': { actions: 'forwardToAgent' },
                'CLIENT.COMMENT': { actions: 'forwardToAgent' },
                'CLIENT.MALFORMED_DATA': { target: 'discarding', actions: assign({ owedAnswer: 'malformedEscape' }) },
                'CLIENT.TOO_LONG': { target: 'discarding', actions: assign({ owedAnswer: 'lineTooLong' }) },
                'CLIENT.END': endsInquiry,
                'CLIENT.CAN': endsInquiry,
              },
            },
            /** An inquiry that takes no data (PINENTRY_LAUNCHED): any line but `#` and empty ends it, a D line too. */
            acknowledging: {
              on: {
                'CLIENT.COMMENT': { actions: 'forwardToAgent' },
                'CLIENT.DATA': endsInquiry,
                'CLIENT.MALFORMED_DATA': endsInquiry,
                'CLIENT.END': endsInquiry,
                'CLIENT.CAN': endsInquiry,
                // The agent would end the inquiry on it and read the rest of the line as a command: CAN instead.
                'CLIENT.TOO_LONG': {
                  target: '#session.command.waitingForAgent',
                  actions: ['cancelAgentInquiry', assign({ owedAnswer: 'lineTooLong' })],
                },
              },
            },
            /**
             * The proxy refused a line of a data answer (too long, or a `%` escape that wedges gpg-agent). The agent
             * is still reading; the rest of the answer is dropped, and where it ends the agent gets CAN and the
             * client the proxy's ERR for the command.
             */
            discarding: {
              tags: ['inquiry'],
              on: {
                'CLIENT.DATA': {},
                'CLIENT.COMMENT': {},
                'CLIENT.MALFORMED_DATA': {},
                'CLIENT.TOO_LONG': {},
                'CLIENT.*': { target: '#session.command.waitingForAgent', actions: 'cancelAgentInquiry' },
                CLIENT_EOF: { target: '#session.command.waitingForAgent', actions: ['cancelAgentInquiry', ...clientEndsInput(false)] },
              },
            },
          },
        },
      },
    },

    /**
     * A command line was taken but is held, not sent: the agent, which has not seen it, still waits for a command.
     * What they share (see whileHeld) is the parent's; each child waits for one thing.
     */
    held: {
      initial: 'awaitingConsent',
      on: whileHeld,
      states: {
        /**
         * A key use waits for the person's approval (`--confirm`). Approved, the command goes on as any other;
         * refused or unanswered within the consent timeout, the client gets gpg-agent's own answer for it
         * (Operation cancelled, Not confirmed) and the agent never hears of it.
         */
        awaitingConsent: {
          entry: { type: 'askConsent', params: ({ event }) => ({ operation: 'consent' in event && event.consent !== undefined ? event.consent : 'sign' }) },
          exit: 'withdrawConsent',
          after: { consentTimeout: { target: '#session.awaitingCommand', actions: consentRefused('notConfirmed') } },
          on: {
            CONSENT_GRANTED: [
              // Approved, it queues for a slot only now: a slot is not held while a person thinks.
              { guard: 'approvedNeedsCryptoSlot', target: 'awaitingCryptoSlot', actions: assign({ consent: ({ event }) => event.by }) },
              { target: '#session.command', actions: [assign({ consent: ({ event }) => event.by }), ...sendHeldCommand] },
            ],
            CONSENT_REFUSED: [
              { guard: 'refusedAtPrompt', target: '#session.awaitingCommand', actions: consentRefused('cancelled') },
              { target: '#session.awaitingCommand', actions: consentRefused('notConfirmed') },
            ],
          },
        },

        /**
         * A key operation waits for one of the upstream's crypto slots (`--max-crypto N`): gpg-agent runs them
         * in parallel, and many at once can fail there (secure memory runs out). Slots are granted in arrival
         * order; one is held until the command's answer ends, or the session does.
         */
        awaitingCryptoSlot: {
          entry: 'requestCryptoSlot',
          exit: 'leaveCryptoQueue',
          on: {
            CRYPTO_SLOT_GRANTED: { target: '#session.command', actions: sendHeldCommand },
          },
        },
      },
    },

    /** The proxy answers a client line itself (it never reached the agent) with an ERR, then is ready again. */
    error: {
      entry: [answerOwed, ...commandDone('refused')],
      always: '#session.awaitingCommand',
    },

    closing: {
      // Closing while waiting for a command: the idle timer is still armed. The close grace bounds a client that
      // does not read from here on (sooner than the stall timer, unless configured otherwise).
      entry: [stopIdleTimer, stopStallTimer, 'closeGracefully'],
      after: { closeGrace: { target: 'closed', actions: 'destroySockets' } },
      on: {
        SOCKETS_CLOSED: 'closed',
        // Expected while both sides wind down; what the agent still says goes nowhere.
        STOP: {},
        STOP_NOW: {},
        AGENT_CLOSED: {},
        CLIENT_GONE: {},
        CLIENT_EOF: {},
        'AGENT.*': {},
      },
    },

    closed: { type: 'final', entry: 'destroySockets' },

    fatal: {
      type: 'final',
      entry: [stopIdleTimer, { type: 'abortSession', params: ({ context }) => ({ failure: context.failure }) }],
    },
  },
});

/** The states a person names a session by (the design card's), for listings and logs: `command.sendingToClient` is sendingToClient. */
const WRAPPERS: ReadonlySet<string> = new Set(['awaitingCommand', 'command', 'held']);
export function stateName(value: string | Record<string, unknown>): string {
  let current: unknown = value;
  for (;;) {
    if (typeof current === 'string') return current;
    const [key, child] = Object.entries(current as Record<string, unknown>)[0] ?? ['', ''];
    if (!WRAPPERS.has(key)) return key;
    current = child;
  }
}
