/**
 * Views of a machine a person can read, drawn as Mermaid stateDiagram-v2 from its state nodes (the machine stays
 * the only source), shaped by a small per-machine view specification (viewSpecs.ts):
 *
 * - the **lifecycle**: the top-level states, composite ones collapsed into one box where the spec says so; one
 *   arrow per pair of boxes listing its events (guards left out, except an eventless step's condition);
 * - **detail views**, one per composite state or concern: its children and the transitions among them, with the
 *   states outside drawn as small dashed stubs (where it is entered from, where it leads).
 *
 * Shared transitions are drawn once: the machine root's own (STOP, …) from an "any state" box, and a transition
 * every sibling state takes alike (the same event to the same state, in all of them except those that handle the
 * event otherwise) from their parent's box. Timeouts (`after`) and eventless steps stay with their own state:
 * each state's timer is its own. Transitions without a target change no state and are not drawn.
 */
import type { AnyStateMachine } from 'xstate';
import { stateGraph, within, type GraphState, type StateGraph, type StateGroup } from './stateGraph.js';

export interface ViewSpec {
  /** Boxes around sibling states the machine does not group itself (a concern, e.g. "a command in flight"). */
  groups?: Record<string, StateGroup>;
  lifecycle: {
    /** States (or groups) drawn as one box, by path (`connecting`, `bufferingInquire`). */
    collapse?: string[];
    /** Mermaid's layout direction: top to bottom (its default) or left to right. */
    direction?: 'TB' | 'LR';
  };
  details?: DetailViewSpec[];
  /** States drawn as failures (tinted), by path. */
  failures?: string[];
}

export interface DetailViewSpec {
  /** File-name part: `session-<name>.mmd`. */
  name: string;
  title: string;
  /** The composite state (or group) drawn, by path. */
  focus: string;
  /** States inside it drawn as one box (they have a view of their own). */
  collapse?: string[];
}

export interface DiagramView {
  /** `lifecycle`, or a detail view's name. */
  name: string;
  title: string;
  mermaid: string;
  /** For each state path (`bufferingInquire.answering`), the drawn boxes that show it: itself or its collapsed box, and its drawn parents. */
  drawnStates: Record<string, string[]>;
}

/** The lifecycle view, then one view per detail the spec names. */
export function diagramViews(machine: AnyStateMachine, spec: ViewSpec = { lifecycle: {} }): DiagramView[] {
  const graph = stateGraph(machine, spec.groups);
  const failures = (spec.failures ?? []).map((path) => {
    const state = graph.byPath.get(path);
    if (!state) throw new Error(`${machine.id}: no state ${path}`);
    return state;
  });
  const views = [draw(graph, { name: 'lifecycle', title: `${machine.id} lifecycle`, container: graph.root, collapse: spec.lifecycle.collapse ?? [], failures, direction: spec.lifecycle.direction })];
  for (const detail of spec.details ?? []) {
    const focus = graph.byPath.get(detail.focus);
    if (!focus || focus.children.length === 0) throw new Error(`${machine.id} view ${detail.name}: ${detail.focus} is not a composite state or group`);
    views.push(draw(graph, { name: detail.name, title: detail.title, container: focus, collapse: detail.collapse ?? [], failures }));
  }
  return views;
}

export function lifecycleView(machine: AnyStateMachine, spec?: ViewSpec): DiagramView {
  return diagramViews(machine, spec ? { ...spec, details: [] } : undefined)[0]!;
}

const anyId = (box: GraphState) => (box.kind === 'root' ? 'anyState' : `any__${box.drawnId}`);
const LABEL_LINE = 26;

type Endpoint =
  | { kind: 'state'; state: GraphState }
  /** Any state within `state` (the root: any state at all): a transition its states share. */
  | { kind: 'any'; state: GraphState }
  /** Outside the view: where it is entered from, or where it leads. */
  | { kind: 'from' | 'to'; state: GraphState };

interface Step {
  from: Endpoint;
  to: Endpoint;
  event: string;
  guard: string;
  fallback: boolean;
}

interface Frame {
  name: string;
  title: string;
  /** The machine's root for the lifecycle; the composite state or group a detail view shows. */
  container: GraphState;
  collapse: string[];
  failures: GraphState[];
  direction?: 'TB' | 'LR';
}

/**
 * Mermaid settings for the lifecycle views, in the text's front matter. The live view (`--ui`) shows them whole,
 * scaled to fit a screen beside its session list: the state names are set large and the event labels small, with
 * tighter spacing, so that the boxes stay readable at about half size.
 */
const LIFECYCLE_STYLE = [
  '---',
  'config:',
  '  themeCSS: ".nodeLabel, .nodeLabel p { font-size: 24px; } .edgeLabel, .edgeLabel p { font-size: 12px; line-height: 1.2; }"',
  '  state:',
  '    nodeSpacing: 30',
  '    rankSpacing: 30',
  '---',
];

function draw(graph: StateGraph, frame: Frame): DiagramView {
  const lifecycle = frame.container === graph.root;
  const collapsed = new Set(
    frame.collapse.map((path) => {
      const state = graph.byPath.get(path);
      if (!state || !within(state, frame.container) || state === frame.container) throw new Error(`${graph.machineId} view ${frame.name}: cannot collapse ${path}`);
      return state;
    }),
  );
  /** The box a state is drawn in: its outermost collapsed ancestor, else itself; undefined outside the view. */
  const boxOf = (state: GraphState): GraphState | undefined => {
    if (!within(state, frame.container)) return undefined;
    let box = state;
    for (let s: GraphState | undefined = state; s && s !== frame.container; s = s.parent) if (collapsed.has(s)) box = s;
    return box;
  };
  const expanded = (state: GraphState) => state.children.length > 0 && !collapsed.has(state) && boxOf(state) === state;

  /** Entering a drawn composite enters its initial state (Mermaid draws arrows to composites poorly). */
  const entered = (box: GraphState): GraphState => (expanded(box) && box.initial ? entered(box.initial) : box);

  const steps: Step[] = [];
  for (const t of graph.transitions) {
    const source = t.source;
    let from: Endpoint;
    if (source === graph.root) {
      if (!lifecycle) continue;
      from = { kind: 'any', state: source };
    } else if (source !== frame.container && within(frame.container, source)) {
      continue; // a parent's transition: drawn in the parent's view
    } else {
      const box = boxOf(source);
      if (!box) from = { kind: 'from', state: outermostOutside(source, frame.container) };
      else from = expanded(box) ? { kind: 'any', state: box } : { kind: 'state', state: box };
    }
    for (const target of t.targets) {
      const box = boxOf(target);
      const to: Endpoint = box ? { kind: 'state', state: entered(box) } : { kind: 'to', state: target };
      if (from.kind === 'from' && to.kind === 'to') continue;
      if (from.kind === 'state' && to.kind === 'state' && from.state === to.state) {
        // A state re-entering itself is drawn in detail; a move inside a collapsed box is not.
        if (lifecycle || source !== target || boxOf(source) !== source) continue;
      }
      steps.push({ from, to, event: t.event, guard: t.guard, fallback: t.fallback });
    }
  }

  const handled = eventsHandledWithin(graph);
  for (const box of containers(frame.container, expanded)) liftShared(box, steps, handled);

  const arrows = mergeEntries(groupSteps(steps));
  const out = lifecycle ? [...LIFECYCLE_STYLE, 'stateDiagram-v2'] : ['stateDiagram-v2'];
  if (frame.direction) out.push(`  direction ${frame.direction}`);
  const classes = new Map<string, string[]>();
  const classify = (id: string, cls: string) => classes.set(cls, [...(classes.get(cls) ?? []), id]);
  const ids = new Set<string>();
  const declare = (id: string) => {
    if (ids.has(id)) throw new Error(`${graph.machineId} view ${frame.name}: two boxes named ${id}`);
    ids.add(id);
  };

  const sharedBoxes = new Set(arrows.filter((a) => a.from.kind === 'any').map((a) => a.from.state));
  const renderChildren = (parent: GraphState, indent: string) => {
    if (parent.initial) out.push(`${indent}[*] --> ${boxOf(parent.initial)!.drawnId}`);
    parent.children.forEach((child, index) => {
      // Mermaid separates regions only inside a composite state (a parallel root's are drawn side by side).
      if (parent.parallel && parent.kind !== 'root' && index > 0) out.push(`${indent}--`);
      declare(child.drawnId);
      if (expanded(child)) {
        out.push(`${indent}state "${mermaidText(child.label)}" as ${child.drawnId} {`);
        renderChildren(child, `${indent}  `);
        out.push(`${indent}}`);
      } else {
        out.push(`${indent}state "${mermaidText(child.label)}" as ${child.drawnId}`);
        if (collapsed.has(child)) classify(child.drawnId, 'collapsed');
      }
      if (child.final) out.push(`${indent}${child.drawnId} --> [*]`);
      if (frame.failures.includes(child)) classify(child.drawnId, 'failure');
    });
    // The view's own box gets its "anywhere in" box outside it, below: inside, Mermaid's layout would rank it
    // with the first states and set the stubs it leads to beside them.
    if (parent !== frame.container || lifecycle) declareShared(parent, indent);
  };
  const declareShared = (parent: GraphState, indent: string) => {
    if (!sharedBoxes.has(parent)) return;
    const id = anyId(parent);
    declare(id);
    out.push(`${indent}state "${parent === graph.root ? 'any state' : `anywhere in ${mermaidText(parent.label)}`}" as ${id}`);
    classify(id, 'shared');
  };
  const endpointId = (e: Endpoint): string => {
    if (e.kind === 'any') return anyId(e.state);
    if (e.kind === 'state') return e.state.drawnId;
    return `${e.kind}__${e.state.drawnId}`;
  };
  // The lifecycle names a guard only where it tells apart where one event leads.
  const targetsOf = new Map<string, Set<string>>();
  for (const step of steps) {
    const key = `${endpointKey(step.from)}\u0000${step.event}`;
    targetsOf.set(key, (targetsOf.get(key) ?? new Set()).add(endpointKey(step.to)));
  }
  const renderArrows = (entries: boolean) => {
    for (const arrow of arrows) {
      if ((arrow.from.kind === 'from') !== entries) continue;
      const showGuards = (event: string) => !lifecycle || (targetsOf.get(`${endpointKey(arrow.from)}\u0000${event}`)?.size ?? 0) > 1;
      const label = arrowLabel(arrow.steps, showGuards);
      out.push(`  ${endpointId(arrow.from)} --> ${endpointId(arrow.to)}${label ? ` : ${mermaidText(label)}` : ''}`);
    }
  };
  // Stubs for the states outside: those it is entered from first (drawn above it), those it leads to last.
  const renderStubs = (kind: 'from' | 'to') => {
    for (const arrow of arrows) {
      const end = kind === 'from' ? arrow.from : arrow.to;
      if (end.kind !== kind) continue;
      const id = endpointId(end);
      if (ids.has(id)) continue;
      declare(id);
      const names = kind === 'from' && arrow.fromNames.length > 0 ? arrow.fromNames : [stubName(end.state)];
      out.push(`  state "${names.map(mermaidText).join(',<br>')}" as ${id}`);
      classify(id, frame.failures.includes(end.state) ? 'failureStub' : 'stub');
    }
  };
  // Arrows in from outside come first: Mermaid's layout then puts their stubs before (above, left of) the view.
  renderStubs('from');
  renderArrows(true);
  if (lifecycle) {
    renderChildren(frame.container, '  ');
  } else {
    declare(frame.container.drawnId);
    out.push(`  state "${mermaidText(frame.container.label)}" as ${frame.container.drawnId} {`);
    renderChildren(frame.container, '    ');
    out.push('  }');
    declareShared(frame.container, '  ');
  }
  renderStubs('to');
  renderArrows(false);
  for (const [cls, members] of classes) out.push(`  classDef ${cls} ${CLASS_STYLES[cls]}`, `  class ${members.join(',')} ${cls}`);

  return { name: frame.name, title: frame.title, mermaid: `${out.join('\n')}\n`, drawnStates: drawnStates(graph, boxOf) };
}

/** Text Mermaid shows as written: `#`, `;` and `"` are its own syntax, written as entity codes. */
function mermaidText(text: string): string {
  return text.replace(/[#;"]/g, (c) => `#${c.charCodeAt(0)};`);
}

/** Where an arrow into a view comes from, as coarse as the view allows: `source`'s ancestor beside the view's. */
function outermostOutside(source: GraphState, container: GraphState): GraphState {
  let outside = source;
  while (outside.parent && !within(container, outside.parent)) outside = outside.parent;
  return outside;
}

const CLASS_STYLES: Record<string, string> = {
  collapsed: 'stroke-width:3px',
  shared: 'fill:#fff,stroke-dasharray:6 3',
  stub: 'fill:#fff,stroke:#aaa,stroke-dasharray:3 3,color:#666',
  failure: 'fill:#fbe4e4',
  failureStub: 'fill:#fbe4e4,stroke:#aaa,stroke-dasharray:3 3,color:#666',
};

/** Expanded composite boxes, innermost first: a transition lifted into a box can be lifted again into its parent. */
function containers(container: GraphState, expanded: (s: GraphState) => boolean): GraphState[] {
  const inner = container.children.filter(expanded).flatMap((child) => containers(child, expanded));
  return [...inner, container];
}

/** Every event some transition (with a target or not) handles at or below each state. */
function eventsHandledWithin(graph: StateGraph): (state: GraphState) => Set<string> {
  const cache = new Map<GraphState, Set<string>>();
  return (state) => {
    let events = cache.get(state);
    if (!events) {
      events = new Set(graph.transitions.filter((t) => within(t.source, state)).map((t) => t.event));
      cache.set(state, events);
    }
    return events;
  };
}

/**
 * Draw once from `onto` what the children of `box` all do alike: the same event to the same place, in at least
 * two of them and in more of them than not, when every other child handles that event itself (so the shared
 * arrow misleads about none that would ignore it). Timeouts and eventless steps belong to their own state.
 */
function liftShared(box: GraphState, steps: Step[], handled: (s: GraphState) => Set<string>): void {
  const children = box.children.filter((c) => !c.final && !c.transient);
  const onto: Endpoint = { kind: 'any', state: box };
  /** The child a step leaves from: drawn as itself, or (a drawn composite) from its "anywhere in" box. */
  // Within a box, a shared arrow to one of its own states would pull the drawing out of its order: root only.
  const leavesBox = (to: Endpoint) => box.kind === 'root' || to.kind === 'to' || (to.kind === 'state' && !within(to.state, box));
  const childOf = (from: Endpoint) => (from.kind === 'state' || (from.kind === 'any' && from.state !== box) ? children.find((c) => c === from.state) : undefined);
  // Per child: its steps to each (event, place), and the conditions on them, which must be alike to be shared.
  const perChild = new Map<string, Map<GraphState, Step[]>>();
  for (const step of steps) {
    const child = childOf(step.from);
    if (!child || step.event === 'always' || step.event.startsWith('after ') || !leavesBox(step.to)) continue;
    const key = `${step.event}\u0000${endpointKey(step.to)}`;
    const byChild = perChild.get(key) ?? new Map<GraphState, Step[]>();
    byChild.set(child, [...(byChild.get(child) ?? []), step]);
    perChild.set(key, byChild);
  }
  const conditions = (list: Step[]) => [...new Set(list.map((s) => (s.fallback ? '\u0000else' : s.guard)))].sort().join('\u0001');
  for (const byChild of perChild.values()) {
    const alike = new Map<string, GraphState[]>();
    for (const [child, list] of byChild) alike.set(conditions(list), [...(alike.get(conditions(list)) ?? []), child]);
    const [, taking] = [...alike].sort((a, b) => b[1].length - a[1].length)[0]!;
    const others = children.filter((c) => !taking.includes(c));
    const first = byChild.get(taking[0]!)!;
    if (taking.length < 2 || taking.length <= others.length || !others.every((c) => handled(c).has(first[0]!.event))) continue;
    for (const child of taking) for (const step of byChild.get(child)!) steps.splice(steps.indexOf(step), 1);
    for (const step of first) steps.push({ ...step, from: onto });
  }
}

/** A state outside the view by its path; a group by its label. */
function stubName(state: GraphState): string {
  return state.kind === 'group' ? state.label : state.path;
}

function endpointKey(e: Endpoint): string {
  return `${e.kind}:${e.state.path}`;
}

interface Arrow {
  from: Endpoint;
  to: Endpoint;
  steps: Step[];
  /** For an entry stub standing for several outside states: their paths. */
  fromNames: string[];
}

function groupSteps(steps: Step[]): Arrow[] {
  const arrows = new Map<string, Arrow>();
  for (const step of steps) {
    const key = `${endpointKey(step.from)}>${endpointKey(step.to)}`;
    const arrow = arrows.get(key) ?? { from: step.from, to: step.to, steps: [], fromNames: [] };
    arrow.steps.push(step);
    arrows.set(key, arrow);
  }
  return [...arrows.values()];
}

/** Outside states that enter the view the same way (same boxes, same events) share one stub. */
function mergeEntries(arrows: Arrow[]): Arrow[] {
  const entriesBySource = new Map<string, Arrow[]>();
  for (const arrow of arrows) {
    if (arrow.from.kind !== 'from') continue;
    const key = endpointKey(arrow.from);
    entriesBySource.set(key, [...(entriesBySource.get(key) ?? []), arrow]);
  }
  const signature = (entries: Arrow[]) => entries.map((a) => `${endpointKey(a.to)}=${arrowLabel(a.steps, () => true)}`).join('\n');
  const firstWithSignature = new Map<string, Arrow[]>();
  const dropped = new Set<Arrow>();
  for (const entries of entriesBySource.values()) {
    const sig = signature(entries);
    const first = firstWithSignature.get(sig);
    if (!first) {
      firstWithSignature.set(sig, entries);
      continue;
    }
    for (const arrow of first) arrow.fromNames = arrow.fromNames.length ? arrow.fromNames : [stubName((arrow.from as { state: GraphState }).state)];
    for (const arrow of first) arrow.fromNames.push(stubName((entries[0]!.from as { state: GraphState }).state));
    for (const arrow of entries) dropped.add(arrow);
  }
  return arrows.filter((a) => !dropped.has(a));
}

/**
 * The events on one arrow, each once, wrapped onto short lines. The lifecycle leaves guards out, but keeps an
 * eventless step's condition (`[noMoreCommands]`); detail views list the guards of each event, shortened.
 */
function arrowLabel(steps: Step[], showGuards: (event: string) => boolean): string {
  const byEvent = new Map<string, string[]>();
  for (const { event, guard, fallback } of steps) byEvent.set(event, [...(byEvent.get(event) ?? []), fallback ? 'else' : guard && shortGuard(guard, event)]);
  const parts: string[] = [];
  for (const [event, guards] of byEvent) {
    const named = withoutSubsumed([...new Set(guards.filter((g) => g !== ''))]);
    // An unguarded candidate among guarded ones (not an "else") makes the guards moot.
    // So does a lifecycle arrow that every candidate of the event takes (its guard and its "else" lead alike).
    const conditions = guards.includes('') || !(event === 'always' || showGuards(event)) ? '' : `[${named.join(' | ')}]`;
    if (event === 'always') {
      if (conditions) parts.push(conditions);
    } else {
      parts.push(conditions ? `${event} ${conditions}` : event);
    }
  }
  const lines: string[] = [];
  for (const part of parts) {
    const last = lines.length - 1;
    if (last >= 0 && lines[last]!.length + part.length + 2 <= LABEL_LINE) lines[last] += `, ${part}`;
    else lines.push(part);
  }
  return lines.join('<br>');
}

/** `final & owesAnswer` says nothing more than `final` beside it, in a list of when an arrow is taken. */
function withoutSubsumed(conditions: string[]): string[] {
  return conditions.filter((c) => !c.split(' & ').some((part) => part !== c && conditions.includes(part)));
}

/** `agentBusy` on AGENT_CONNECT_FAILED reads as `busy`: a guard's first word that repeats the event's is dropped. */
function shortGuard(guard: string, event: string): string {
  const word = /^[A-Za-z][a-z]*/.exec(event.toLowerCase())?.[0] ?? '';
  return guard
    .split(/( && | \|\| )/)
    .map((part) => {
      if (word && part.startsWith(word) && /^[A-Z]/.test(part.slice(word.length))) return part[word.length]!.toLowerCase() + part.slice(word.length + 1);
      return part;
    })
    .join('')
    .replaceAll(' && ', ' & ');
}

function drawnStates(graph: StateGraph, boxOf: (s: GraphState) => GraphState | undefined): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  for (const state of graph.byPath.values()) {
    if (state.kind !== 'state') continue;
    const parts = state.path.split('.');
    const drawn = parts.map((_, i) => boxOf(graph.byPath.get(parts.slice(0, i + 1).join('.'))!)).filter((b): b is GraphState => b !== undefined);
    if (drawn.length > 0) result[state.path] = [...new Set(drawn.map((b) => b.drawnId))];
  }
  return result;
}
