import { describe, expect, it } from 'vitest';
import { sanitizeContext, sanitizeEvent } from '../../src/inspect/sanitize.js';

describe('inspector sanitizers', () => {
  it('keep an event type and its scalar vocabulary fields', () => {
    expect(sanitizeEvent({ type: 'CLIENT_LINE', kind: 'data', verb: 'D', bytes: 42 })).toEqual({ type: 'CLIENT_LINE', kind: 'data', verb: 'D', bytes: 42 });
    expect(sanitizeEvent({ type: 'AGENT_CLOSED', code: 'ECONNRESET' })).toEqual({ type: 'AGENT_CLOSED', code: 'ECONNRESET' });
  });

  it('drop strings under other names, buffers, arrays and typed arrays, at any depth', () => {
    const secret = 'correct horse battery staple';
    const event = {
      type: 'CLIENT_LINE',
      line: secret,
      payload: Buffer.from(secret),
      bytesView: new Uint8Array(Buffer.from(secret)),
      lines: [secret],
      nested: { text: secret, bytes: 3, deeper: { passphrase: secret } },
    };
    const sanitized = sanitizeEvent(event);
    expect(JSON.stringify(sanitized)).not.toContain(secret);
    expect(JSON.stringify(sanitized)).not.toContain(Buffer.from(secret).toString('hex'));
    expect(sanitized).toEqual({ type: 'CLIENT_LINE', nested: { bytes: 3, deeper: {} } });
  });

  it('keep the session context as the machine defines it', () => {
    const context = { sessionId: '7', connectAttempts: 1, command: 'PKSIGN', inquire: 'PASSPHRASE', clientEnded: false, stopRequested: false, owedAnswer: null, failure: { reason: 'agentClosed', code: 'ECONNRESET' } };
    expect(sanitizeContext(context)).toEqual(context);
    expect(sanitizeContext({ ...context, lastLine: 'D secret' })).toEqual(context);
  });
});
