/** diagrams/ is generated from machines/: a stale committed diagram fails here (run `npm run diagrams`). */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { diagramsReadme, discoverMachines, toMermaid, withReadmeDiagram } from '../scripts/mermaid.js';

const machines = await discoverMachines(path.resolve('machines'));

describe('generated diagrams', () => {
  it('finds the machines in machines/', () => {
    expect(machines.map((m) => m.name)).toContain('session');
  });

  it.each(machines.map((m) => [m.name, m.machine] as const))('diagrams/%s.mmd is current', (name, machine) => {
    const committed = fs.readFileSync(path.resolve('diagrams', `${name}.mmd`), 'utf8');
    expect(committed).toBe(toMermaid(machine));
  });

  it('diagrams/README.md is current', () => {
    const rendered = machines.map(({ name, machine }) => ({ name, mermaid: toMermaid(machine) }));
    expect(fs.readFileSync(path.resolve('diagrams', 'README.md'), 'utf8')).toBe(diagramsReadme(rendered));
  });

  it('the project README shows the current session diagram', () => {
    const readme = fs.readFileSync(path.resolve('README.md'), 'utf8');
    expect(readme).toBe(withReadmeDiagram(readme, toMermaid(machines.find((m) => m.name === 'session')!.machine)));
  });

  it('draws every state and every timeout of the session machine', () => {
    const text = toMermaid(machines.find((m) => m.name === 'session')!.machine);
    for (const state of ['connecting', 'ready', 'bufferingCommand', 'bufferingInquire', 'sendingToAgent', 'waitingForAgent', 'sendingToClient', 'error', 'closing', 'fatal', 'closed']) {
      expect(text).toMatch(new RegExp(`\\b${state}\\b`));
    }
    for (const delay of ['connectTimeout', 'greetingTimeout', 'closeGrace']) expect(text).toContain(`after ${delay}`);
    expect(text).toContain('closed --> [*]');
  });

  it('draws a machine-wide transition from every state it applies in, and not from those that override it', () => {
    const text = toMermaid(machines.find((m) => m.name === 'session')!.machine);
    for (const state of ['connecting', 'ready', 'waitingForAgent', 'bufferingInquire']) expect(text).toContain(`  ${state} --> closing : STOP_NOW\n`);
    expect(text).toContain('  ready --> closing : STOP\n');
    // A command in flight overrides STOP (it finishes first); closing handles both itself; error never holds.
    for (const line of ['waitingForAgent --> closing : STOP\n', 'closing --> closing : STOP', 'error --> closing : STOP']) expect(text).not.toContain(line);
  });
});
