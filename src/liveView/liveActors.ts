/**
 * What the live view knows about the running machines, fed by the actors' inspection events: each actor's
 * current state, the states it has been in (each once, in the order first entered) and its recent transitions
 * (event types and state names only, never payload). Actors that reach a final state are forgotten.
 */
import type { InspectionEvent, StateValue } from 'xstate';
import { stateText, transitionRecorder, type TransitionRecord } from '../machineTools/trace.js';

export const RECENT_TRANSITIONS = 12;
/**
 * States kept per actor in `visited`. Each state is listed once, so a machine's own state count bounds the list
 * (the session machine has about 20); this cap only guards against a machine with parallel regions, whose
 * combinations could be many.
 */
export const MAX_VISITED_STATES = 64;

export interface LiveTransition {
  from: string;
  event: string;
  to: string;
  /** Milliseconds since the epoch. */
  at: number;
}

export interface LiveActor {
  /** e.g. `session-12`, `server`. */
  actor: string;
  machine: string;
  /** Full state path, e.g. `bufferingInquire.answering`. */
  state: string;
  /** Every state it has been in, each once, in the order first entered: its path through the machine. */
  visited: string[];
  /** Transitions it has taken so far (`recent` keeps the last few). */
  transitions: number;
  recent: LiveTransition[];
}

export type LiveChange =
  | { type: 'opened'; actor: LiveActor }
  | { type: 'transition'; actor: string; transition: LiveTransition }
  | { type: 'ended'; actor: string };

export class LiveActors {
  private readonly actors = new Map<string, LiveActor>();
  private readonly listeners = new Set<(change: LiveChange) => void>();
  private readonly recordTransition = transitionRecorder((record) => this.onTransition(record));

  /** The inspection observer to give the proxy. */
  readonly inspect = (event: InspectionEvent): void => {
    if (event.type === '@xstate.snapshot') {
      const id = (event.actorRef as { id?: string }).id ?? '';
      const snapshot = event.snapshot as { value?: StateValue; status?: string; machine?: { id: string } };
      if (!this.actors.has(id) && snapshot.status === 'active' && snapshot.value !== undefined) {
        const state = stateText(snapshot.value);
        const actor: LiveActor = { actor: id, machine: snapshot.machine?.id ?? id, state, visited: [state], transitions: 0, recent: [] };
        this.actors.set(id, actor);
        this.emit({ type: 'opened', actor });
      } else if (snapshot.status === 'done' && this.actors.delete(id)) {
        this.emit({ type: 'ended', actor: id });
      }
    }
    this.recordTransition(event);
  };

  list(): LiveActor[] {
    return [...this.actors.values()];
  }

  subscribe(listener: (change: LiveChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private onTransition(record: TransitionRecord): void {
    if (!record.changesState) return;
    const actor = this.actors.get(record.actor);
    if (!actor) return;
    const transition: LiveTransition = { from: record.from, event: record.event, to: record.to, at: Date.now() };
    actor.state = record.to;
    actor.transitions += 1;
    if (!actor.visited.includes(record.to) && actor.visited.length < MAX_VISITED_STATES) actor.visited.push(record.to);
    actor.recent.push(transition);
    if (actor.recent.length > RECENT_TRANSITIONS) actor.recent.shift();
    this.emit({ type: 'transition', actor: record.actor, transition });
  }

  private emit(change: LiveChange): void {
    for (const listener of this.listeners) listener(change);
  }
}
