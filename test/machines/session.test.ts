import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock } from 'xstate';
import { sessionMachine, type SessionEvent } from '../../machines/session.js';

/** A live actor whose effects are recorded instead of performed. */
function harness(options: { writeBlocks?: boolean; responseTimeoutOn?: boolean; restrictAgent?: boolean } = {}) {
  const effects: string[] = [];
  const clock = new SimulatedClock();
  const record = (name: string) => (_: unknown, params?: unknown) => {
    effects.push(params === undefined ? name : `${name} ${JSON.stringify(params)}`);
  };
  const machine = sessionMachine.provide({
    actions: {
      dialAgent: record('dialAgent'),
      restrictAgent: record('restrictAgent'),
      noteRefusal: record('noteRefusal'),
      relayToClient: record('relayToClient'),
      forwardToAgent: record('forwardToAgent'),
      watchAgentWrite: ({ self }) => {
        effects.push('watchAgentWrite');
        if (!options.writeBlocks) self.send({ type: 'AGENT_WRITTEN' });
      },
      discardClientLine: record('discardClientLine'),
      discardAgentLine: record('discardAgentLine'),
      cancelAgentInquiry: record('cancelAgentInquiry'),
      answerClient: record('answerClient'),
      beginCommand: record('beginCommand'),
      endCommand: record('endCommand'),
      endAgentInput: record('endAgentInput'),
      abortSession: record('abortSession'),
      closeGracefully: record('closeGracefully'),
      destroySockets: record('destroySockets'),
      rejectEvent: record('rejectEvent'),
    },
    delays: { connectTimeout: 100, greetingTimeout: 200, closeGrace: 300, retryBackoff: 10, idleTimeout: 400, inquiryTimeout: 600, responseTimeout: 500 },
  });
  const input = { sessionId: 't', responseTimeoutOn: options.responseTimeoutOn ?? false, restrictAgent: options.restrictAgent ?? false };
  const actor = createActor(machine, { input, clock }).start();
  const send = (...events: SessionEvent[]) => {
    for (const event of events) actor.send(event);
  };
  const state = () => actor.getSnapshot().value;
  const taken = () => effects.splice(0);
  return { actor, clock, send, state, taken };
}

const agent = (kind: Extract<SessionEvent, { type: 'AGENT_LINE' }>['kind'], keyword = ''): SessionEvent => ({
  type: 'AGENT_LINE',
  kind,
  keyword,
  bytes: 10,
});
const client = (kind: Extract<SessionEvent, { type: 'CLIENT_LINE' }>['kind'], verb: Extract<SessionEvent, { type: 'CLIENT_LINE' }>['verb'] = ''): SessionEvent => ({
  type: 'CLIENT_LINE',
  kind,
  verb,
  bytes: 10,
});

function greeted() {
  const h = harness();
  h.send({ type: 'AGENT_CONNECTED' }, agent('ok'));
  h.taken();
  return h;
}

describe('session machine', () => {
  it('dials, relays the greeting and becomes ready', () => {
    const h = harness();
    expect(h.state()).toEqual({ connecting: { reaching: 'dialing' } });
    expect(h.taken()).toEqual(['dialAgent']);
    h.send({ type: 'AGENT_CONNECTED' }, agent('comment'), agent('ok'));
    expect(h.state()).toBe('ready');
    expect(h.taken()).toEqual(['relayToClient', 'relayToClient']);
  });

  it('forwards # and empty lines without waiting for a reply', () => {
    const h = greeted();
    h.send(client('comment'), client('empty'));
    expect(h.state()).toBe('ready');
    expect(h.taken()).toEqual(['forwardToAgent', 'forwardToAgent']);
  });

  it('runs a command: sending, waiting, relaying status and data lines live, ready again on OK', () => {
    const h = greeted();
    h.send(client('command', 'GETINFO'));
    expect(h.state()).toBe('waitingForAgent');
    expect(h.taken()).toEqual(['beginCommand {"verb":"GETINFO"}', 'forwardToAgent', 'watchAgentWrite']);
    h.send(agent('status', 'PROGRESS'));
    expect(h.state()).toBe('sendingToClient');
    h.send(agent('data'), agent('data'));
    expect(h.state()).toBe('sendingToClient');
    h.send(agent('ok'));
    expect(h.state()).toBe('ready');
    expect(h.taken()).toEqual(['relayToClient', 'relayToClient', 'relayToClient', 'relayToClient', 'endCommand {"outcome":"ok"}']);
    expect(h.actor.getSnapshot().context.command).toBe('GETINFO');
  });

  it('stays in sendingToAgent while the agent does not take our bytes', () => {
    const h = harness({ writeBlocks: true });
    h.send({ type: 'AGENT_CONNECTED' }, agent('ok'), client('command', 'NOP'));
    expect(h.state()).toBe('sendingToAgent');
    h.send({ type: 'AGENT_WRITTEN' });
    expect(h.state()).toBe('waitingForAgent');
  });

  it('goes through bufferingCommand while a command line is incomplete', () => {
    const h = greeted();
    h.send({ type: 'CLIENT_PARTIAL', bytes: 3 });
    expect(h.state()).toBe('bufferingCommand');
    h.send(client('comment'));
    expect(h.state()).toBe('ready');
    h.send({ type: 'CLIENT_PARTIAL', bytes: 3 }, client('command', 'NOP'));
    expect(h.state()).toBe('waitingForAgent');
  });

  it('answers several INQUIREs in one command, relaying D lines until END', () => {
    const h = greeted();
    h.send(client('command', 'PKDECRYPT'), agent('inquire', 'CIPHERTEXT'));
    expect(h.state()).toEqual({ bufferingInquire: 'answering' });
    expect(h.actor.getSnapshot().context.inquire).toBe('CIPHERTEXT');
    h.send(client('data', 'D'), client('comment'), client('data', 'D'), client('end', 'END'));
    expect(h.state()).toBe('waitingForAgent');
    h.send(agent('status', 'INQUIRE_MAXLEN'), agent('inquire', 'PASSPHRASE'));
    expect(h.state()).toEqual({ bufferingInquire: 'answering' });
    h.send(client('data', 'D'), client('end', 'END'), agent('data'), agent('ok'));
    expect(h.state()).toBe('ready');
    expect(h.actor.getSnapshot().context.inquire).toBe('');
    const effects = h.taken();
    expect(effects.filter((e) => e === 'forwardToAgent')).toHaveLength(7);
    expect(effects.at(-1)).toBe('endCommand {"outcome":"ok"}');
  });

  it('CAN ends an INQUIRE like END does', () => {
    const h = greeted();
    h.send(client('command', 'PKSIGN'), agent('inquire', 'PASSPHRASE'), client('cancel', 'CAN'));
    expect(h.state()).toBe('waitingForAgent');
    h.send(agent('err'));
    expect(h.state()).toBe('ready');
  });

  it('refuses a malformed D line: drops the rest of the answer, cancels at the agent, answers its own ERR', () => {
    const h = greeted();
    h.send(client('command', 'PKDECRYPT'), agent('inquire', 'CIPHERTEXT'));
    h.taken();
    h.send(client('malformedData', 'D'));
    expect(h.state()).toEqual({ bufferingInquire: 'discarding' });
    h.send(client('data', 'D'), client('end', 'END'));
    expect(h.state()).toBe('waitingForAgent');
    expect(h.taken()).toEqual(['discardClientLine', 'discardClientLine', 'discardClientLine', 'cancelAgentInquiry', 'watchAgentWrite']);
    h.send(agent('err'));
    expect(h.state()).toBe('ready');
    expect(h.taken()).toEqual(['discardAgentLine', 'answerClient {"answer":"malformedEscape"}', 'endCommand {"outcome":"refused"}']);
    expect(h.actor.getSnapshot().context.owedAnswer).toBeNull();
  });

  it('refuses an over-long line inside an INQUIRE the same way', () => {
    const h = greeted();
    h.send(client('command', 'IMPORT_KEY'), agent('inquire', 'KEYDATA'), { type: 'CLIENT_LINE_TOO_LONG', bytes: 5000 });
    expect(h.state()).toEqual({ bufferingInquire: 'discarding' });
    h.send(client('end', 'END'), agent('err'));
    expect(h.taken()).toContain('answerClient {"answer":"lineTooLong"}');
  });

  it('answers an over-long command line itself and stays usable', () => {
    const h = greeted();
    h.send({ type: 'CLIENT_LINE_TOO_LONG', bytes: 2000 });
    expect(h.state()).toBe('ready');
    expect(h.taken()).toEqual(['discardClientLine', 'answerClient {"answer":"lineTooLong"}', 'endCommand {"outcome":"refused"}']);
  });

  it('when the agent ends the command mid-answer, its reader is done: the rest of the answer goes to it as commands, as directly', () => {
    const h = greeted();
    h.send(client('command', 'PRESET_PASSPHRASE'), agent('inquire', 'PASSPHRASE'), client('data', 'D'), agent('err'));
    expect(h.state()).toBe('ready');
    h.taken();
    h.send(client('data', 'D'));
    expect(h.state()).toBe('waitingForAgent');
    expect(h.taken()).toContain('forwardToAgent');
  });

  it('a D line ends an INQUIRE that takes no data: what follows waits for the command to end, then is a command', () => {
    const h = greeted();
    h.send(client('command', 'GET_PASSPHRASE'), agent('inquire', 'PINENTRY_LAUNCHED'));
    expect(h.state()).toEqual({ bufferingInquire: 'acknowledging' });
    h.send(client('data', 'D'));
    // The agent runs the pinentry now; it reads nothing until the command ends.
    expect(h.state()).toBe('waitingForAgent');
    expect(h.actor.getSnapshot().hasTag('clientInput')).toBe(false);
    h.send(agent('ok'));
    expect(h.state()).toBe('ready');
    h.taken();
    h.send({ type: 'CLIENT_LINE', kind: 'command', verb: 'PRESET_PASSPHRASE', bytes: 10, refusedBy: 'deny' });
    expect(h.taken()).toEqual([
      `beginCommand ${JSON.stringify({ verb: 'PRESET_PASSPHRASE' })}`,
      'discardClientLine',
      `noteRefusal ${JSON.stringify({ verb: 'PRESET_PASSPHRASE', rule: 'deny', during: 'command' })}`,
      `answerClient ${JSON.stringify({ answer: 'forbidden' })}`,
      `endCommand ${JSON.stringify({ outcome: 'refused' })}`,
    ]);
  });

  it('inside an INQUIRE, a line the policy forbids is replaced by CAN, and the client gets ERR Forbidden for the command', () => {
    const h = greeted();
    h.send(client('command', 'PKDECRYPT'), agent('inquire', 'CIPHERTEXT'), client('data', 'D'));
    h.taken();
    h.send({ type: 'CLIENT_LINE', kind: 'command', verb: 'KEYINFO', bytes: 10, refusedBy: 'allow' });
    expect(h.taken()).toEqual(['discardClientLine', 'cancelAgentInquiry', `noteRefusal ${JSON.stringify({ verb: 'KEYINFO', rule: 'allow', during: 'inquire' })}`, 'watchAgentWrite']);
    h.send(agent('err'));
    expect(h.taken()).toEqual(['discardAgentLine', `answerClient ${JSON.stringify({ answer: 'forbidden' })}`, `endCommand ${JSON.stringify({ outcome: 'refused' })}`]);
    expect(h.actor.getSnapshot().context.refusedVerb).toBe('KEYINFO');
  });

  it('a half-close inside an INQUIRE is passed on, unfinished line included, and the agent\'s answer awaited', () => {
    const h = greeted();
    h.send(client('command', 'PKDECRYPT'), agent('inquire', 'CIPHERTEXT'));
    h.taken();
    h.send({ type: 'CLIENT_EOF' });
    expect(h.state()).toBe('waitingForAgent');
    expect(h.taken()).toEqual([`endAgentInput ${JSON.stringify({ withPartialLine: true })}`]);
    h.send(agent('err'));
    expect(h.state()).toBe('closing');
  });

  it('restricted: the proxy\'s own OPTION goes to the agent after the greeting, before any client line is taken', () => {
    const h = harness({ restrictAgent: true });
    h.send({ type: 'AGENT_CONNECTED' }, agent('ok'));
    expect(h.state()).toEqual({ connecting: 'restricting' });
    expect(h.actor.getSnapshot().hasTag('clientInput')).toBe(false);
    expect(h.taken()).toEqual(['dialAgent', 'relayToClient', 'restrictAgent']);
    h.send(agent('ok'));
    expect(h.state()).toBe('ready');
    // The agent's OK is the proxy's, not the client's.
    expect(h.taken()).toEqual(['discardAgentLine']);
  });

  it('inquiry timeout: a client that never finishes its answer is told, and the session closes', () => {
    const h = greeted();
    h.send(client('command', 'PKSIGN'), agent('inquire', 'PASSPHRASE'));
    h.clock.increment(599);
    expect(h.state()).toEqual({ bufferingInquire: 'answering' });
    h.clock.increment(1);
    expect(h.state()).toBe('fatal');
    expect(h.actor.getSnapshot().context.failure).toEqual({ reason: 'inquiryTimeout' });
  });

  it('BYE: relays OK closing connection, closes both sides, ends when both sockets closed', () => {
    const h = greeted();
    h.send(client('command', 'BYE'), agent('okClosing'));
    expect(h.state()).toBe('closing');
    expect(h.taken()).toContain('closeGracefully');
    h.send({ type: 'AGENT_CLOSED', code: 'EOF' }, { type: 'SOCKETS_CLOSED' });
    expect(h.state()).toBe('closed');
    expect(h.actor.getSnapshot().status).toBe('done');
  });

  it('a client EOF while a command is in flight is passed on to the agent; the answer is still relayed, then closing', () => {
    const h = greeted();
    h.send(client('command', 'GETINFO'), { type: 'CLIENT_EOF' });
    expect(h.state()).toBe('waitingForAgent');
    expect(h.taken()).toContain(`endAgentInput ${JSON.stringify({ withPartialLine: true })}`);
    h.send(agent('data'), agent('ok'));
    expect(h.state()).toBe('closing');
    expect(h.taken()).toEqual(['relayToClient', 'relayToClient', 'endCommand {"outcome":"ok"}', 'closeGracefully']);
  });

  it('an INQUIRE for a client that has already ended is relayed, and the agent\'s answer to the EOF awaited', () => {
    const h = greeted();
    h.send(client('command', 'PKDECRYPT'), { type: 'CLIENT_EOF' }, agent('inquire', 'CIPHERTEXT'));
    expect(h.state()).toBe('waitingForAgent');
    h.send(agent('err'));
    expect(h.state()).toBe('closing');
  });

  it('a closing session whose peers never close is cut after closeGrace', () => {
    const h = greeted();
    h.send({ type: 'CLIENT_EOF' });
    expect(h.state()).toBe('closing');
    h.clock.increment(299);
    expect(h.state()).toBe('closing');
    h.clock.increment(1);
    expect(h.state()).toBe('closed');
    expect(h.taken()).toContain('destroySockets');
  });

  it.each([
    ['connect timeout', [], 100, { reason: 'connectTimeout', attempts: 1 }],
    ['greeting timeout', [{ type: 'AGENT_CONNECTED' }], 200, { reason: 'greetingTimeout' }],
  ] as const)('%s ends in fatal with its reason', (_, events, ms, failure) => {
    const h = harness();
    h.send(...events);
    h.clock.increment(ms - 1);
    expect(h.actor.getSnapshot().status).toBe('active');
    h.clock.increment(1);
    expect(h.state()).toBe('fatal');
    expect(h.actor.getSnapshot().context.failure).toEqual(failure);
    expect(h.taken().at(-1)).toBe(`abortSession ${JSON.stringify({ failure })}`);
  });

  it('a full listen queue (EAGAIN) is retried with backoff, within the connect timeout', () => {
    const h = harness();
    h.send({ type: 'AGENT_CONNECT_FAILED', code: 'EAGAIN' });
    expect(h.state()).toEqual({ connecting: { reaching: 'backingOff' } });
    h.clock.increment(10);
    expect(h.state()).toEqual({ connecting: { reaching: 'dialing' } });
    expect(h.taken()).toEqual(['dialAgent', 'dialAgent']);
    h.send({ type: 'AGENT_CONNECTED' }, agent('ok'));
    expect(h.state()).toBe('ready');
    expect(h.actor.getSnapshot().context.connectAttempts).toBe(2);
  });

  it('retries stop at the connect timeout, which counts from the first attempt', () => {
    const h = harness();
    for (let elapsed = 0; elapsed < 100; elapsed += 10) {
      h.send({ type: 'AGENT_CONNECT_FAILED', code: 'EAGAIN' });
      h.clock.increment(10);
    }
    expect(h.state()).toBe('fatal');
    expect(h.actor.getSnapshot().context.failure).toEqual({ reason: 'connectTimeout', attempts: 10 });
  });

  it('a refused or missing socket is not retried', () => {
    const h = harness();
    h.send({ type: 'AGENT_CONNECT_FAILED', code: 'ECONNREFUSED' });
    expect(h.state()).toBe('fatal');
  });

  it('no response timeout: a command may wait as long as a human at a pinentry', () => {
    const h = greeted();
    h.send(client('command', 'PKSIGN'));
    h.clock.increment(24 * 3600 * 1000);
    expect(h.state()).toBe('waitingForAgent');
  });

  it.each([
    ['ready', []],
    ['bufferingCommand', [{ type: 'CLIENT_PARTIAL', bytes: 1 }]],
  ] as const)('idle timeout: no complete command within it after the greeting (in %s) tells the client and closes', (state, events) => {
    const h = greeted();
    h.send(...events);
    h.clock.increment(399);
    expect(h.state()).toBe(state);
    h.clock.increment(1);
    expect(h.state()).toBe('fatal');
    expect(h.actor.getSnapshot().context.failure).toEqual({ reason: 'idleTimeout' });
    expect(h.taken()).toContain(`abortSession ${JSON.stringify({ failure: { reason: 'idleTimeout' } })}`);
  });

  it('the idle timeout pauses while a command is in flight and starts again when its answer ends', () => {
    const h = greeted();
    h.clock.increment(399);
    h.send(client('command', 'PKSIGN'));
    h.clock.increment(10 * 400);
    expect(h.state()).toBe('waitingForAgent');
    h.send(agent('ok'));
    h.clock.increment(399);
    expect(h.state()).toBe('ready');
    h.clock.increment(1);
    expect(h.state()).toBe('fatal');
  });

  it('comment lines do not keep an idle session open', () => {
    const h = greeted();
    h.clock.increment(300);
    h.send(client('comment'));
    h.clock.increment(100);
    expect(h.state()).toBe('fatal');
  });

  it('response timeout (when on): the agent silent past it ends the session with ERR Timeout', () => {
    const h = harness({ responseTimeoutOn: true });
    h.send({ type: 'AGENT_CONNECTED' }, agent('ok'), client('command', 'PKSIGN'));
    h.clock.increment(499);
    expect(h.state()).toBe('waitingForAgent');
    h.clock.increment(1);
    expect(h.state()).toBe('fatal');
    expect(h.taken().at(-1)).toBe(`abortSession ${JSON.stringify({ failure: { reason: 'responseTimeout' } })}`);
  });

  it('response timeout (when on): counts per request, and an answer in time stops it', () => {
    const h = harness({ responseTimeoutOn: true });
    h.send({ type: 'AGENT_CONNECTED' }, agent('ok'), client('command', 'PKSIGN'));
    h.clock.increment(499);
    h.send(agent('ok'), client('command', 'NOP'));
    h.clock.increment(499);
    h.send(agent('ok'));
    // Past the response timeout, within the idle timeout (400 here).
    h.clock.increment(399);
    expect(h.state()).toBe('ready');
  });

  it.each(['command', 'data', 'end', 'cancel', 'malformedData'] as const)('a %s line the policy forbids is answered by the proxy, never forwarded', (kind) => {
    const h = greeted();
    h.send({ type: 'CLIENT_LINE', kind, verb: 'PKSIGN', bytes: 10, refusedBy: 'restricted' });
    expect(h.state()).toBe('ready');
    expect(h.taken()).not.toContain('forwardToAgent');
  });

  it.each([
    ['connect failure', [{ type: 'AGENT_CONNECT_FAILED', code: 'ENOENT' }], { reason: 'connectFailed', code: 'ENOENT' }],
    ['agent gone while idle', [{ type: 'AGENT_CONNECTED' }, agent('ok'), { type: 'AGENT_CLOSED', code: 'EOF' }], { reason: 'agentClosed', code: 'EOF' }],
    ['agent gone mid-command', [{ type: 'AGENT_CONNECTED' }, agent('ok'), client('command', 'PKSIGN'), { type: 'AGENT_CLOSED', code: 'ECONNRESET' }], { reason: 'agentClosed', code: 'ECONNRESET' }],
    ['bad greeting', [{ type: 'AGENT_CONNECTED' }, agent('err')], { reason: 'badGreeting' }],
    ['non-Assuan answer', [{ type: 'AGENT_CONNECTED' }, agent('ok'), client('command', 'NOP'), agent('invalid')], { reason: 'agentProtocolViolation' }],
    ['output with no command', [{ type: 'AGENT_CONNECTED' }, agent('ok'), agent('status')], { reason: 'unsolicitedAgentOutput' }],
  ] as const)('%s ends in fatal with its reason', (_, events, failure) => {
    const h = harness();
    h.send(...(events as readonly SessionEvent[]));
    expect(h.state()).toBe('fatal');
    expect(h.actor.getSnapshot().context.failure).toEqual(failure);
  });

  it('an event the state does not handle is rejected explicitly and changes nothing', () => {
    const h = greeted();
    h.send(client('command', 'NOP'));
    h.taken();
    h.send(client('command', 'NOP'));
    expect(h.state()).toBe('waitingForAgent');
    expect(h.taken()).toEqual(['rejectEvent {"type":"CLIENT_LINE"}']);
  });

  it('context holds no protocol bytes, only kinds, verbs and reasons', () => {
    const h = greeted();
    h.send(client('command', 'PKDECRYPT'), agent('inquire', 'PASSPHRASE'), client('malformedData', 'D'));
    expect(Object.keys(h.actor.getSnapshot().context).sort()).toEqual([
      'clientEnded', 'command', 'connectAttempts', 'failure', 'inquire', 'owedAnswer', 'refusedVerb', 'responseTimeoutOn', 'restrictAgent', 'sessionId', 'stopRequested',
    ]);
    expect(h.actor.getSnapshot().context).toEqual({
      sessionId: 't',
      connectAttempts: 1,
      command: 'PKDECRYPT',
      inquire: 'PASSPHRASE',
      clientEnded: false,
      stopRequested: false,
      owedAnswer: 'malformedEscape',
      refusedVerb: '',
      failure: null,
      responseTimeoutOn: false,
      restrictAgent: false,
    });
  });
});
