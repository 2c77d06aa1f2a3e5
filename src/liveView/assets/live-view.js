// The live view page: shows the machines' lifecycle drawings (drawn ahead of time, fetched from the proxy), each
// scaled to fit its pane whole; lights up the boxes live actors are in, with a badge counting the sessions in
// each; lists the open sessions; and for the session selected in the list, numbers the boxes it has been in and
// lists its path and its recent transitions. Everything else arrives from /events (Server-Sent Events).
'use strict';

const actors = new Map(); // actor id -> { actor, machine, state, visited, transitions, recent }
const stats = new Map(); // session id -> SessionInfo
const diagrams = new Map(); // machine id -> { svg, nodes: Map(mermaid state id -> [svg group]), overlay, frames }
const drawnStates = new Map(); // machine id -> { state path -> [mermaid state ids of the boxes that show it] }
/** Machines with one actor each (the listener, a bridge link): drawn with their state, not counted. */
const ONE_ACTOR = new Set(['server', 'link']);
const RECENT = 12;
const MAX_VISITED = 64;
// The session machine is the large one; the others sit beside the session list. Only sessions are counted on the
// drawing (the server is one actor).
const MAIN_MACHINE = 'session';
const SVG_NS = 'http://www.w3.org/2000/svg';
// Badge sizes in screen pixels, whatever the drawing's scale.
const BADGE_RADIUS = 11;
const BADGE_FONT = 13;
// How far a badge's centre sits outside its box's corner, so that it covers less of the name.
const BADGE_OUTSET = 4;

let selected = null; // the selected session's id
let endedSelection = null; // the selected session that has just ended

const $ = (id) => document.getElementById(id);

function sessionIdOf(actorId) {
  return actorId.startsWith('session-') ? actorId.slice('session-'.length) : null;
}

// The boxes that show one state path (`a.b.c`), outermost first: as the server says for the drawn view (a
// collapsed box stands for the states inside it), else the nested Mermaid states a, a__b, a__b__c.
function boxesOfPath(machine, statePath) {
  const drawn = drawnStates.get(machine) ?? {};
  if (drawn[statePath]) return drawn[statePath];
  const parts = statePath.split('.');
  return parts.map((_, i) => parts.slice(0, i + 1).join('__'));
}

// Every box that shows a state (`a.b.c`, or `a.b,c.d` for parallel regions).
function mermaidIds(machine, stateText) {
  return stateText.split(',').flatMap((statePath) => boxesOfPath(machine, statePath));
}

// The innermost box of each region: where the state itself is drawn.
function innermostIds(machine, stateText) {
  return stateText.split(',').map((statePath) => boxesOfPath(machine, statePath).at(-1));
}

// The boxes an actor has been in, numbered in the order it first entered them.
function pathSteps(actor) {
  const steps = new Map();
  for (const state of actor.visited ?? [actor.state]) {
    for (const id of innermostIds(actor.machine, state)) if (!steps.has(id)) steps.set(id, steps.size + 1);
  }
  return steps;
}

function selectedActor() {
  return selected === null ? undefined : actors.get(`session-${selected}`);
}

async function drawDiagrams(list) {
  // Fetched before anything is replaced, so that a redraw does not flash an empty page.
  const drawings = await Promise.all(
    list.map(async (d) => {
      const response = await fetch(d.url);
      if (!response.ok) throw new Error(`${d.url}: ${response.status}`);
      return { ...d, text: await response.text() };
    }),
  );
  $('main-diagram').replaceChildren();
  $('side-diagrams').replaceChildren();
  diagrams.clear();
  drawnStates.clear();
  for (const { name, url, text, drawnStates: boxesOfStates } of drawings) {
    drawnStates.set(name, boxesOfStates ?? {});
    const main = name === MAIN_MACHINE;
    const box = document.createElement('div');
    box.className = 'diagram';
    box.dataset.machine = name;
    const title = document.createElement('h2');
    title.textContent = `${name} machine`;
    const count = document.createElement('span');
    count.className = 'count';
    count.dataset.liveCount = name;
    title.append(count);
    if (main) {
      title.append(legend());
      // Scaled to fit, the event names on the arrows are too small to read: the drawing at its own size has them.
      const full = document.createElement('a');
      full.href = url;
      full.target = '_blank';
      full.rel = 'noopener';
      full.className = 'full-size';
      full.textContent = 'full size ↗';
      full.title = 'the drawing at its own size, where the events on the arrows can be read (not live)';
      title.append(full);
    }
    box.append(title);
    const holder = document.createElement('div');
    holder.className = 'canvas';
    holder.innerHTML = text;
    const svg = holder.querySelector('svg');
    box.append(holder);
    $(main ? 'main-diagram' : 'side-diagrams').append(box);
    if (!svg) continue;
    // Scaled to fit its pane whole (the view box keeps its proportions).
    svg.removeAttribute('width');
    svg.removeAttribute('height');
    svg.style.maxWidth = '';
    svg.setAttribute('preserveAspectRatio', 'xMidYMid meet');
    // Drawn by Mermaid ahead of time with this id, which prefixes its element ids.
    const pattern = new RegExp(`^diagram-${name}-state-(.+)-\\d+$`);
    const nodes = new Map();
    for (const group of svg.querySelectorAll('g[id]')) {
      const match = pattern.exec(group.id);
      if (!match) continue;
      const groups = nodes.get(match[1]) ?? [];
      groups.push(group);
      nodes.set(match[1], groups);
    }
    const overlay = document.createElementNS(SVG_NS, 'g');
    overlay.setAttribute('class', 'overlay');
    svg.append(overlay);
    diagrams.set(name, { svg, nodes, overlay, frames: new Map() });
    // The badges keep their size on screen when the pane (and so the drawing's scale) changes.
    new ResizeObserver(() => drawOverlay(name)).observe(holder);
  }
}

function legend() {
  const span = document.createElement('span');
  span.className = 'legend';
  const live = document.createElement('span');
  live.innerHTML = '<span class="swatch live"></span>';
  live.append('live: the number of sessions in each box');
  const path = document.createElement('span');
  path.innerHTML = '<span class="swatch path"></span>';
  path.append("selected session's path, in order");
  span.append(live, path);
  return span;
}

// A box's frame in its drawing's own coordinates (the view box), whatever the scale it is shown at.
function frameOf(diagram, id) {
  const known = diagram.frames.get(id);
  if (known) return known;
  const group = diagram.nodes.get(id)?.[0];
  if (!group) return undefined;
  const shape = group.querySelector(':scope > g > rect.outer') ?? group;
  const toDrawing = diagram.svg.getScreenCTM()?.inverse().multiply(shape.getScreenCTM() ?? new DOMMatrix());
  if (!toDrawing) return undefined;
  const b = shape.getBBox();
  const a = new DOMPoint(b.x, b.y).matrixTransform(toDrawing);
  const z = new DOMPoint(b.x + b.width, b.y + b.height).matrixTransform(toDrawing);
  const frame = { x: a.x, y: a.y, width: z.x - a.x, height: z.y - a.y };
  diagram.frames.set(id, frame);
  return frame;
}

function badge(className, cx, cy, unit, label, tooltip) {
  const g = document.createElementNS(SVG_NS, 'g');
  g.setAttribute('class', className);
  const wide = label.length > 1;
  const circle = document.createElementNS(SVG_NS, wide ? 'rect' : 'circle');
  const r = BADGE_RADIUS * unit;
  if (wide) {
    const w = r * (1.2 + 0.6 * label.length);
    Object.entries({ x: cx - w / 2, y: cy - r, width: w, height: 2 * r, rx: r }).forEach(([k, v]) => circle.setAttribute(k, String(v)));
  } else {
    Object.entries({ cx, cy, r }).forEach(([k, v]) => circle.setAttribute(k, String(v)));
  }
  circle.setAttribute('stroke-width', String(2 * unit));
  const text = document.createElementNS(SVG_NS, 'text');
  text.setAttribute('x', String(cx));
  text.setAttribute('y', String(cy));
  text.setAttribute('font-size', String(BADGE_FONT * unit));
  text.textContent = label;
  const title = document.createElementNS(SVG_NS, 'title');
  title.textContent = tooltip;
  g.append(circle, text, title);
  return g;
}

// Per machine, how many of its actors are in each box.
function occupancy(machine) {
  const counts = new Map();
  let live = 0;
  for (const a of actors.values()) {
    if (a.machine !== machine) continue;
    live += 1;
    for (const id of new Set(mermaidIds(machine, a.state))) counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return { counts, live };
}

// The badges: the count of sessions on each live box's top right corner, the selected session's step numbers on
// the top left corner of each box it has been in.
function drawOverlay(machine) {
  const diagram = diagrams.get(machine);
  if (!diagram) return;
  diagram.overlay.replaceChildren();
  const scale = diagram.svg.getScreenCTM()?.a;
  if (!scale) return;
  const unit = 1 / scale;
  if (!ONE_ACTOR.has(machine)) {
    for (const [id, n] of occupancy(machine).counts) {
      const frame = frameOf(diagram, id);
      if (!frame) continue;
      const g = badge('live-count', frame.x + frame.width + BADGE_OUTSET * unit, frame.y - BADGE_OUTSET * unit, unit, String(n), `${n} session${n === 1 ? '' : 's'} in ${id.replaceAll('__', '.')}`);
      g.dataset.box = id;
      g.dataset.count = String(n);
      diagram.overlay.append(g);
    }
  }
  const actor = selectedActor();
  if (actor?.machine === machine) {
    for (const [id, step] of pathSteps(actor)) {
      const frame = frameOf(diagram, id);
      if (!frame) continue;
      const g = badge('path-step', frame.x - BADGE_OUTSET * unit, frame.y - BADGE_OUTSET * unit, unit, String(step), `session ${selected}: step ${step}, ${id.replaceAll('__', '.')}`);
      g.dataset.box = id;
      g.dataset.step = String(step);
      diagram.overlay.append(g);
    }
  }
}

function highlight() {
  const actor = selectedActor();
  for (const [machine, diagram] of diagrams) {
    const { counts, live } = occupancy(machine);
    const steps = actor?.machine === machine ? pathSteps(actor) : new Map();
    const current = new Set(actor?.machine === machine ? innermostIds(machine, actor.state) : []);
    for (const [id, groups] of diagram.nodes) {
      const n = counts.get(id) ?? 0;
      for (const g of groups) {
        g.classList.toggle('live', n > 0);
        g.dataset.live = String(n);
        g.classList.toggle('visited', steps.has(id));
        g.classList.toggle('current', current.has(id));
        if (steps.has(id)) g.dataset.step = String(steps.get(id));
        else delete g.dataset.step;
      }
    }
    const heading = document.querySelector(`[data-live-count="${machine}"]`);
    if (heading) heading.textContent = ONE_ACTOR.has(machine) ? '' : `${live} live`;
    drawOverlay(machine);
  }
}

function formatAge(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function sessionRow(sessionId) {
  let row = document.querySelector(`tr[data-session="${sessionId}"]`);
  if (row) return row;
  row = document.createElement('tr');
  row.dataset.session = sessionId;
  row.className = 'session';
  row.tabIndex = 0;
  const rows = $('session-rows');
  // Sessions in id order.
  const after = [...rows.querySelectorAll('tr.session')].find((r) => Number(r.dataset.session) > Number(sessionId));
  rows.insertBefore(row, after ?? null);
  return row;
}

function renderSession(sessionId) {
  const actor = actors.get(`session-${sessionId}`);
  if (!actor) return;
  const info = stats.get(sessionId);
  const row = sessionRow(sessionId);
  row.dataset.state = actor.state;
  row.dataset.transitions = String(actor.transitions ?? 0);
  row.classList.toggle('selected', sessionId === selected);
  row.setAttribute('aria-selected', String(sessionId === selected));
  row.replaceChildren(
    // A session that came over a bridge link says so.
    cell(info?.link ? `${sessionId} · ${info.link}` : sessionId),
    cell(actor.state, 'state'),
    cell(actor.recent.at(-1)?.event ?? '–'),
    cell(commandText(info)),
    cell(info ? formatAge(info.ageMs) : '–'),
    cell(info ? formatBytes(info.bytesFromClient) : '–'),
    cell(info ? formatBytes(info.bytesToClient) : '–'),
  );
}

const CONSENT_WORDS = { prompt: 'approved', window: 'approved (window)', refused: 'refused', timedOut: 'not answered', unavailable: 'no prompt' };

// The command, and (with --confirm) the prompt the person has in front of them, or their last decision.
function commandText(info) {
  if (!info) return '–';
  const command = info.command || '–';
  const pending = info.pendingConsent;
  if (pending) return `${command} · asking the person: ${pending.operation}${pending.keygrip ? ` with ${pending.keygrip.slice(0, 8)}…` : ''}`;
  const last = info.lastConsent;
  return last ? `${command} · ${last.operation} ${CONSENT_WORDS[last.decision] ?? last.decision}` : command;
}

function listItem(text, value) {
  const li = document.createElement('li');
  li.textContent = text;
  if (value !== undefined) li.value = value;
  return li;
}

function renderSelection() {
  const actor = selectedActor();
  $('selected-id').textContent = actor ? selected : '';
  $('deselect').hidden = !actor;
  $('selection-body').hidden = !actor;
  $('selection-hint').hidden = Boolean(actor);
  $('selection-hint').textContent = endedSelection
    ? `Session ${endedSelection} ended. Select another to mark its path on the diagram.`
    : 'None selected. Select a session to mark its path on the diagram.';
  document.body.dataset.selected = actor ? selected : '';
  if (!actor) return;
  $('selected-state').textContent = actor.state;
  // Each state entered, numbered as its box is on the drawing (states drawn in one box share its number).
  const steps = pathSteps(actor);
  $('selected-path').replaceChildren(
    ...(actor.visited ?? [actor.state]).map((state) => {
      const li = listItem(state, steps.get(innermostIds(actor.machine, state)[0]));
      li.dataset.state = state;
      if (state === actor.state) li.className = 'now';
      return li;
    }),
  );
  const list = $('selected-transitions');
  list.replaceChildren(
    ...actor.recent.map((t) => {
      const li = listItem(`${t.from} → ${t.to} `);
      const event = document.createElement('span');
      event.className = 'event';
      event.textContent = `(${t.event})`;
      li.append(event);
      return li;
    }),
  );
  const total = actor.transitions ?? actor.recent.length;
  list.start = Math.max(1, total - actor.recent.length + 1);
  $('selected-transition-count').textContent = total > actor.recent.length ? `(${total}; the last ${actor.recent.length})` : `(${total})`;
}

function select(sessionId) {
  selected = sessionId !== null && actors.has(`session-${sessionId}`) ? sessionId : null;
  endedSelection = null;
  for (const row of document.querySelectorAll('tr.session')) {
    const on = row.dataset.session === selected;
    row.classList.toggle('selected', on);
    row.setAttribute('aria-selected', String(on));
  }
  renderSelection();
  highlight();
}

function toggleRow(row) {
  if (!row) return;
  select(row.dataset.session === selected ? null : row.dataset.session);
}

function removeSession(sessionId) {
  stats.delete(sessionId);
  document.querySelector(`tr[data-session="${sessionId}"]`)?.remove();
  if (sessionId === selected) {
    selected = null;
    endedSelection = sessionId;
    renderSelection();
  }
}

function updateCount() {
  const n = [...actors.keys()].filter((id) => sessionIdOf(id) !== null).length;
  $('session-count').textContent = String(n);
  $('no-sessions').hidden = n > 0;
  // The proxy's listener, or a bridge link (forward): the one actor that is not a session.
  const front = actors.get('server') ?? actors.get('link');
  if (front) $('status').textContent = `${front.actor}: ${front.state}`;
}

function applyStats(list) {
  stats.clear();
  for (const info of list) stats.set(info.sessionId, info);
  for (const id of actors.keys()) {
    const sessionId = sessionIdOf(id);
    if (sessionId !== null) renderSession(sessionId);
  }
}

$('session-rows').addEventListener('click', (e) => toggleRow(e.target.closest('tr.session')));
$('session-rows').addEventListener('keydown', (e) => {
  if (e.key !== 'Enter' && e.key !== ' ') return;
  e.preventDefault();
  toggleRow(e.target.closest('tr.session'));
});
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && selected !== null) select(null);
});
$('deselect').addEventListener('click', () => select(null));

const events = new EventSource('/events');
events.addEventListener('init', async (e) => {
  const data = JSON.parse(e.data);
  document.body.dataset.ready = 'false';
  $('paths').textContent = `${data.socketPath} → ${data.upstreamPath}`;
  $('status').classList.remove('offline');
  for (const row of document.querySelectorAll('tr.session')) row.remove();
  actors.clear();
  for (const a of data.actors) actors.set(a.actor, a);
  if (selected !== null && !actors.has(`session-${selected}`)) selected = null;
  applyStats(data.sessions);
  updateCount();
  try {
    await drawDiagrams(data.diagrams);
  } catch (error) {
    $('status').textContent = `could not load the drawings: ${error.message}`;
    $('status').classList.add('offline');
    return;
  }
  renderSelection();
  highlight();
  // The drawings, the sessions and their counts are on screen.
  document.body.dataset.ready = 'true';
});
events.addEventListener('opened', (e) => {
  const { actor } = JSON.parse(e.data);
  actors.set(actor.actor, actor);
  const sessionId = sessionIdOf(actor.actor);
  if (sessionId !== null) renderSession(sessionId);
  updateCount();
  highlight();
});
events.addEventListener('transition', (e) => {
  const { actor: id, transition } = JSON.parse(e.data);
  const actor = actors.get(id);
  if (!actor) return;
  actor.state = transition.to;
  actor.transitions = (actor.transitions ?? 0) + 1;
  actor.visited ??= [];
  // As the server keeps it: each state once, in the order first entered.
  if (!actor.visited.includes(transition.to) && actor.visited.length < MAX_VISITED) actor.visited.push(transition.to);
  actor.recent.push(transition);
  if (actor.recent.length > RECENT) actor.recent.shift();
  const sessionId = sessionIdOf(id);
  if (sessionId !== null) renderSession(sessionId);
  if (sessionId !== null && sessionId === selected) renderSelection();
  updateCount();
  highlight();
});
events.addEventListener('ended', (e) => {
  const { actor: id } = JSON.parse(e.data);
  actors.delete(id);
  const sessionId = sessionIdOf(id);
  if (sessionId !== null) removeSession(sessionId);
  updateCount();
  highlight();
});
events.addEventListener('sessions', (e) => applyStats(JSON.parse(e.data)));
events.onerror = () => {
  $('status').textContent = 'disconnected from the proxy; retrying…';
  $('status').classList.add('offline');
};
