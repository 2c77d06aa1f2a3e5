/**
 * The inventory of a machine's transitions, with stable keys, shared by the reachability test and the
 * real-socket transition coverage. A key names the source state, the event descriptor (or `after <delay>`,
 * `always`, or `<actor> done` / `<actor> error` for an invoked actor settling) and, for a guarded candidate, its
 * guard: `session.command|AGENT.OK[owesAnswer]`, `session.command|AGENT.OK`, `server.starting|listen done`.
 * Reordering candidates renames nothing; a state may not hold two candidates for one event with the same guard
 * (the keys would clash: test/machines/transitionKeys.test.ts checks).
 * The root's catch-all `*` (explicit rejection) changes nothing and is not a transition here.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';

export interface TransitionInfo {
  key: string;
  source: string;
  event: string;
  targets: string[];
  guard: string;
}

/** The duck type of what XState puts in inspection events and getTransitionData results. */
export interface TransitionLike {
  source: AnyStateNode;
  eventType: string;
}

/** Every transition of the machine, in definition order (a state's own, then its children's). */
export function definedTransitions(machine: AnyStateMachine): TransitionInfo[] {
  const out: TransitionInfo[] = [];
  const visit = (node: AnyStateNode) => {
    for (const [eventType, candidates] of node.transitions) {
      if (eventType === '*') continue;
      for (const t of candidates) out.push(info(node, eventLabel(node, eventType), t));
    }
    for (const t of node.always ?? []) out.push(info(node, 'always', t));
    for (const child of Object.values(node.states) as AnyStateNode[]) visit(child);
  };
  visit(machine.root);
  return out;
}

/** Key and event label of a transition definition as taken by a live actor (null for the `*` catch-all). */
export function describeTransition(transition: TransitionLike): { key: string; event: string } | null {
  const node = transition.source;
  if (transition.eventType === '*') return null;
  const guard = (transition as { guard?: unknown }).guard;
  if ((node.always ?? []).includes(transition as never)) return { key: keyOf(node, 'always', guard), event: 'always' };
  const event = eventLabel(node, transition.eventType);
  return { key: keyOf(node, event, guard), event };
}

export function transitionKey(transition: TransitionLike): string | null {
  return describeTransition(transition)?.key ?? null;
}

const INVOKE_DONE = 'xstate.done.actor.';
const INVOKE_ERROR = 'xstate.error.actor.';

/**
 * The event as people read it: its type, `after <delay>` for a timeout's internal event, or `<id> done` /
 * `<id> error` for the internal events of an actor the state invokes (its onDone / onError).
 */
function eventLabel(node: AnyStateNode, eventType: string): string {
  const delay = node.after.find((a) => a.eventType === eventType);
  if (delay) return `after ${String(delay.delay)}`;
  for (const { id, src } of node.invoke) {
    // Named after what it runs: an invoke without an id of its own gets a generated one (`0.machine.state`).
    const name = typeof src === 'string' ? src : id;
    if (eventType === `${INVOKE_DONE}${id}`) return `${name} done`;
    if (eventType === `${INVOKE_ERROR}${id}`) return `${name} error`;
  }
  return eventType;
}

function keyOf(node: AnyStateNode, event: string, guard: unknown): string {
  const text = guardText(guard);
  return `${node.id}|${event}${text ? `[${text}]` : ''}`;
}

function info(node: AnyStateNode, event: string, t: { target?: readonly AnyStateNode[] | undefined; guard?: unknown }): TransitionInfo {
  return {
    key: keyOf(node, event, t.guard),
    source: node.id,
    event,
    targets: (t.target ?? []).map((n) => n.id),
    guard: guardText(t.guard),
  };
}

export function guardText(guard: unknown): string {
  if (guard === undefined) return '';
  if (typeof guard === 'string') return guard;
  const composite = guard as { guards?: unknown[]; type?: string };
  if (composite.type === 'xstate.not' && Array.isArray(composite.guards)) return `!${composite.guards.map(guardText).join('')}`;
  if (Array.isArray(composite.guards)) return composite.guards.map(guardText).join(composite.type === 'xstate.or' ? ' || ' : ' && ');
  return composite.type ?? 'guard';
}
