import { describe, expect, it } from 'vitest';
import { inspect } from 'node:util';
import { sanitizeContext, sanitizeEvent } from '../../src/inspect/sanitize.js';
import { LineHandle } from '../../src/protocol/line.js';

describe('inspector sanitizers', () => {
  it('keep an event type and its scalar vocabulary fields', () => {
    expect(sanitizeEvent({ type: 'CLIENT.DATA', verb: 'D', bytes: 42 })).toEqual({ type: 'CLIENT.DATA', verb: 'D', bytes: 42 });
    expect(sanitizeEvent({ type: 'AGENT_CLOSED', code: 'ECONNRESET' })).toEqual({ type: 'AGENT_CLOSED', code: 'ECONNRESET' });
  });

  it('drop strings under other names, buffers, arrays and typed arrays, at any depth', () => {
    const secret = 'correct horse battery staple';
    const event = {
      type: 'CLIENT.DATA',
      line: secret,
      payload: Buffer.from(secret),
      bytesView: new Uint8Array(Buffer.from(secret)),
      lines: [secret],
      nested: { text: secret, bytes: 3, deeper: { passphrase: secret } },
    };
    const sanitized = sanitizeEvent(event);
    expect(JSON.stringify(sanitized)).not.toContain(secret);
    expect(JSON.stringify(sanitized)).not.toContain(Buffer.from(secret).toString('hex'));
    expect(sanitized).toEqual({ type: 'CLIENT.DATA', nested: { bytes: 3, deeper: {} } });
  });

  it('show nothing of a line handle: no byte, no length', () => {
    const secret = 'correct horse battery staple';
    const event = { type: 'CLIENT.DATA', verb: 'D', line: new LineHandle(Buffer.from(`D ${secret}\n`)) };
    expect(sanitizeEvent(event)).toEqual({ type: 'CLIENT.DATA', verb: 'D', line: {} });
    expect(JSON.stringify(event)).toBe('{"type":"CLIENT.DATA","verb":"D"}');
    expect(inspect(event, { showHidden: true, depth: 5 })).not.toContain(secret);
    expect(inspect(event, { showHidden: true, depth: 5 })).not.toMatch(/\b31\b/);
    expect(event.line.take().toString()).toBe(`D ${secret}\n`);
  });

  it('keep the session context as the machine defines it', () => {
    const context = { sessionId: '7', connectAttempts: 1, command: 'PKSIGN', inquire: 'PASSPHRASE', clientEnded: false, stopRequested: false, owedAnswer: null, failure: { reason: 'agentClosed', code: 'ECONNRESET' } };
    expect(sanitizeContext(context)).toEqual(context);
    expect(sanitizeContext({ ...context, lastLine: 'D secret' })).toEqual(context);
  });
});
