/**
 * Reachability from the initial state, computed from the definition with xstate/graph: every state is reached,
 * and every defined transition is enabled in some reachable snapshot, so none is dead code.
 */
import { describe, expect, it } from 'vitest';
import { transition, type AnyMachineSnapshot, type AnyStateNode } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { sessionMachine, type SessionEvent } from '../../machines/session.js';
import type { AgentLineKind, ClientLineKind } from '../../src/protocol/classify.js';
import { definedTransitions, transitionKey } from '../../src/machineTools/transitions.js';

const agentKinds: AgentLineKind[] = ['ok', 'okClosing', 'err', 'inquire', 'status', 'comment', 'data', 'end', 'invalid'];
const clientKinds: ClientLineKind[] = ['command', 'comment', 'empty', 'data', 'malformedData', 'end', 'cancel'];

/** Every event the sockets can produce, one per line kind, plus the machine's delayed events. */
const socketEvents: SessionEvent[] = [
  { type: 'AGENT_CONNECTED' },
  { type: 'AGENT_CONNECT_FAILED', code: 'ECONNREFUSED' },
  { type: 'AGENT_CONNECT_FAILED', code: 'EAGAIN' },
  { type: 'AGENT_WRITTEN' },
  { type: 'AGENT_CLOSED', code: 'EOF' },
  ...agentKinds.map((kind): SessionEvent => ({ type: 'AGENT_LINE', kind, keyword: '', bytes: 4 })),
  { type: 'CLIENT_PARTIAL', bytes: 2 },
  ...clientKinds.map((kind): SessionEvent => ({ type: 'CLIENT_LINE', kind, verb: '', bytes: 4 })),
  { type: 'CLIENT_LINE_TOO_LONG', bytes: 2000 },
  { type: 'CLIENT_EOF' },
  { type: 'CLIENT_GONE', code: 'ECONNRESET' },
  { type: 'SOCKETS_CLOSED' },
];

function allNodes(node: AnyStateNode): AnyStateNode[] {
  return [node, ...(Object.values(node.states) as AnyStateNode[]).flatMap(allNodes)];
}
const delayedEvents = allNodes(sessionMachine.root).flatMap((n) => n.after.map((a) => ({ type: a.eventType }) as unknown as SessionEvent));
const events = [...socketEvents, ...delayedEvents];

// State value plus the context that guards read: the traversal must tell these snapshots apart.
const serializeState = (s: AnyMachineSnapshot) =>
  JSON.stringify([s.value, s.context.owedError !== null, s.context.clientEnded, s.status]);

const paths = getShortestPaths(sessionMachine, {
  input: { sessionId: 'graph' },
  events,
  serializeState,
  stopWhen: (s) => s.status === 'done',
});
const reachable = paths.map((p) => p.state as AnyMachineSnapshot);

function valuePaths(value: unknown, prefix = ''): string[] {
  if (typeof value === 'string') return [`${prefix}${value}`];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => valuePaths(v, `${prefix}${k}.`));
}

/** Evaluates a named guard of the machine (eventless guards here read only the context). */
function guardHolds(guard: unknown, context: unknown): boolean {
  if (guard === undefined) return true;
  const impl = (sessionMachine.implementations.guards as Record<string, (args: { context: unknown }) => boolean>)[guard as string];
  if (!impl) throw new Error(`eventless guard ${String(guard)} is not a named guard`);
  return impl({ context });
}

describe('session machine reachability (xstate/graph)', () => {
  it('reaches every state that can hold, from the initial state', () => {
    const reached = new Set(reachable.flatMap((s) => valuePaths(s.value)));
    const leaves = allNodes(sessionMachine.root)
      .filter((n) => Object.keys(n.states).length === 0 && !(n.always?.length))
      .map((n) => n.path.join('.'));
    expect(leaves.length).toBeGreaterThan(10);
    expect(leaves.filter((l) => !reached.has(l))).toEqual([]);
  });

  it('takes every defined transition in some reachable snapshot', () => {
    const taken = new Set<string>();
    for (const snapshot of reachable) {
      if (snapshot.status !== 'active') continue;
      for (const event of events) {
        for (const t of sessionMachine.getTransitionData(snapshot as never, event)) {
          const key = transitionKey(t);
          if (key) taken.add(key);
          // An eventless transition of a state entered here is taken if its guard holds for the context this
          // transition produced.
          const [next] = transition(sessionMachine, snapshot as never, event);
          for (const target of t.target ?? []) {
            for (const node of allNodes(target)) {
              (node.always ?? []).forEach((always, i) => {
                if (guardHolds(always.guard, next.context)) taken.add(`${node.id}|always#${i}`);
              });
            }
          }
        }
      }
    }
    const defined = definedTransitions(sessionMachine).map((t) => t.key);
    expect(defined.length).toBeGreaterThan(50);
    expect(defined.filter((key) => !taken.has(key))).toEqual([]);
  });
});
