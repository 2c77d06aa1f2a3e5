/**
 * Transition records from XState's inspection API: one record per transition a live actor takes (including
 * timeouts and eventless steps), with no payload: the actor, the state left, the event type and the state
 * entered. Feeds `--trace-transitions` and the real-socket transition coverage. Nothing is observed, and
 * nothing costs, unless an actor is created with this observer.
 */
import type { AnyStateNode, InspectionEvent, Observer, StateValue } from 'xstate';
import { describeTransition } from './transitions.js';

export interface TransitionRecord {
  /** The actor's id, e.g. `session-12`. */
  actor: string;
  /** The machine's id, e.g. `session`. */
  machine: string;
  from: string;
  /** Event type, `after <delay>` for a timeout, or `always` for an eventless step. */
  event: string;
  to: string;
  /** Key of the transition definition (see transitions.ts). */
  key: string;
  /** False for a transition without a target: its actions ran, the state did not change. */
  changesState: boolean;
}

export function stateText(value: StateValue): string {
  if (typeof value === 'string') return value;
  return Object.entries(value)
    .map(([key, inner]) => (inner && (typeof inner === 'string' || Object.keys(inner).length) ? `${key}.${stateText(inner as StateValue)}` : key))
    .join(',');
}

interface Transition {
  source: AnyStateNode;
  eventType: string;
  target?: readonly AnyStateNode[] | undefined;
}

/** An inspection observer calling `onTransition` for every transition any actor takes. */
export function transitionRecorder(onTransition: (record: TransitionRecord) => void): (event: InspectionEvent) => void {
  const lastState = new WeakMap<object, string>();
  return (inspection) => {
    if (inspection.type === '@xstate.snapshot' && !lastState.has(inspection.actorRef)) {
      const value = (inspection.snapshot as { value?: StateValue }).value;
      if (value !== undefined) lastState.set(inspection.actorRef, stateText(value));
      return;
    }
    if (inspection.type !== '@xstate.microstep') return;
    const value = (inspection.snapshot as { value?: StateValue }).value;
    if (value === undefined) return;
    const to = stateText(value);
    const from = lastState.get(inspection.actorRef) ?? '(initial)';
    lastState.set(inspection.actorRef, to);
    for (const transition of inspection._transitions as Transition[]) {
      const described = describeTransition(transition);
      if (described === null) continue;
      const { key } = described;
      // A wildcard handler (`CLIENT.*`) took it: the record names the event that came, not the descriptor.
      const event = described.event.endsWith('*') ? inspection.event.type : described.event;
      const changesState = Boolean(transition.target?.length);
      onTransition({ actor: (inspection.actorRef as { id?: string }).id ?? '', machine: transition.source.machine.id, from, event, to, key, changesState });
    }
  };
}

export type InspectObserver = Observer<InspectionEvent> | ((event: InspectionEvent) => void);

/** One observer for all given ones; undefined when none is given (inspection then costs nothing). */
export function combineObservers(observers: Array<InspectObserver | undefined>): ((event: InspectionEvent) => void) | undefined {
  const present = observers.filter((o): o is InspectObserver => o !== undefined);
  if (present.length === 0) return undefined;
  const calls = present.map((o) => (typeof o === 'function' ? o : (event: InspectionEvent) => o.next?.(event)));
  return (event) => {
    for (const call of calls) call(event);
  };
}
