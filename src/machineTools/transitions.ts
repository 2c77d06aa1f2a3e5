/**
 * The inventory of a machine's transitions, with stable keys, shared by the reachability test and the
 * real-socket transition coverage. A key names the source state, the event (or `after <delay>` / `always`)
 * and the position among that state's candidates for the event: `session.ready|CLIENT_LINE#0`.
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

export function definedTransitions(machine: AnyStateMachine): TransitionInfo[] {
  const out: TransitionInfo[] = [];
  const visit = (node: AnyStateNode) => {
    const delays = new Map(node.after.map((a) => [a.eventType, `after ${String(a.delay)}`]));
    for (const [eventType, candidates] of node.transitions) {
      if (eventType === '*') continue;
      candidates.forEach((t, index) => out.push(info(node, delays.get(eventType) ?? eventType, index, t)));
    }
    (node.always ?? []).forEach((t, index) => out.push(info(node, 'always', index, t)));
    for (const child of Object.values(node.states) as AnyStateNode[]) visit(child);
  };
  visit(machine.root);
  return out;
}

/** The key of a transition definition as taken by a live actor (null for the `*` catch-all). */
export function transitionKey(transition: TransitionLike): string | null {
  const node = transition.source;
  if (transition.eventType === '*') return null;
  const always = node.always ?? [];
  const alwaysIndex = always.indexOf(transition as never);
  if (alwaysIndex !== -1) return `${node.id}|always#${alwaysIndex}`;
  const candidates = node.transitions.get(transition.eventType) ?? [];
  const delay = node.after.find((a) => a.eventType === transition.eventType);
  const event = delay ? `after ${String(delay.delay)}` : transition.eventType;
  return `${node.id}|${event}#${candidates.indexOf(transition as never)}`;
}

function info(node: AnyStateNode, event: string, index: number, t: { target?: readonly AnyStateNode[] | undefined; guard?: unknown }): TransitionInfo {
  return {
    key: `${node.id}|${event}#${index}`,
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
  if (Array.isArray(composite.guards)) return composite.guards.map(guardText).join(composite.type === 'xstate.or' ? ' || ' : ' && ');
  return composite.type ?? 'guard';
}
