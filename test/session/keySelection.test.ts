/** The key and hash the agent holds for a connection, as the proxy follows them: only what the agent accepted counts. */
import { describe, expect, it } from 'vitest';
import type { CommandVerb } from '../../src/protocol/classify.js';
import { KeySelection } from '../../src/session/keySelection.js';

const A = 'A'.repeat(40);
const B = 'B'.repeat(40);
const line = (text: string) => Buffer.from(`${text}\n`, 'latin1');

/** A command the agent answered (`ok`/`err`), or one the proxy refused (`undefined`: the agent never saw it). */
function run(selection: KeySelection, verb: CommandVerb, text: string, agent: 'ok' | 'err' | undefined): void {
  selection.commandBegins(verb, line(text));
  selection.commandEnds(agent);
}

describe('KeySelection', () => {
  it('a RESET the proxy refused leaves the selection: the agent still holds the key', () => {
    const selection = new KeySelection();
    run(selection, 'SIGKEY', `SIGKEY ${A}`, 'ok');
    run(selection, 'SETHASH', `SETHASH 8 ${'00'.repeat(32)}`, 'ok');
    run(selection, 'RESET', 'RESET', undefined);
    expect([selection.key, selection.hash]).toEqual([A, 'sha256']);
    // Sent to the agent, RESET clears both.
    run(selection, 'RESET', 'RESET', 'ok');
    expect([selection.key, selection.hash]).toEqual([undefined, undefined]);
  });

  it('a SIGKEY counts once the agent accepted it; refused, or answered ERR, the previous one stands', () => {
    const selection = new KeySelection();
    run(selection, 'SIGKEY', `SIGKEY ${A}`, 'ok');
    run(selection, 'SIGKEY', `SIGKEY ${B}`, undefined);
    expect(selection.key).toBe(A);
    run(selection, 'SETKEY', `SETKEY ${B}`, 'err');
    expect(selection.key).toBe(A);
    run(selection, 'SETKEY', `setkey ${B.toLowerCase()}`, 'ok');
    expect(selection.key).toBe(B);
  });
});
