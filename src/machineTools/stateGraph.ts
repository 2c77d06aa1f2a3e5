/**
 * A machine's states and transitions as a tree plus a list, read from XState's state nodes, for drawing views of
 * it (see diagramViews.ts). Optional *groups* put a box around sibling states the machine does not group itself
 * (a concern such as "a command in flight"); they change nothing but the drawing.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { definedTransitions, guardText } from './transitions.js';

export interface GraphState {
  /** How the live view and the diagrams name it: the state path with `__` for the dots (`connecting__reaching`). */
  drawnId: string;
  /** Path from the machine's root (`connecting.reaching`); '' for the root; a group's name for a group. */
  path: string;
  label: string;
  kind: 'root' | 'state' | 'group';
  parent: GraphState | undefined;
  children: GraphState[];
  /** The child entered first, when this state has children. */
  initial: GraphState | undefined;
  final: boolean;
  /** Its children are regions, all active at once. */
  parallel: boolean;
  /** Left at once (an unguarded `always`): it takes no events. */
  transient: boolean;
}

export interface GraphTransition {
  source: GraphState;
  /** As people read it: the event type, `after <delay>`, `always`, `done <actor>`, `error <actor>`, `done`. */
  event: string;
  /** The guard's name(s), '' when unguarded. */
  guard: string;
  /** Unguarded, after guarded candidates for the same event: taken when none of them is ("else"). */
  fallback: boolean;
  targets: GraphState[];
}

export interface StateGraph {
  machineId: string;
  root: GraphState;
  /** Every state and group by path. */
  byPath: Map<string, GraphState>;
  /** Every transition, targetless ones included, in definition order. */
  transitions: GraphTransition[];
}

export interface StateGroup {
  label: string;
  /** Paths of sibling states. */
  states: string[];
}

export function stateGraph(machine: AnyStateMachine, groups: Record<string, StateGroup> = {}): StateGraph {
  const byPath = new Map<string, GraphState>();
  const byNodeId = new Map<string, GraphState>();
  const build = (node: AnyStateNode, parent: GraphState | undefined): GraphState => {
    const path = node.path.join('.');
    const state: GraphState = {
      drawnId: node.path.join('__'),
      path,
      label: node.key,
      kind: parent ? 'state' : 'root',
      parent,
      children: [],
      initial: undefined,
      final: node.type === 'final',
      parallel: node.type === 'parallel',
      transient: (node.always ?? []).some((t) => t.guard === undefined && (t.target ?? []).length > 0),
    };
    byPath.set(path, state);
    byNodeId.set(node.id, state);
    state.children = (Object.values(node.states) as AnyStateNode[]).map((child) => build(child, state));
    const initial = node.config.initial;
    if (typeof initial === 'string') state.initial = state.children.find((c) => c.label === initial);
    return state;
  };
  const root = build(machine.root, undefined);
  root.label = machine.id;
  for (const [name, group] of Object.entries(groups)) addGroup(byPath, name, group);
  const stateOf = (nodeId: string): GraphState => {
    const state = byNodeId.get(nodeId);
    if (!state) throw new Error(`${machine.id}: no state ${nodeId}`);
    return state;
  };
  const invokedBy = invokedActors(machine.root);
  const guardedSoFar = new Set<string>();
  const transitions: GraphTransition[] = definedTransitions(machine).map((t) => {
    const candidatesOf = `${t.source}|${t.event}`;
    if (t.guard !== '') guardedSoFar.add(candidatesOf);
    return {
      source: stateOf(t.source),
      event: readableEvent(t.event, machine.id, invokedBy),
      guard: t.guard,
      fallback: t.guard === '' && guardedSoFar.has(candidatesOf),
      targets: t.targets.map(stateOf),
    };
  });
  // A `*` that changes state is a transition to draw, though not one the inventory counts (it skips every `*`).
  for (const node of allNodes(machine.root)) {
    for (const t of node.transitions.get('*') ?? []) {
      if ((t.target ?? []).length > 0) transitions.push({ source: stateOf(node.id), event: '*', guard: guardText(t.guard), fallback: false, targets: (t.target ?? []).map((n) => stateOf(n.id)) });
    }
  }
  return { machineId: machine.id, root, byPath, transitions };
}

function allNodes(node: AnyStateNode): AnyStateNode[] {
  return [node, ...(Object.values(node.states) as AnyStateNode[]).flatMap(allNodes)];
}

/** Invoked actors' ids to what people call them: their `src` when XState made the id up (`0.session.x`). */
function invokedActors(root: AnyStateNode): Map<string, string> {
  const names = new Map<string, string>();
  for (const node of allNodes(root)) {
    for (const invoke of node.invoke) {
      const generated = /^\d+\./.test(invoke.id);
      names.set(invoke.id, generated && typeof invoke.src === 'string' ? invoke.src : invoke.id);
    }
  }
  return names;
}

function addGroup(byPath: Map<string, GraphState>, name: string, group: StateGroup): void {
  if (byPath.has(name) || [...byPath.values()].some((s) => s.drawnId === name)) throw new Error(`group ${name}: a state of that name exists`);
  const members = group.states.map((path) => {
    const member = byPath.get(path);
    if (!member || member.kind === 'root') throw new Error(`group ${name}: no state ${path}`);
    return member;
  });
  const parent = members[0]?.parent;
  if (!parent || members.some((m) => m.parent !== parent)) throw new Error(`group ${name}: its states must be siblings`);
  const grouped: GraphState = {
    drawnId: name,
    path: name,
    label: group.label,
    kind: 'group',
    parent,
    children: members,
    initial: undefined,
    final: false,
    parallel: false,
    transient: false,
  };
  parent.children.splice(parent.children.indexOf(members[0]!), 0, grouped);
  parent.children = parent.children.filter((c) => !members.includes(c));
  for (const member of members) member.parent = grouped;
  byPath.set(name, grouped);
}

/** XState's internal event types, as people read them. */
function readableEvent(event: string, machineId: string, invokedBy: Map<string, string>): string {
  for (const [prefix, word] of [['xstate.done.actor.', 'done'], ['xstate.error.actor.', 'error']] as const) {
    if (event.startsWith(prefix)) {
      const id = event.slice(prefix.length);
      return `${word} ${invokedBy.get(id) ?? id}`;
    }
  }
  if (event.startsWith(`xstate.done.state.${machineId}.`)) return 'done';
  return event;
}

/** `inner` is `outer` or lies within it. */
export function within(inner: GraphState, outer: GraphState): boolean {
  for (let s: GraphState | undefined = inner; s; s = s.parent) if (s === outer) return true;
  return false;
}
