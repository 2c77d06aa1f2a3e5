/**
 * Reachability from the initial state, computed from the definition with xstate/graph: every state is reached,
 * and every defined transition is enabled in some reachable snapshot, so none is dead code.
 */
import { describe, expect, it } from 'vitest';
import type { AnyMachineSnapshot } from 'xstate';
import { sessionMachine, type SessionEvent } from '../../machines/session.js';
import type { AgentLineKind, ClientLineKind } from '../../src/protocol/classify.js';
import { reachability } from '../support/reachability.js';

const agentKinds: AgentLineKind[] = ['ok', 'okClosing', 'err', 'inquire', 'status', 'comment', 'data', 'end', 'invalid'];
const clientKinds: ClientLineKind[] = ['command', 'comment', 'empty', 'data', 'malformedData', 'end', 'cancel'];

/** Every event the sockets and the server can produce, one per line kind. */
const events: SessionEvent[] = [
  { type: 'AGENT_CONNECTED' },
  { type: 'AGENT_CONNECT_FAILED', code: 'ECONNREFUSED' },
  { type: 'AGENT_CONNECT_FAILED', code: 'EAGAIN' },
  { type: 'AGENT_WRITTEN' },
  { type: 'AGENT_CLOSED', code: 'EOF' },
  ...agentKinds.map((kind): SessionEvent => ({ type: 'AGENT_LINE', kind, keyword: '', bytes: 4 })),
  { type: 'AGENT_LINE', kind: 'inquire', keyword: 'PINENTRY_LAUNCHED', bytes: 4 },
  { type: 'CLIENT_PARTIAL', bytes: 2 },
  ...clientKinds.map((kind): SessionEvent => ({ type: 'CLIENT_LINE', kind, verb: '', bytes: 4 })),
  { type: 'CLIENT_LINE', kind: 'command', verb: 'KEYINFO', bytes: 4, refusedBy: 'deny' },
  { type: 'CLIENT_LINE_TOO_LONG', bytes: 2000 },
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

// State value plus the context that guards read: the traversal must tell these snapshots apart.
const serializeState = (s: AnyMachineSnapshot) =>
  JSON.stringify([s.value, s.context.owedAnswer, s.context.command === '', s.context.clientEnded, s.context.stopRequested, s.status]);

// With the response timeout on, so that its transition can be taken (off, its guard never holds), and restricted
// mode both ways (the input decides whether the greeting leads through restricting).
const result = mergeResults(
  reachability(sessionMachine, events, serializeState, { sessionId: 'graph', responseTimeoutOn: true }),
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
  it('reaches every state that can hold, from the initial state', () => {
    expect(result.unreachedStates).toEqual([]);
  });

  it('takes every defined transition in some reachable snapshot', () => {
    expect(result.definedCount).toBeGreaterThan(50);
    expect(result.untakenTransitions).toEqual([]);
  });
});
