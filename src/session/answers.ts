/**
 * Every line the proxy writes itself, to either peer, in one place: the ERRs it answers in the agent's place,
 * the CAN that ends an INQUIRE for a refused answer, the OPTION that restricts a connection, the ERR a failed
 * session ends with, and the refusal past the session limit. Details are fixed strings, verbs from a fixed
 * vocabulary and socket error codes: never a byte that came from a peer.
 */
import type { ProxyAnswer, SessionFailure } from '../../machines/session.js';
import { errLine, type ProxyErrorName } from '../protocol/errors.js';
import { describeHandshakeDefect } from '../upstream/handshake.js';
import { describeDefect } from '../upstream/socketFile.js';

/** Ends an open INQUIRE at the agent (libassuan's reader takes any line starting with CAN as a cancel). */
export const CANCEL_INQUIRY = Buffer.from('CAN\n', 'latin1');
/** The agent runs the connection as its extra socket would, one way only (README "Restricted mode"). */
export const RESTRICT_CONNECTION = Buffer.from('OPTION pretend-request-origin=remote\n', 'latin1');

/** The proxy's answer to an OPTION it drops (the pinentry's environment stays the agent's own). */
const ACKNOWLEDGED = Buffer.from('OK\n', 'latin1');

/** The ERR (or, for an OPTION dropped, the OK) for a client line the proxy refused; `verb` names what was refused. */
export function refusal(answer: ProxyAnswer, verb: string): Buffer {
  switch (answer) {
    case 'forbidden':
      return errLine('forbidden', `${verb || 'this line'} is not allowed through this socket`);
    case 'lineTooLong':
      return errLine('lineTooLong', 'lines are limited to 1000 bytes');
    case 'malformedEscape':
      return errLine('malformedEscape', "D line has a '%' not followed by two hex digits");
    case 'acknowledged':
      return ACKNOWLEDGED;
    case 'cancelled':
      return errLine('cancelled', `${verb} was refused at the consent prompt`);
    case 'notConfirmed':
      return errLine('notConfirmed', `${verb} was not approved (no answer at the consent prompt in time, or none could be shown)`);
  }
}

/** Past the session limit: the ERR a client gets in place of the greeting. */
export function sessionLimitReached(maxSessions: number): Buffer {
  return errLine('limitReached', `the proxy serves at most ${maxSessions} sessions at once`);
}

/** What the failure messages name: where the agent is, and the limits that apply. */
export interface FailureSetting {
  upstreamPath: string;
  /** What the upstream is called in messages: gpg-agent, dirmngr, … */
  daemon: string;
  /** Set once dialed through a Windows- or Cygwin-form socket file (its server checks a nonce). */
  socketFileForm?: 'windows' | 'cygwin' | undefined;
  idleMs: number;
  inquiryMs: number;
}

/** The ERR the client gets for a failed session, and its one-line reason, also logged. */
export function failure(failure: SessionFailure | null, setting: FailureSetting): { line: Buffer; reason: string } {
  const [name, reason] = describe(failure, setting);
  return { line: errLine(name, reason), reason };
}

function describe(failure: SessionFailure | null, { upstreamPath, daemon, socketFileForm, idleMs, inquiryMs }: FailureSetting): [ProxyErrorName, string] {
  switch (failure?.reason) {
    case 'connectFailed':
      return ['connectFailed', `cannot connect to ${daemon} at ${upstreamPath}: ${failure.code}`];
    case 'badUpstreamFile':
      return ['connectFailed', `cannot use the socket file ${upstreamPath}: ${describeDefect(failure.defect)}`];
    case 'handshakeFailed':
      return ['connectFailed', `the server named by ${upstreamPath} failed the handshake: ${describeHandshakeDefect(failure.defect)}`];
    case 'launchFailed':
      return ['connectFailed', `nothing answers at ${upstreamPath} and ${daemon} could not be started (gpgconf --launch); the proxy's log says why`];
    case 'connectTimeout':
      return [
        'timeout',
        `${daemon} did not accept the connection in time` + (failure.attempts > 1 ? ` (${failure.attempts} attempts; its listen queue stayed full)` : ''),
      ];
    case 'greetingTimeout':
      return ['timeout', `${daemon} did not greet in time`];
    case 'restrictTimeout':
      return ['timeout', 'gpg-agent did not answer the request to run the connection restricted in time'];
    case 'restrictFailed':
      return ['connectFailed', 'gpg-agent refused to run the connection restricted (pretend-request-origin)'];
    case 'responseTimeout':
      return ['timeout', 'gpg-agent did not answer in time'];
    case 'idleTimeout':
      return ['timeout', `no command for ${seconds(idleMs)} (the idle limit); closing`];
    case 'clientStalled':
      return ['timeout', `the client read nothing for ${seconds(idleMs)} (the idle limit); closing`];
    case 'inquiryTimeout':
      return ['timeout', `the INQUIRE was not answered within ${seconds(inquiryMs)}; closing`];
    case 'badGreeting':
      return ['connectFailed', 'gpg-agent did not greet with OK'];
    case 'closedBeforeGreeting':
      return [
        'endOfFile',
        `${daemon} closed the connection before its greeting (${failure.code})` +
          (socketFileForm ? `: the server behind ${upstreamPath} does that to a wrong nonce; is the file stale (written by an agent that has restarted)?` : ''),
      ];
    case 'agentClosed':
      return ['endOfFile', `gpg-agent closed the connection (${failure.code})`];
    case 'agentProtocolViolation':
      return ['invalidResponse', 'gpg-agent sent a line that is not valid here'];
    case 'unsolicitedAgentOutput':
      return ['invalidResponse', 'gpg-agent sent output with no command pending'];
    case 'internalError':
      return ['endOfFile', 'internal error in the proxy'];
    default:
      return ['endOfFile', 'session ended'];
  }
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
