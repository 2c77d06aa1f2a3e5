/**
 * Reachability of a machine's states and transitions from its initial state, from the definition alone
 * (xstate/graph shortest paths), for the machine tests.
 */
import { transition, type AnyMachineSnapshot, type AnyStateMachine, type AnyStateNode, type EventObject } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { definedTransitions, transitionKey } from '../../src/machineTools/transitions.js';

export function allNodes(node: AnyStateNode): AnyStateNode[] {
  return [node, ...(Object.values(node.states) as AnyStateNode[]).flatMap(allNodes)];
}

function valuePaths(value: unknown, prefix = ''): string[] {
  if (typeof value === 'string') return [`${prefix}${value}`];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => valuePaths(v, `${prefix}${k}.`));
}

export interface Reachability {
  /** Leaf states that can hold (not left at once by an eventless transition) and are never reached. */
  unreachedStates: string[];
  /** Keys of defined transitions not enabled in any reachable snapshot. */
  untakenTransitions: string[];
  definedCount: number;
}

/**
 * `events`: one sample of every event the outside world can send (delayed events are added here);
 * `serializeState`: the state value plus the context guards read, so that the traversal tells them apart.
 */
export function reachability(
  machine: AnyStateMachine,
  events: EventObject[],
  serializeState: (s: AnyMachineSnapshot) => string,
  input?: unknown,
): Reachability {
  const delayed = allNodes(machine.root).flatMap((n) => n.after.map((a) => ({ type: a.eventType })));
  const all = [...events, ...delayed];
  const paths = getShortestPaths(machine, {
    ...(input !== undefined ? { input } : {}),
    events: all as never,
    serializeState: serializeState as never,
    stopWhen: (s: AnyMachineSnapshot) => s.status === 'done',
  } as never);
  const reachable = paths.map((p) => p.state as AnyMachineSnapshot);

  const reached = new Set(reachable.flatMap((s) => valuePaths(s.value)));
  const unreachedStates = allNodes(machine.root)
    .filter((n) => n !== machine.root && Object.keys(n.states).length === 0 && !n.always?.length)
    .map((n) => n.path.join('.'))
    .filter((leaf) => !reached.has(leaf));

  const guards = machine.implementations.guards as Record<string, (args: { context: unknown }) => boolean>;
  const holds = (guard: unknown, context: unknown) => {
    if (guard === undefined) return true;
    if (typeof guard !== 'string' || !guards[guard]) throw new Error('eventless guards are expected to be named');
    return guards[guard]({ context });
  };
  const taken = new Set<string>();
  for (const snapshot of reachable) {
    if (snapshot.status !== 'active') continue;
    for (const event of all) {
      for (const t of machine.getTransitionData(snapshot as never, event as never)) {
        const key = transitionKey(t);
        if (key) taken.add(key);
        // An eventless transition of a state entered here (or, for a transition with no target, of a state the
        // machine stays in) is taken if its guard holds for the context produced.
        const [next] = transition(machine, snapshot as never, event as never);
        const targets: AnyStateNode[] = t.target?.length ? [...t.target] : (snapshot as unknown as { _nodes: AnyStateNode[] })._nodes;
        for (const target of targets) {
          // A target's ancestors are active after the transition too, and XState checks their eventless transitions.
          for (const node of t.target?.length ? [...allNodes(target), ...ancestors(target)] : [target]) {
            for (const always of node.always ?? []) {
              const key = transitionKey(always);
              if (key && holds(always.guard, next.context)) taken.add(key);
            }
          }
        }
      }
    }
  }
  const defined = definedTransitions(machine).map((t) => t.key);
  return { unreachedStates, untakenTransitions: defined.filter((k) => !taken.has(k)), definedCount: defined.length };
}

function ancestors(node: AnyStateNode): AnyStateNode[] {
  const out: AnyStateNode[] = [];
  for (let parent = node.parent; parent; parent = parent.parent) out.push(parent);
  return out;
}
