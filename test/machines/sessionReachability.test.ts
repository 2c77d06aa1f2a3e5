/**
 * Reachability from the initial state, computed from the definition with xstate/graph: every state is reached,
 * and every defined transition is enabled in some reachable snapshot, so none is dead code.
 */
import { describe, expect, it } from 'vitest';
import type { AnyMachineSnapshot } from 'xstate';
import { sessionMachine, type AgentLineEvent, type ClientLineEvent, type SessionEvent, type SessionEventType } from '../../machines/session.js';
import { LineHandle } from '../../src/protocol/line.js';
import { reachability } from '../support/reachability.js';

const line = new LineHandle(Buffer.from('NOP\n'));
type PlainAgentLine = Exclude<AgentLineEvent['type'], 'AGENT.INQUIRE' | 'AGENT.STATUS'>;
const plainAgentLines: PlainAgentLine[] = ['AGENT.OK', 'AGENT.OK_CLOSING', 'AGENT.ERR', 'AGENT.COMMENT', 'AGENT.DATA', 'AGENT.END', 'AGENT.INVALID'];
const clientLines: Array<ClientLineEvent['type']> = ['CLIENT.COMMAND', 'CLIENT.COMMENT', 'CLIENT.DATA', 'CLIENT.MALFORMED_DATA', 'CLIENT.END', 'CLIENT.CAN'];

/** Every event the sockets and the server can produce, one per line event type, with the variants guards tell apart. */
const events: SessionEvent[] = [
  { type: 'AGENT_CONNECTED' },
  { type: 'AGENT_CONNECTED', handshake: 'cygwin' },
  { type: 'AGENT_HANDSHAKE_DONE' },
  { type: 'AGENT_HANDSHAKE_FAILED', defect: 'nonceMismatch' },
  { type: 'AGENT_UPSTREAM_INVALID', defect: 'nonceTooShort' },
  { type: 'AGENT_LAUNCHED' },
  { type: 'AGENT_LAUNCH_FAILED' },
  { type: 'AGENT_SPARE_TAKEN' },
  { type: 'AGENT_CONNECT_FAILED', code: 'ECONNREFUSED' },
  { type: 'AGENT_CONNECT_FAILED', code: 'EAGAIN' },
  { type: 'AGENT_BLOCKED' },
  { type: 'AGENT_DRAINED' },
  { type: 'AGENT_CLOSED', code: 'EOF' },
  ...plainAgentLines.map((type): SessionEvent => ({ type, line, bytes: 4 })),
  // Forbidden: the agent's answer to the restricting OPTION on a connection restricted already (its extra socket).
  { type: 'AGENT.ERR', code: 67109115, line, bytes: 4 },
  { type: 'AGENT.STATUS', keyword: 'PROGRESS', line, bytes: 4 },
  { type: 'AGENT.INQUIRE', keyword: 'PASSPHRASE', line, bytes: 4 },
  { type: 'AGENT.INQUIRE', keyword: 'PINENTRY_LAUNCHED', line, bytes: 4 },
  { type: 'CLIENT_PARTIAL', bytes: 2 },
  ...clientLines.map((type): SessionEvent => ({ type, verb: '', line, bytes: 4 })),
  // What the policy forbids: a command, and a line that is a command only where the agent reads commands.
  { type: 'CLIENT.COMMAND', verb: 'KEYINFO', line, bytes: 4, refusedBy: 'deny' },
  { type: 'CLIENT.DATA', verb: 'D', line, bytes: 4, refusedBy: 'deny' },
  // A key use the person must approve first, and what they (or no one) answer.
  { type: 'CLIENT.COMMAND', verb: 'PKSIGN', line, bytes: 4, consent: 'sign' },
  { type: 'CONSENT_GRANTED', line, by: 'prompt' },
  { type: 'CONSENT_REFUSED', answer: 'cancelled' },
  { type: 'CONSENT_REFUSED', answer: 'notConfirmed' },
  // A key operation that waits for a crypto slot (--max-crypto), alone and after consent.
  { type: 'CLIENT.COMMAND', verb: 'PKSIGN', line, bytes: 4, cryptoSlot: true },
  { type: 'CLIENT.COMMAND', verb: 'PKSIGN', line, bytes: 4, consent: 'sign', cryptoSlot: true },
  { type: 'CRYPTO_SLOT_GRANTED', line },
  { type: 'CLIENT.TOO_LONG', bytes: 2000 },
  { type: 'CLIENT_EOF' },
  { type: 'CLIENT_GONE', code: 'ECONNRESET' },
  { type: 'SOCKETS_CLOSED' },
  { type: 'STOP' },
  { type: 'STOP_NOW' },
  { type: 'CLIENT_BLOCKED' },
  { type: 'CLIENT_DRAINED' },
  // Raised by the machine's own timers; the traversal delivers them like any other event.
  { type: 'IDLE_TIMEOUT' },
  { type: 'RESPONSE_TIMEOUT' },
  { type: 'CLIENT_STALLED' },
];

/** Every event type, spelled out so that the compiler names one added to the machine and missing here. */
const EVENT_TYPES: Record<SessionEventType, true> = {
  'AGENT.OK': true, 'AGENT.OK_CLOSING': true, 'AGENT.ERR': true, 'AGENT.INQUIRE': true, 'AGENT.STATUS': true, 'AGENT.COMMENT': true,
  'AGENT.DATA': true, 'AGENT.END': true, 'AGENT.INVALID': true,
  'CLIENT.COMMAND': true, 'CLIENT.COMMENT': true, 'CLIENT.DATA': true, 'CLIENT.MALFORMED_DATA': true, 'CLIENT.END': true, 'CLIENT.CAN': true,
  'CLIENT.TOO_LONG': true,
  AGENT_CONNECTED: true, AGENT_SPARE_TAKEN: true, AGENT_HANDSHAKE_DONE: true, AGENT_HANDSHAKE_FAILED: true, AGENT_UPSTREAM_INVALID: true,
  AGENT_LAUNCHED: true, AGENT_LAUNCH_FAILED: true, AGENT_CONNECT_FAILED: true, AGENT_BLOCKED: true, AGENT_DRAINED: true, AGENT_CLOSED: true,
  CLIENT_PARTIAL: true, CLIENT_EOF: true, CLIENT_GONE: true, SOCKETS_CLOSED: true, STOP: true, STOP_NOW: true,
  IDLE_TIMEOUT: true, RESPONSE_TIMEOUT: true, CLIENT_BLOCKED: true, CLIENT_DRAINED: true, CLIENT_STALLED: true,
  CONSENT_GRANTED: true, CONSENT_REFUSED: true, CRYPTO_SLOT_GRANTED: true,
};

// State value plus the context that guards read: the traversal must tell these snapshots apart.
const serializeState = (s: AnyMachineSnapshot) =>
  JSON.stringify([s.value, s.context.owedAnswer, s.context.command === '', s.context.clientEnded, s.context.stopRequested, s.context.launchTried, s.context.needsCryptoSlot, s.status]);

// With the response timeout on, so that its transition can be taken (off, its guard never holds), restricted
// mode both ways (the input decides whether the greeting leads through restricting), and a daemon found by name
// (only then is it launched).
const result = mergeResults(
  reachability(sessionMachine, events, serializeState, { sessionId: 'graph', responseTimeoutOn: true, mayLaunchAgent: true }),
  reachability(sessionMachine, events, serializeState, { sessionId: 'graph', restrictAgent: true }),
);

function mergeResults(...results: Array<ReturnType<typeof reachability>>): ReturnType<typeof reachability> {
  const inAll = (pick: (r: ReturnType<typeof reachability>) => string[]) => pick(results[0]!).filter((k) => results.every((r) => pick(r).includes(k)));
  return {
    unreachedStates: inAll((r) => r.unreachedStates),
    untakenTransitions: inAll((r) => r.untakenTransitions),
    definedCount: results[0]!.definedCount,
  };
}

describe('session machine reachability (xstate/graph)', () => {
  it('delivers every event type the machine knows', () => {
    expect(Object.keys(EVENT_TYPES).filter((type) => !events.some((e) => e.type === type))).toEqual([]);
  });

  it('reaches every state that can hold, from the initial state', () => {
    expect(result.unreachedStates).toEqual([]);
  });

  it('takes every defined transition in some reachable snapshot', () => {
    expect(result.definedCount).toBeGreaterThan(50);
    expect(result.untakenTransitions).toEqual([]);
  });
});
