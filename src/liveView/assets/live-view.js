// The live view page: shows the machines' diagrams (drawn ahead of time, fetched from the proxy), highlights the
// states live actors are in, and lists the open sessions with their recent transitions. Everything else arrives
// from /events (Server-Sent Events).
'use strict';

const actors = new Map(); // actor id -> { actor, machine, state, recent }
const stats = new Map(); // session id -> SessionInfo
const diagramNodes = new Map(); // machine id -> Map(mermaid state id -> [svg group])
const drawnStates = new Map(); // machine id -> { state path -> [mermaid state ids of the boxes that show it] }
const RECENT = 12;

const $ = (id) => document.getElementById(id);

function sessionIdOf(actorId) {
  return actorId.startsWith('session-') ? actorId.slice('session-'.length) : null;
}

// The boxes that show a state (`a.b.c`, or `a.b,c.d` for parallel regions): as the server says for the drawn
// view (a collapsed box stands for the states inside it), else the nested Mermaid states a, a__b, a__b__c.
function mermaidIds(machine, stateText) {
  const drawn = drawnStates.get(machine) ?? {};
  return stateText.split(',').flatMap((statePath) => {
    if (drawn[statePath]) return drawn[statePath];
    const parts = statePath.split('.');
    return parts.map((_, i) => parts.slice(0, i + 1).join('__'));
  });
}

// The session machine is the large one: drawn full width at its natural size (scrollable, or fitted on demand);
// the others sit beside the session list. Each is its lifecycle view: sessions light up its boxes.
const MAIN_MACHINE = 'session';

async function drawDiagrams(diagrams) {
  $('main-diagram').replaceChildren();
  $('side-diagrams').replaceChildren();
  diagramNodes.clear();
  drawnStates.clear();
  for (const { name, url, drawnStates: boxesOfStates } of diagrams) {
    drawnStates.set(name, boxesOfStates ?? {});
    const main = name === MAIN_MACHINE;
    const box = document.createElement('div');
    box.className = main ? 'diagram' : 'diagram fit';
    box.dataset.machine = name;
    const title = document.createElement('h2');
    title.textContent = `${name} machine`;
    const count = document.createElement('span');
    count.className = 'count';
    count.dataset.liveCount = name;
    title.append(count);
    if (main) {
      const fit = document.createElement('button');
      fit.type = 'button';
      fit.textContent = 'fit to width';
      fit.addEventListener('click', () => {
        box.classList.toggle('fit');
        fit.textContent = box.classList.contains('fit') ? 'actual size' : 'fit to width';
      });
      title.append(fit);
    }
    box.append(title);
    // Drawn by Mermaid ahead of time with this id, which prefixes its element ids.
    const renderId = `diagram-${name}`;
    const svg = await (await fetch(url)).text();
    const holder = document.createElement('div');
    holder.className = 'canvas';
    holder.innerHTML = svg;
    const drawn = holder.querySelector('svg');
    // Natural size is the view box.
    if (drawn?.viewBox?.baseVal?.width) drawn.style.width = `${drawn.viewBox.baseVal.width}px`;
    box.append(holder);
    $(main ? 'main-diagram' : 'side-diagrams').append(box);
    const nodes = new Map();
    const pattern = new RegExp(`^${renderId}-state-(.+)-\\d+$`);
    for (const group of holder.querySelectorAll('g[id]')) {
      const match = pattern.exec(group.id);
      if (!match) continue;
      const list = nodes.get(match[1]) ?? [];
      list.push(group);
      nodes.set(match[1], list);
    }
    diagramNodes.set(name, nodes);
  }
  highlight();
}

function highlight() {
  for (const [machine, nodes] of diagramNodes) {
    const occupied = new Map();
    let live = 0;
    for (const a of actors.values()) {
      if (a.machine !== machine) continue;
      live += 1;
      for (const id of new Set(mermaidIds(machine, a.state))) occupied.set(id, (occupied.get(id) ?? 0) + 1);
    }
    for (const [id, groups] of nodes) {
      const n = occupied.get(id) ?? 0;
      for (const g of groups) {
        g.classList.toggle('live', n > 0);
        g.dataset.live = String(n);
      }
    }
    const badge = document.querySelector(`[data-live-count="${machine}"]`);
    if (badge) badge.textContent = machine === 'server' ? '' : `${live} live`;
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
  const details = document.createElement('tr');
  details.className = 'transitions';
  details.dataset.transitionsOf = sessionId;
  const td = document.createElement('td');
  td.colSpan = 6;
  const list = document.createElement('ol');
  list.className = 'recent';
  td.append(list);
  details.append(td);
  const rows = $('session-rows');
  // Sessions in id order.
  const after = [...rows.querySelectorAll('tr.session')].find((r) => Number(r.dataset.session) > Number(sessionId));
  rows.insertBefore(row, after ?? null);
  rows.insertBefore(details, after ?? null);
  return row;
}

function renderSession(sessionId) {
  const actor = actors.get(`session-${sessionId}`);
  if (!actor) return;
  const info = stats.get(sessionId);
  const row = sessionRow(sessionId);
  row.dataset.state = actor.state;
  row.replaceChildren(
    cell(sessionId),
    cell(actor.state, 'state'),
    cell(info?.command || '–'),
    cell(info ? formatAge(info.ageMs) : '–'),
    cell(info ? formatBytes(info.bytesFromClient) : '–'),
    cell(info ? formatBytes(info.bytesToClient) : '–'),
  );
  const list = document.querySelector(`tr[data-transitions-of="${sessionId}"] ol`);
  list.replaceChildren(
    ...actor.recent.map((t) => {
      const li = document.createElement('li');
      li.textContent = `${t.from} → ${t.to}  (${t.event})`;
      return li;
    }),
  );
  list.start = Math.max(1, actor.recent.length - RECENT + 1);
}

function removeSession(sessionId) {
  stats.delete(sessionId);
  document.querySelector(`tr[data-session="${sessionId}"]`)?.remove();
  document.querySelector(`tr[data-transitions-of="${sessionId}"]`)?.remove();
}

function updateCount() {
  const n = [...actors.keys()].filter((id) => sessionIdOf(id) !== null).length;
  $('session-count').textContent = String(n);
  $('no-sessions').hidden = n > 0;
  const server = actors.get('server');
  if (server) $('status').textContent = `server: ${server.state}`;
}

function applyStats(list) {
  stats.clear();
  for (const info of list) stats.set(info.sessionId, info);
  for (const id of actors.keys()) {
    const sessionId = sessionIdOf(id);
    if (sessionId !== null) renderSession(sessionId);
  }
}

const events = new EventSource('/events');
events.addEventListener('init', async (e) => {
  const data = JSON.parse(e.data);
  $('paths').textContent = `${data.socketPath} → ${data.upstreamPath}`;
  $('status').classList.remove('offline');
  for (const id of [...actors.keys()]) {
    const sessionId = sessionIdOf(id);
    if (sessionId !== null) removeSession(sessionId);
  }
  actors.clear();
  for (const a of data.actors) actors.set(a.actor, a);
  applyStats(data.sessions);
  updateCount();
  await drawDiagrams(data.diagrams);
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
  actor.recent.push(transition);
  if (actor.recent.length > RECENT) actor.recent.shift();
  const sessionId = sessionIdOf(id);
  if (sessionId !== null) renderSession(sessionId);
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
