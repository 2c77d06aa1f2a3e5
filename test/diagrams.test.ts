/**
 * diagrams/ is generated from machines/: a stale committed diagram fails here (run `npm run diagrams`). The views
 * (diagramViews.ts) are checked on a small machine that has every kind of transition, and on the session machine.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fromPromise, setup } from 'xstate';
import { diagramViews, lifecycleView, type ViewSpec } from '../src/machineTools/diagramViews.js';
import { lifecycleRenderId, mermaidHash, stampedHash } from '../src/machineTools/lifecycleDrawing.js';
import { VIEW_SPECS } from '../src/machineTools/viewSpecs.js';
import { diagramsReadme, discoverMachines, generatedDiagrams, readmeDiagram, toMermaid, withReadmeDiagram } from '../scripts/mermaid.js';

const machines = await discoverMachines(path.resolve('machines'));
const diagrams = generatedDiagrams(machines);
const session = machines.find((m) => m.name === 'session')!.machine;
const arrows = (mermaid: string) => mermaid.split('\n').filter((line) => line.includes(' --> '));

describe('generated diagrams', () => {
  it('finds the machines in machines/', () => {
    expect(machines.map((m) => m.name)).toContain('session');
  });

  it.each(diagrams.map((d) => [d.file, d] as const))('diagrams/%s.mmd is current', (file, d) => {
    expect(fs.readFileSync(path.resolve('diagrams', `${file}.mmd`), 'utf8')).toBe(d.mermaid);
  });

  it('diagrams/ holds no diagram that is no longer generated, and docs/diagrams/ a PNG of each view', () => {
    const committed = fs.readdirSync(path.resolve('diagrams')).filter((f) => f.endsWith('.mmd'));
    expect(committed.sort()).toEqual(diagrams.map((d) => `${d.file}.mmd`).sort());
    const pngs = fs.readdirSync(path.resolve('docs', 'diagrams')).filter((f) => f.endsWith('.png'));
    expect(pngs.sort()).toEqual(diagrams.filter((d) => d.view).map((d) => `${d.file}.png`).sort());
  });

  it.each(diagrams.filter((d) => d.file === `${d.machine}-lifecycle`).map((d) => [d.file, d] as const))(
    'diagrams/%s.svg, which the live view shows, was drawn from the current lifecycle view, with the ids the page looks for',
    (file, d) => {
      const svg = fs.readFileSync(path.resolve('diagrams', `${file}.svg`), 'utf8');
      expect(stampedHash(svg)).toBe(mermaidHash(d.mermaid));
      expect(svg).toContain(`<svg id="${lifecycleRenderId(d.machine)}"`);
      // Every box the live view lights up is in the drawing.
      for (const ids of Object.values(lifecycleView(machines.find((m) => m.name === d.machine)!.machine, VIEW_SPECS[d.machine]).drawnStates)) {
        for (const id of ids) expect(svg).toMatch(new RegExp(`id="${lifecycleRenderId(d.machine)}-state-${id}-\\d+"`));
      }
    },
  );

  it('diagrams/README.md is current', () => {
    expect(fs.readFileSync(path.resolve('diagrams', 'README.md'), 'utf8')).toBe(diagramsReadme(diagrams));
  });

  it('the project README shows the current session lifecycle', () => {
    const readme = fs.readFileSync(path.resolve('README.md'), 'utf8');
    const lifecycle = readmeDiagram(diagrams)!;
    expect(lifecycle.file).toBe('session-lifecycle');
    expect(readme).toBe(withReadmeDiagram(readme, lifecycle.mermaid));
  });
});

describe('the full diagram (every transition)', () => {
  it('draws every state and every timeout of the session machine', () => {
    const text = toMermaid(session);
    for (const state of ['connecting', 'ready', 'bufferingCommand', 'bufferingInquire', 'sendingToAgent', 'waitingForAgent', 'sendingToClient', 'error', 'closing', 'fatal', 'closed']) {
      expect(text).toMatch(new RegExp(`\\b${state}\\b`));
    }
    for (const delay of ['connectTimeout', 'greetingTimeout', 'closeGrace']) expect(text).toContain(`after ${delay}`);
    expect(text).toContain('closed --> [*]');
  });

  it('draws a machine-wide transition from every state it applies in, and not from those that override it', () => {
    const text = toMermaid(session);
    for (const state of ['connecting', 'awaitingCommand', 'command']) expect(text).toContain(`  ${state} --> closing : STOP_NOW\n`);
    expect(text).toContain('  awaitingCommand --> closing : STOP\n');
    // A command in flight overrides STOP (it finishes first); closing handles both itself; error never holds.
    for (const line of ['command --> closing : STOP\n', 'closing --> closing : STOP', 'error --> closing : STOP']) expect(text).not.toContain(line);
  });
});

/** Every kind of transition a view has to draw. */
const demo = setup({
  actors: { job: fromPromise(async () => 1) },
  guards: { isDone: () => true, online: () => true },
  delays: { workTimeout: 1000 },
}).createMachine({
  id: 'demo',
  initial: 'idle',
  // Root: drawn once, from "any state"; PING changes no state and is not drawn.
  on: { STOP: '.stopped', PING: {} },
  states: {
    idle: { on: { GO: 'work', 'NET.*': [{ guard: 'online', target: 'work' }, { target: 'failed' }] } },
    work: {
      initial: 'a',
      // A parent's own transitions apply in all its states: drawn once, from "anywhere in work".
      on: { FAIL: '#demo.failed' },
      after: { workTimeout: '#demo.failed' },
      states: {
        a: { invoke: { src: 'job', onDone: 'b', onError: '#demo.failed' }, on: { NEXT: 'b', LOST: '#demo.failed', HALT: '#demo.idle', STAY: {} } },
        b: { always: [{ guard: 'isDone', target: '#demo.idle' }], on: { BACK: 'a', LOST: '#demo.failed', HALT: '#demo.idle' } },
        // LOST is shared by all three states (drawn once); HALT only by two, and c ignores it (drawn from each).
        c: { on: { LOST: '#demo.failed', STAY: {} } },
      },
    },
    stopped: { type: 'final' },
    failed: { type: 'final' },
  },
});
const demoSpec: ViewSpec = { lifecycle: { collapse: ['work'] }, details: [{ name: 'work', title: 'demo: work', focus: 'work' }], failures: ['failed'] };

describe('lifecycle and detail views', () => {
  const [lifecycle, work] = diagramViews(demo, demoSpec);

  it('lifecycle: root transitions once from "any state", a collapsed state as one box, its arrows merged and their events listed once', () => {
    expect(arrows(lifecycle!.mermaid)).toEqual([
      '  [*] --> idle',
      '  stopped --> [*]',
      '  failed --> [*]',
      '  anyState --> stopped : STOP',
      // An event that leads to two places names its guards; `[else]` is the unguarded one after them.
      '  idle --> work : GO, NET.* [online]',
      '  idle --> failed : NET.* [else]',
      // The parent's own, the children's (LOST once), a timeout, an invoked actor's failure.
      '  work --> failed : FAIL, after workTimeout<br>LOST, job error',
      // An eventless step shows its condition.
      '  work --> idle : HALT, [isDone]',
    ]);
    expect(lifecycle!.mermaid).toContain('state "work" as work\n');
    expect(lifecycle!.mermaid).toMatch(/class work collapsed/);
    expect(lifecycle!.mermaid).toMatch(/class failed failure/);
    expect(lifecycle!.mermaid).not.toContain('PING');
  });

  it('detail: the children and their own arrows, shared ones from "anywhere in", the states outside as stubs', () => {
    expect(arrows(work!.mermaid)).toEqual([
      // Entering the composite enters its initial state.
      '  from__idle --> work__a : GO, NET.* [online]',
      '    [*] --> work__a',
      '  any__work --> to__failed : FAIL, after workTimeout<br>LOST',
      '  work__a --> work__b : NEXT, job done',
      '  work__a --> to__idle : HALT',
      '  work__a --> to__failed : job error',
      '  work__b --> work__a : BACK',
      '  work__b --> to__idle : HALT, [isDone]',
    ]);
    expect(work!.mermaid).toContain('state "anywhere in work" as any__work');
    expect(work!.mermaid).toMatch(/class from__idle,to__idle stub/);
    expect(work!.mermaid).toMatch(/class to__failed failureStub/);
    // Root transitions belong to the lifecycle.
    expect(work!.mermaid).not.toContain('STOP');
  });

  it('tells the live view which boxes show each state', () => {
    expect(lifecycle!.drawnStates).toMatchObject({ idle: ['idle'], work: ['work'], 'work.b': ['work'] });
    expect(work!.drawnStates).toMatchObject({ work: ['work'], 'work.b': ['work', 'work__b'] });
    expect(work!.drawnStates).not.toHaveProperty('idle');
  });

  it('draws a group of sibling states as one box, without changing their names', () => {
    const [grouped] = diagramViews(demo, { groups: { active: { label: 'active', states: ['idle', 'work'] } }, lifecycle: { collapse: ['active'] } });
    expect(arrows(grouped!.mermaid)).toEqual([
      '  [*] --> active',
      '  stopped --> [*]',
      '  failed --> [*]',
      '  anyState --> stopped : STOP',
      // Arrows between its states are moves inside the box: not drawn.
      '  active --> failed : NET.*, FAIL<br>after workTimeout, LOST<br>job error',
    ]);
    expect(grouped!.drawnStates).toMatchObject({ idle: ['active'], 'work.a': ['active'] });
  });

  it("draws the regions of a parallel state apart, and writes Mermaid's own characters as entity codes", () => {
    const regions = setup({}).createMachine({
      id: 'regions',
      initial: 'both',
      states: {
        both: {
          type: 'parallel',
          states: { left: { initial: 'x', states: { x: { on: { 'GO#1;': 'y' } }, y: {} } }, right: {} },
        },
      },
    });
    const [view] = diagramViews(regions);
    expect(view!.mermaid).toContain('    state "left" as both__left {\n      [*] --> both__left__x\n');
    expect(view!.mermaid).toContain('    }\n    --\n    state "right" as both__right\n');
    expect(arrows(view!.mermaid)).toContain('  both__left__x --> both__left__y : GO#35;1#59;');
  });

  it('refuses a specification that names a state the machine lacks', () => {
    expect(() => diagramViews(demo, { lifecycle: { collapse: ['working'] } })).toThrow(/cannot collapse working/);
    expect(() => diagramViews(demo, { lifecycle: {}, details: [{ name: 'x', title: 'x', focus: 'idle' }] })).toThrow(/idle is not a composite/);
    expect(() => diagramViews(demo, { groups: { work: { label: 'w', states: ['idle'] } }, lifecycle: {} })).toThrow(/a state of that name exists/);
  });
});

describe('the session views', () => {
  const generated = diagrams.filter((d) => d.machine === 'session' && d.view);

  it('the lifecycle is small: at most 32 arrows, each pair of boxes joined once', () => {
    const lifecycle = arrows(generated.find((d) => d.file === 'session-lifecycle')!.mermaid);
    // 31 since held commands (consent, crypto slots) got their box; looked at rendered, still readable at 1400 px.
    expect(lifecycle.length).toBeLessThanOrEqual(32);
    const pairs = lifecycle.map((line) => line.split(' : ')[0]);
    expect(new Set(pairs).size).toBe(pairs.length);
    // The happy path, and the machine-wide shutdown drawn once.
    expect(pairs).toEqual(
      expect.arrayContaining(['  [*] --> connecting', '  connecting --> awaitingCommand__ready', '  any__awaitingCommand --> command__waitingForAgent', '  command__waitingForAgent --> command__sendingToClient', '  any__command --> awaitingCommand__ready', '  anyState --> closing']),
    );
  });

  it('every state is drawn in a box of its own in some view', () => {
    const views = diagramViews(session, VIEW_SPECS.session);
    expect(views.length).toBeGreaterThan(1);
    const states = Object.keys(diagramViews(session)[0]!.drawnStates);
    expect(states).toEqual(expect.arrayContaining(['awaitingCommand.ready', 'connecting.reaching.dialing', 'command.bufferingInquire.discarding']));
    for (const state of states) {
      const own = state.split('.').join('__');
      expect({ state, drawn: views.some((v) => v.drawnStates[state]?.includes(own)) }).toEqual({ state, drawn: true });
    }
  });
});
