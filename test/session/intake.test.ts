/**
 * Intake without sockets: framed bytes in, one machine event per line (or per run of D lines) out, the policy's
 * verdict in its own field, sizes left out where they are a secret's, and the bytes only behind the line handle.
 */
import { describe, expect, it } from 'vitest';
import type { SessionEvent } from '../../machines/session.js';
import type { CommandPolicy } from '../../src/policy.js';
import { LineFramer } from '../../src/protocol/framer.js';
import { takeAgentEvent, takeClientEvent, type ClientLineSetting } from '../../src/session/intake.js';

const plain: ClientLineSetting = { dataRuns: false, secret: false, policy: undefined };

function clientEvents(text: string | Buffer[], setting: ClientLineSetting = plain): SessionEvent[] {
  const framer = new LineFramer();
  for (const chunk of typeof text === 'string' ? [Buffer.from(text, 'latin1')] : text) framer.push(chunk);
  const out: SessionEvent[] = [];
  for (let e = takeClientEvent(framer, setting); e !== undefined; e = takeClientEvent(framer, setting)) out.push(e);
  return out;
}

function agentEvents(text: string, secret = false): SessionEvent[] {
  const framer = new LineFramer();
  framer.push(Buffer.from(text, 'latin1'));
  const out: SessionEvent[] = [];
  for (let e = takeAgentEvent(framer, secret); e !== undefined; e = takeAgentEvent(framer, secret)) out.push(e);
  return out;
}

/** What an event shows, with the bytes behind its handle spelled out for the assertion. */
const shown = (e: SessionEvent) => ({ ...e, ...('line' in e ? { line: e.line.take().toString('latin1') } : {}) });

describe('client lines', () => {
  it('one event per line, named after its kind, with the verb it would have as a command', () => {
    expect(clientEvents('PKSIGN\n# note\n\nD a%0A\nD 50%\nEND\nCANCEL\n').map(shown)).toEqual([
      { type: 'CLIENT.COMMAND', verb: 'PKSIGN', bytes: 7, line: 'PKSIGN\n' },
      { type: 'CLIENT.COMMENT', verb: '', bytes: 7, line: '# note\n' },
      { type: 'CLIENT.COMMENT', verb: '', bytes: 1, line: '\n' },
      { type: 'CLIENT.DATA', verb: 'D', bytes: 7, line: 'D a%0A\n' },
      { type: 'CLIENT.MALFORMED_DATA', verb: 'D', bytes: 6, line: 'D 50%\n' },
      { type: 'CLIENT.END', verb: 'END', bytes: 4, line: 'END\n' },
      // libassuan's inquiry reader takes any line starting with CAN as a cancel; as a command it is CANCEL.
      { type: 'CLIENT.CAN', verb: 'CANCEL', bytes: 7, line: 'CANCEL\n' },
    ]);
  });

  it('an over-long line is one event with its size and no bytes', () => {
    expect(clientEvents(`NOP ${'x'.repeat(1200)}\nNOP\n`).map((e) => e.type)).toEqual(['CLIENT.TOO_LONG', 'CLIENT.COMMAND']);
    expect(clientEvents(`NOP ${'x'.repeat(1200)}\n`)[0]).toEqual({ type: 'CLIENT.TOO_LONG', bytes: 1205 });
  });

  it('inside a data answer, D lines back to back are one event; a line of another kind ends the run', () => {
    const events = clientEvents('D 1\nD 2\nD 3\n# c\nD 4\nEND\n', { ...plain, dataRuns: true });
    expect(events.map(shown)).toEqual([
      { type: 'CLIENT.DATA', verb: 'D', bytes: 12, line: 'D 1\nD 2\nD 3\n' },
      { type: 'CLIENT.COMMENT', verb: '', bytes: 4, line: '# c\n' },
      { type: 'CLIENT.DATA', verb: 'D', bytes: 4, line: 'D 4\n' },
      { type: 'CLIENT.END', verb: 'END', bytes: 4, line: 'END\n' },
    ]);
    // Outside an answer each D line is its own event: there one may be a command.
    expect(clientEvents('D 1\nD 2\n').map((e) => e.type)).toEqual(['CLIENT.DATA', 'CLIENT.DATA']);
  });

  it('lines split across reads at every point give the same events as one read', () => {
    const text = Buffer.from('PKSIGN --x\nD 1\nD 2\n# c\nEND\nNOP\n', 'latin1');
    const whole = clientEvents([text], { ...plain, dataRuns: true }).map(shown);
    for (let split = 1; split < text.length; split++) {
      const parts = [text.subarray(0, split), text.subarray(split)];
      // A run never spans two reads (it is one view of one chunk), so only the line contents are compared.
      const lines = clientEvents(parts, { ...plain, dataRuns: true }).map(shown).map((e) => e.line).join('');
      expect(lines).toBe(whole.map((e) => e.line).join(''));
    }
  });

  it('the policy verdict is its own field, given for every line but # and empty', () => {
    const seen: string[] = [];
    const policy: CommandPolicy = (_line, verb) => {
      seen.push(verb);
      return verb === 'PKSIGN' || verb === 'D' ? 'deny' : undefined;
    };
    const events = clientEvents('PKSIGN\nNOP\n# c\n\nD x\n', { ...plain, policy });
    expect(events.map((e) => ('refusedBy' in e ? e.refusedBy : undefined))).toEqual(['deny', undefined, undefined, undefined, 'deny']);
    expect(seen).toEqual(['PKSIGN', 'NOP', 'D']);
  });

  it('the answer to a secret INQUIRE gets no size; its bytes are only behind the handle', () => {
    const [event] = clientEvents('D correct horse\n', { ...plain, secret: true });
    expect(event).not.toHaveProperty('bytes');
    expect(JSON.stringify(event)).toBe('{"type":"CLIENT.DATA","verb":"D"}');
    expect(shown(event!).line).toBe('D correct horse\n');
  });
});

describe('agent lines', () => {
  it('one event per line kind, keywords for INQUIRE and S, D runs as one', () => {
    expect(agentEvents('# hi\nS PROGRESS x\nD a\nD b\nEND\nINQUIRE PASSPHRASE\nERR 1 x\nOK\nOK closing connection\nbogus\n').map(shown)).toEqual([
      { type: 'AGENT.COMMENT', bytes: 5, line: '# hi\n' },
      { type: 'AGENT.STATUS', keyword: 'PROGRESS', bytes: 13, line: 'S PROGRESS x\n' },
      { type: 'AGENT.DATA', bytes: 8, line: 'D a\nD b\n' },
      { type: 'AGENT.END', bytes: 4, line: 'END\n' },
      { type: 'AGENT.INQUIRE', keyword: 'PASSPHRASE', bytes: 19, line: 'INQUIRE PASSPHRASE\n' },
      { type: 'AGENT.ERR', code: 1, bytes: 8, line: 'ERR 1 x\n' },
      { type: 'AGENT.OK', bytes: 3, line: 'OK\n' },
      { type: 'AGENT.OK_CLOSING', bytes: 22, line: 'OK closing connection\n' },
      { type: 'AGENT.INVALID', bytes: 6, line: 'bogus\n' },
    ]);
  });

  it('an over-long agent line is invalid, with its size and no bytes', () => {
    expect(agentEvents(`S ${'x'.repeat(1200)}\n`).map(shown)).toEqual([{ type: 'AGENT.INVALID', bytes: 1203, line: '' }]);
  });

  it('the answer of a command whose answer is secret gets no size', () => {
    expect(agentEvents('OK 41424344\n', true)[0]).not.toHaveProperty('bytes');
  });
});
