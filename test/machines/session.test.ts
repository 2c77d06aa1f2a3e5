import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock, type StateValue } from 'xstate';
import { sessionMachine, stateName, type AgentLineEvent, type ClientLineEvent, type SessionEvent } from '../../machines/session.js';
import type { CommandVerb } from '../../src/protocol/classify.js';
import { LineHandle } from '../../src/protocol/line.js';

/** A state value as a dotted path to its leaf: `{ command: { bufferingInquire: 'answering' } }` is `command.bufferingInquire.answering`. */
function pathOf(value: StateValue): string {
  if (typeof value === 'string') return value;
  const [key, inner] = Object.entries(value)[0]!;
  return `${key}.${pathOf(inner as StateValue)}`;
}

/** A live actor whose effects are recorded instead of performed. */
function harness(options: { responseTimeoutOn?: boolean; restrictAgent?: boolean } = {}) {
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
  const state = () => pathOf(actor.getSnapshot().value);
  const taken = () => effects.splice(0);
  return { actor, clock, send, state, taken };
}

const lineOf = (text: string) => new LineHandle(Buffer.from(`${text}\n`));

type PlainAgentLine = Exclude<AgentLineEvent['type'], 'AGENT.INQUIRE' | 'AGENT.STATUS'>;
const agent = (type: PlainAgentLine): SessionEvent => ({ type, line: lineOf('OK'), bytes: 10 });
const inquire = (keyword: string): SessionEvent => ({ type: 'AGENT.INQUIRE', keyword, line: lineOf(`INQUIRE ${keyword}`), bytes: 10 });
const status = (keyword: string): SessionEvent => ({ type: 'AGENT.STATUS', keyword, line: lineOf(`S ${keyword}`), bytes: 10 });
const client = (type: ClientLineEvent['type'], verb: CommandVerb = ''): SessionEvent => ({ type, verb, line: lineOf(verb), bytes: 10 });

function greeted() {
  const h = harness();
  h.send({ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'));
  h.taken();
  return h;
}

describe('session machine', () => {
  it('dials, relays the greeting and becomes ready', () => {
    const h = harness();
    expect(h.state()).toBe('connecting.reaching.dialing');
    expect(h.taken()).toEqual(['dialAgent']);
    h.send({ type: 'AGENT_CONNECTED' }, agent('AGENT.COMMENT'), agent('AGENT.OK'));
    expect(h.state()).toBe('awaitingCommand.ready');
    expect(h.taken()).toEqual(['relayToClient', 'relayToClient']);
  });

  it('forwards # and empty lines without waiting for a reply', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMENT'), client('CLIENT.COMMENT'));
    expect(h.state()).toBe('awaitingCommand.ready');
    expect(h.taken()).toEqual(['forwardToAgent', 'forwardToAgent']);
  });

  it('runs a command: waiting, relaying status and data lines live, ready again on OK', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'GETINFO'));
    expect(h.state()).toBe('command.waitingForAgent');
    expect(h.taken()).toEqual(['beginCommand {"verb":"GETINFO"}', 'forwardToAgent']);
    h.send(status('PROGRESS'));
    expect(h.state()).toBe('command.sendingToClient');
    h.send(agent('AGENT.DATA'), agent('AGENT.DATA'));
    expect(h.state()).toBe('command.sendingToClient');
    h.send(agent('AGENT.OK'));
    expect(h.state()).toBe('awaitingCommand.ready');
    expect(h.taken()).toEqual(['relayToClient', 'relayToClient', 'relayToClient', 'relayToClient', 'endCommand {"outcome":"ok"}']);
    expect(h.actor.getSnapshot().context.command).toBe('GETINFO');
  });

  it('the relaying actions write the line that came in the event', () => {
    const written: Array<{ to: string; line: LineHandle }> = [];
    const machine = sessionMachine.provide({
      actions: {
        relayToClient: ({ event }) => void written.push({ to: 'client', line: (event as AgentLineEvent).line }),
        forwardToAgent: ({ event }) => void written.push({ to: 'agent', line: (event as ClientLineEvent).line }),
      },
    });
    const actor = createActor(machine, { input: { sessionId: 't' }, clock: new SimulatedClock() }).start();
    const greeting: SessionEvent = { type: 'AGENT.OK', line: lineOf('OK Pleased to meet you'), bytes: 23 };
    const command: SessionEvent = { type: 'CLIENT.COMMAND', verb: 'NOP', line: lineOf('NOP'), bytes: 4 };
    const answer: SessionEvent = { type: 'AGENT.OK', line: lineOf('OK'), bytes: 3 };
    for (const event of [{ type: 'AGENT_CONNECTED' } as const, greeting, command, answer]) actor.send(event);
    expect(written).toEqual([
      { to: 'client', line: greeting.line },
      { to: 'agent', line: command.line },
      { to: 'client', line: answer.line },
    ]);
    expect(written.map((w) => w.line.take().toString())).toEqual(['OK Pleased to meet you\n', 'NOP\n', 'OK\n']);
    actor.stop();
  });

  it('moves to sendingToAgent while the agent does not take our bytes, back to waitingForAgent once it does', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'NOP'), { type: 'AGENT_BLOCKED' });
    expect(h.state()).toBe('command.sendingToAgent');
    h.send({ type: 'AGENT_DRAINED' });
    expect(h.state()).toBe('command.waitingForAgent');
    expect(h.taken()).toEqual(['beginCommand {"verb":"NOP"}', 'forwardToAgent']);
  });

  it('an answer may start while the agent still has part of the request pending', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'NOP'), { type: 'AGENT_BLOCKED' }, status('PROGRESS'));
    expect(h.state()).toBe('command.sendingToClient');
    h.send({ type: 'AGENT_DRAINED' }, agent('AGENT.OK'));
    expect(h.state()).toBe('awaitingCommand.ready');
  });

  it('goes through bufferingCommand while a command line is incomplete', () => {
    const h = greeted();
    h.send({ type: 'CLIENT_PARTIAL', bytes: 3 });
    expect(h.state()).toBe('awaitingCommand.bufferingCommand');
    h.send(client('CLIENT.COMMENT'));
    expect(h.state()).toBe('awaitingCommand.ready');
    h.send({ type: 'CLIENT_PARTIAL', bytes: 3 }, client('CLIENT.COMMAND', 'NOP'));
    expect(h.state()).toBe('command.waitingForAgent');
  });

  it('answers several INQUIREs in one command, relaying D lines until END', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'PKDECRYPT'), inquire('CIPHERTEXT'));
    expect(h.state()).toBe('command.bufferingInquire.answering');
    expect(h.actor.getSnapshot().context.inquire).toBe('CIPHERTEXT');
    h.send(client('CLIENT.DATA', 'D'), client('CLIENT.COMMENT'), client('CLIENT.DATA', 'D'), client('CLIENT.END', 'END'));
    expect(h.state()).toBe('command.waitingForAgent');
    h.send(status('INQUIRE_MAXLEN'), inquire('PASSPHRASE'));
    expect(h.state()).toBe('command.bufferingInquire.answering');
    h.send(client('CLIENT.DATA', 'D'), client('CLIENT.END', 'END'), agent('AGENT.DATA'), agent('AGENT.OK'));
    expect(h.state()).toBe('awaitingCommand.ready');
    expect(h.actor.getSnapshot().context.inquire).toBe('');
    const effects = h.taken();
    expect(effects.filter((e) => e === 'forwardToAgent')).toHaveLength(7);
    expect(effects.at(-1)).toBe('endCommand {"outcome":"ok"}');
  });

  it('CAN ends an INQUIRE like END does', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'PKSIGN'), inquire('PASSPHRASE'), client('CLIENT.CAN', 'CAN'));
    expect(h.state()).toBe('command.waitingForAgent');
    h.send(agent('AGENT.ERR'));
    expect(h.state()).toBe('awaitingCommand.ready');
  });

  it('refuses a malformed D line: drops the rest of the answer, cancels at the agent, answers its own ERR', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'PKDECRYPT'), inquire('CIPHERTEXT'));
    h.taken();
    h.send(client('CLIENT.MALFORMED_DATA', 'D'));
    expect(h.state()).toBe('command.bufferingInquire.discarding');
    h.send(client('CLIENT.DATA', 'D'), client('CLIENT.END', 'END'));
    expect(h.state()).toBe('command.waitingForAgent');
    // Dropped lines leave no effect: only the CAN that ends the agent's reader in their place.
    expect(h.taken()).toEqual(['cancelAgentInquiry']);
    h.send(agent('AGENT.ERR'));
    expect(h.state()).toBe('awaitingCommand.ready');
    expect(h.taken()).toEqual(['answerClient {"answer":"malformedEscape"}', 'endCommand {"outcome":"refused"}']);
    expect(h.actor.getSnapshot().context.owedAnswer).toBeNull();
  });

  it('refuses an over-long line inside an INQUIRE the same way', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'IMPORT_KEY'), inquire('KEYDATA'), { type: 'CLIENT.TOO_LONG', bytes: 5000 });
    expect(h.state()).toBe('command.bufferingInquire.discarding');
    h.send(client('CLIENT.END', 'END'), agent('AGENT.ERR'));
    expect(h.taken()).toContain('answerClient {"answer":"lineTooLong"}');
  });

  it('answers an over-long command line itself and stays usable', () => {
    const h = greeted();
    h.send({ type: 'CLIENT.TOO_LONG', bytes: 2000 });
    expect(h.state()).toBe('awaitingCommand.ready');
    expect(h.taken()).toEqual(['answerClient {"answer":"lineTooLong"}', 'endCommand {"outcome":"refused"}']);
  });

  it('when the agent ends the command mid-answer, its reader is done: the rest of the answer goes to it as commands, as directly', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'PRESET_PASSPHRASE'), inquire('PASSPHRASE'), client('CLIENT.DATA', 'D'), agent('AGENT.ERR'));
    expect(h.state()).toBe('awaitingCommand.ready');
    h.taken();
    h.send(client('CLIENT.DATA', 'D'));
    expect(h.state()).toBe('command.waitingForAgent');
    expect(h.taken()).toContain('forwardToAgent');
  });

  it('a D line ends an INQUIRE that takes no data: what follows waits for the command to end, then is a command', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'GET_PASSPHRASE'), inquire('PINENTRY_LAUNCHED'));
    expect(h.state()).toBe('command.bufferingInquire.acknowledging');
    h.send(client('CLIENT.DATA', 'D'));
    // The agent runs the pinentry now; it reads nothing until the command ends.
    expect(h.state()).toBe('command.waitingForAgent');
    expect(h.actor.getSnapshot().hasTag('clientInput')).toBe(false);
    h.send(agent('AGENT.OK'));
    expect(h.state()).toBe('awaitingCommand.ready');
    h.taken();
    h.send({ type: 'CLIENT.COMMAND', verb: 'PRESET_PASSPHRASE', line: lineOf('PRESET_PASSPHRASE'), bytes: 10, refusedBy: 'deny' });
    expect(h.taken()).toEqual([
      `beginCommand ${JSON.stringify({ verb: 'PRESET_PASSPHRASE' })}`,
      `noteRefusal ${JSON.stringify({ verb: 'PRESET_PASSPHRASE', rule: 'deny', during: 'command' })}`,
      `answerClient ${JSON.stringify({ answer: 'forbidden' })}`,
      `endCommand ${JSON.stringify({ outcome: 'refused' })}`,
    ]);
  });

  it('inside an INQUIRE, a line the policy forbids is replaced by CAN, and the client gets ERR Forbidden for the command', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'PKDECRYPT'), inquire('CIPHERTEXT'), client('CLIENT.DATA', 'D'));
    h.taken();
    h.send({ type: 'CLIENT.COMMAND', verb: 'KEYINFO', line: lineOf('KEYINFO'), bytes: 10, refusedBy: 'allow' });
    expect(h.taken()).toEqual(['cancelAgentInquiry', `noteRefusal ${JSON.stringify({ verb: 'KEYINFO', rule: 'allow', during: 'inquire' })}`]);
    h.send(agent('AGENT.ERR'));
    expect(h.taken()).toEqual([`answerClient ${JSON.stringify({ answer: 'forbidden' })}`, `endCommand ${JSON.stringify({ outcome: 'refused' })}`]);
    expect(h.actor.getSnapshot().context.refusedVerb).toBe('KEYINFO');
  });

  it('a half-close inside an INQUIRE is passed on, unfinished line included, and the agent\'s answer awaited', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'PKDECRYPT'), inquire('CIPHERTEXT'));
    h.taken();
    h.send({ type: 'CLIENT_EOF' });
    expect(h.state()).toBe('command.waitingForAgent');
    expect(h.taken()).toEqual([`endAgentInput ${JSON.stringify({ withPartialLine: true })}`]);
    h.send(agent('AGENT.ERR'));
    expect(h.state()).toBe('closing');
  });

  it('restricted: the proxy\'s own OPTION goes to the agent after the greeting, before any client line is taken', () => {
    const h = harness({ restrictAgent: true });
    h.send({ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'));
    expect(h.state()).toBe('connecting.restricting');
    expect(h.actor.getSnapshot().hasTag('clientInput')).toBe(false);
    expect(h.taken()).toEqual(['dialAgent', 'relayToClient', 'restrictAgent']);
    h.send(status('PROGRESS'), agent('AGENT.OK'));
    expect(h.state()).toBe('awaitingCommand.ready');
    // The agent's answer is the proxy's, not the client's: nothing of it is relayed.
    expect(h.taken()).toEqual([]);
  });

  it('inquiry timeout: a client that never finishes its answer is told, and the session closes', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'PKSIGN'), inquire('PASSPHRASE'));
    h.clock.increment(599);
    expect(h.state()).toBe('command.bufferingInquire.answering');
    h.clock.increment(1);
    expect(h.state()).toBe('fatal');
    expect(h.actor.getSnapshot().context.failure).toEqual({ reason: 'inquiryTimeout' });
  });

  it('BYE: relays OK closing connection, closes both sides, ends when both sockets closed', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'BYE'), agent('AGENT.OK_CLOSING'));
    expect(h.state()).toBe('closing');
    expect(h.taken()).toContain('closeGracefully');
    h.send({ type: 'AGENT_CLOSED', code: 'EOF' }, { type: 'SOCKETS_CLOSED' });
    expect(h.state()).toBe('closed');
    expect(h.actor.getSnapshot().status).toBe('done');
  });

  it('a client EOF while a command is in flight is passed on to the agent; the answer is still relayed, then closing', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'GETINFO'), { type: 'CLIENT_EOF' });
    expect(h.state()).toBe('command.waitingForAgent');
    expect(h.taken()).toContain(`endAgentInput ${JSON.stringify({ withPartialLine: true })}`);
    h.send(agent('AGENT.DATA'), agent('AGENT.OK'));
    expect(h.state()).toBe('closing');
    expect(h.taken()).toEqual(['relayToClient', 'relayToClient', 'endCommand {"outcome":"ok"}', 'closeGracefully']);
  });

  it('an INQUIRE for a client that has already ended is relayed, and the agent\'s answer to the EOF awaited', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'PKDECRYPT'), { type: 'CLIENT_EOF' }, inquire('CIPHERTEXT'));
    expect(h.state()).toBe('command.waitingForAgent');
    h.send(agent('AGENT.ERR'));
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
    ['connect timeout', {}, [], 100, { reason: 'connectTimeout', attempts: 1 }],
    ['greeting timeout', {}, [{ type: 'AGENT_CONNECTED' }], 200, { reason: 'greetingTimeout' }],
    ['restrict timeout', { restrictAgent: true }, [{ type: 'AGENT_CONNECTED' }, agent('AGENT.OK')], 200, { reason: 'restrictTimeout' }],
  ] as const)('%s ends in fatal with its reason', (_, options, events, ms, failure) => {
    const h = harness(options);
    h.send(...(events as readonly SessionEvent[]));
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
    expect(h.state()).toBe('connecting.reaching.backingOff');
    h.clock.increment(10);
    expect(h.state()).toBe('connecting.reaching.dialing');
    expect(h.taken()).toEqual(['dialAgent', 'dialAgent']);
    h.send({ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'));
    expect(h.state()).toBe('awaitingCommand.ready');
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
    h.send(client('CLIENT.COMMAND', 'PKSIGN'));
    h.clock.increment(24 * 3600 * 1000);
    expect(h.state()).toBe('command.waitingForAgent');
  });

  it.each([
    ['awaitingCommand.ready', []],
    ['awaitingCommand.bufferingCommand', [{ type: 'CLIENT_PARTIAL', bytes: 1 }]],
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
    h.send(client('CLIENT.COMMAND', 'PKSIGN'));
    h.clock.increment(10 * 400);
    expect(h.state()).toBe('command.waitingForAgent');
    h.send(agent('AGENT.OK'));
    h.clock.increment(399);
    expect(h.state()).toBe('awaitingCommand.ready');
    h.clock.increment(1);
    expect(h.state()).toBe('fatal');
  });

  it('comment lines do not keep an idle session open', () => {
    const h = greeted();
    h.clock.increment(300);
    h.send(client('CLIENT.COMMENT'));
    h.clock.increment(100);
    expect(h.state()).toBe('fatal');
  });

  it('response timeout (when on): the agent silent past it ends the session with ERR Timeout', () => {
    const h = harness({ responseTimeoutOn: true });
    h.send({ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), client('CLIENT.COMMAND', 'PKSIGN'));
    h.clock.increment(499);
    expect(h.state()).toBe('command.waitingForAgent');
    h.clock.increment(1);
    expect(h.state()).toBe('fatal');
    expect(h.taken().at(-1)).toBe(`abortSession ${JSON.stringify({ failure: { reason: 'responseTimeout' } })}`);
  });

  it('response timeout (when on): counts per request, and an answer in time stops it', () => {
    const h = harness({ responseTimeoutOn: true });
    h.send({ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), client('CLIENT.COMMAND', 'PKSIGN'));
    h.clock.increment(499);
    h.send(agent('AGENT.OK'), client('CLIENT.COMMAND', 'NOP'));
    h.clock.increment(499);
    h.send(agent('AGENT.OK'));
    // Past the response timeout, within the idle timeout (400 here).
    h.clock.increment(399);
    expect(h.state()).toBe('awaitingCommand.ready');
  });

  it('response timeout (when on): counts from when the agent has taken the whole request', () => {
    const h = harness({ responseTimeoutOn: true });
    h.send({ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), client('CLIENT.COMMAND', 'PKSIGN'));
    h.clock.increment(499);
    h.send({ type: 'AGENT_BLOCKED' });
    // An agent that does not read is no slow answer: the stall is the runtime's flow control, not a timeout.
    h.clock.increment(10 * 500);
    expect(h.state()).toBe('command.sendingToAgent');
    h.send({ type: 'AGENT_DRAINED' });
    h.clock.increment(499);
    expect(h.state()).toBe('command.waitingForAgent');
    h.clock.increment(1);
    expect(h.state()).toBe('fatal');
    expect(h.actor.getSnapshot().context.failure).toEqual({ reason: 'responseTimeout' });
  });

  it.each(['CLIENT.COMMAND', 'CLIENT.DATA', 'CLIENT.END', 'CLIENT.CAN', 'CLIENT.MALFORMED_DATA'] as const)(
    'a %s line the policy forbids is answered by the proxy, never forwarded',
    (type) => {
      const h = greeted();
      h.send({ type, verb: 'PKSIGN', line: lineOf('PKSIGN'), bytes: 10, refusedBy: 'restricted' });
      expect(h.state()).toBe('awaitingCommand.ready');
      const effects = h.taken();
      expect(effects).not.toContain('forwardToAgent');
      expect(effects).toContain(`answerClient ${JSON.stringify({ answer: 'forbidden' })}`);
    },
  );

  it.each([
    ['connect failure', [{ type: 'AGENT_CONNECT_FAILED', code: 'ENOENT' }], { reason: 'connectFailed', code: 'ENOENT' }, {}],
    ['agent gone while idle', [{ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), { type: 'AGENT_CLOSED', code: 'EOF' }], { reason: 'agentClosed', code: 'EOF' }, {}],
    [
      'agent gone mid-command',
      [{ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), client('CLIENT.COMMAND', 'PKSIGN'), { type: 'AGENT_CLOSED', code: 'ECONNRESET' }],
      { reason: 'agentClosed', code: 'ECONNRESET' },
      {},
    ],
    ['bad greeting', [{ type: 'AGENT_CONNECTED' }, agent('AGENT.ERR')], { reason: 'badGreeting' }, {}],
    ['agent refuses the restriction', [{ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), agent('AGENT.ERR')], { reason: 'restrictFailed' }, { restrictAgent: true }],
    ['non-Assuan answer', [{ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), client('CLIENT.COMMAND', 'NOP'), agent('AGENT.INVALID')], { reason: 'agentProtocolViolation' }, {}],
    ['output with no command', [{ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), status('PROGRESS')], { reason: 'unsolicitedAgentOutput' }, {}],
  ] as const)('%s ends in fatal with its reason', (_, events, failure, options) => {
    const h = harness(options);
    h.send(...(events as readonly SessionEvent[]));
    expect(h.state()).toBe('fatal');
    expect(h.actor.getSnapshot().context.failure).toEqual(failure);
  });

  it('an agent that answers the restricting OPTION with Forbidden is restricted already (its extra socket): the session goes on', () => {
    const h = harness({ restrictAgent: true });
    h.send({ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), { type: 'AGENT.ERR', code: 67109115, line: lineOf('ERR 67109115 Forbidden'), bytes: 23 });
    expect(h.state()).toBe('awaitingCommand.ready');
    // Any other refusal still ends the session: the connection would not be restricted.
    const other = harness({ restrictAgent: true });
    other.send({ type: 'AGENT_CONNECTED' }, agent('AGENT.OK'), { type: 'AGENT.ERR', code: 67108949, line: lineOf('ERR 67108949 x'), bytes: 15 });
    expect(other.state()).toBe('fatal');
  });

  it('an event the state does not handle is rejected explicitly and changes nothing', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'NOP'));
    h.taken();
    h.send(client('CLIENT.COMMAND', 'NOP'));
    expect(h.state()).toBe('command.waitingForAgent');
    expect(h.taken()).toEqual(['rejectEvent {"type":"CLIENT.COMMAND"}']);
  });

  it('context holds no protocol bytes, only kinds, verbs and reasons', () => {
    const h = greeted();
    h.send(client('CLIENT.COMMAND', 'PKDECRYPT'), inquire('PASSPHRASE'), client('CLIENT.MALFORMED_DATA', 'D'));
    expect(Object.keys(h.actor.getSnapshot().context).sort()).toEqual([
      'clientEnded', 'command', 'connectAttempts', 'consent', 'failure', 'inquire', 'launchTried', 'mayLaunchAgent', 'needsCryptoSlot', 'owedAnswer', 'refusedVerb', 'responseTimeoutOn',
      'restrictAgent', 'sessionId', 'stopRequested',
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
      mayLaunchAgent: false,
      launchTried: false,
      consent: null,
      needsCryptoSlot: false,
    });
  });

  it.each([
    [{ connecting: { reaching: 'dialing' } }, 'connecting'],
    [{ awaitingCommand: 'ready' }, 'ready'],
    [{ awaitingCommand: 'bufferingCommand' }, 'bufferingCommand'],
    [{ command: 'sendingToClient' }, 'sendingToClient'],
    [{ command: { bufferingInquire: 'answering' } }, 'bufferingInquire'],
    ['closing', 'closing'],
  ] as const)('stateName(%j) is the design card\'s %s', (value, name) => {
    expect(stateName(value)).toBe(name);
  });
});
