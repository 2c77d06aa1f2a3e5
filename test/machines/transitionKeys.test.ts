/**
 * Transition keys name a transition by where it is defined, its event and its guard, never by its position
 * among a state's candidates: reordering candidates renames nothing, and two candidates of one state for one
 * event need different guards (else the coverage records and the allowlist could not tell them apart).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { discoverMachines } from '../../scripts/mermaid.js';
import { definedTransitions } from '../../src/machineTools/transitions.js';

const machines = await discoverMachines(path.resolve('machines'));

describe('transition keys', () => {
  it('finds the machines', () => {
    expect(machines.map((m) => m.name)).toEqual(expect.arrayContaining(['server', 'session']));
  });

  for (const { name, machine } of machines) {
    describe(name, () => {
      const keys = definedTransitions(machine).map((t) => t.key);

      it('every defined transition has a key of its own', () => {
        expect(keys.length).toBeGreaterThan(0);
        expect(keys.filter((key, i) => keys.indexOf(key) !== i)).toEqual([]);
      });

      it('no key carries a position (#<digits>)', () => {
        expect(keys.filter((key) => /#\d+/.test(key))).toEqual([]);
      });

      it('each key is source|event, with [guard] for a guarded candidate', () => {
        for (const t of definedTransitions(machine)) {
          expect(t.key).toBe(`${t.source}|${t.event}${t.guard ? `[${t.guard}]` : ''}`);
        }
      });
    });
  }
});
