/**
 * The session machine's effects, implemented once against the two endpoints, from a named set of dependencies.
 * Each action of the machine calls one method here with what it needs as arguments: the line to relay travels in
 * the event, the verb and the failure in the context.
 *
 * The provided machine is built once per timeouts object (the server passes one to all its sessions): a machine
 * per session held its own copy of every state node, ~64 KiB of heap each (measured). So the actions find their
 * session's effects through the actor that runs them, in one WeakMap lookup.
 */
import type { Logger } from 'pino';
import type { AnyActorRef } from 'xstate';
import { sessionMachine, type CommandOutcome, type PolicyRule, type ProxyAnswer, type SessionEvent, type SessionFailure } from '../../machines/session.js';
import type { CommandVerb } from '../protocol/classify.js';
import type { LineHandle } from '../protocol/line.js';
import type { SessionAudit } from '../audit/sessionAudit.js';
import type { ConsentOperation } from '../consent/consentRequest.js';
import type { KeySelection } from './keySelection.js';
import * as answers from './answers.js';
import type { LineEndpoint } from './lineEndpoint.js';
import type { SessionStats } from './stats.js';

export interface SessionTimeouts {
  connectMs: number;
  greetingMs: number;
  /** From the greeting, or the end of the last answer, to the next complete command. */
  idleMs: number;
  /** From an INQUIRE reaching the client to the end of its answer. */
  inquiryMs: number;
  /** From a request reaching the agent to its first line of answer; undefined: no limit (the default). */
  responseMs?: number | undefined;
  /** For the person to answer a consent prompt (`--confirm`); 60 s when not given. */
  consentMs?: number | undefined;
  closeGraceMs: number;
}

export interface EffectDependencies {
  client: LineEndpoint;
  /** The agent's endpoint, once dialed (replaced by each retry). */
  agent(): LineEndpoint | undefined;
  /** Opens a new connection to the agent. */
  dialAgent(): void;
  /** Runs the socket file's handshake on the connection just opened. */
  handshakeAgent(): void;
  /** Starts the daemon. */
  launchAgent(): void;
  stats: SessionStats;
  log: Logger;
  failureSetting: answers.FailureSetting;
  /** The session's audit records (`--audit`), if asked for. */
  audit?: SessionAudit | undefined;
  /** The key and hash the agent holds for the connection, followed when the audit or a consent prompt needs them. */
  selection?: KeySelection | undefined;
  /** Asks the person to approve a held command (`--confirm`); the session reports the decision as an event. */
  askConsent(operation: ConsentOperation, line: LineHandle): void;
  withdrawConsent(): void;
  /** Queues for a crypto slot (`--max-crypto`); the session reports the grant as an event. */
  requestCryptoSlot(line: LineHandle): void;
  leaveCryptoQueue(): void;
  /** The command's answer ended: a slot it held is given back. */
  releaseCryptoSlot(): void;
  closeGraceMs: number;
}

export class SessionEffects {
  private readonly debug: boolean;

  constructor(private readonly deps: EffectDependencies) {
    this.debug = deps.log.isLevelEnabled('debug');
  }

  dialAgent(): void {
    this.deps.dialAgent();
  }

  handshakeAgent(): void {
    this.deps.handshakeAgent();
  }

  launchAgent(): void {
    this.deps.launchAgent();
  }

  restrictAgent(): void {
    this.deps.agent()?.write(answers.RESTRICT_CONNECTION);
  }

  /** `secret`: the answer of a command whose answer is secret (intake published no size for it). */
  relayToClient(line: LineHandle, secret: boolean): void {
    this.deps.stats.sentToClient(line.length, secret);
    this.deps.client.write(line.take());
  }

  forwardToAgent(line: LineHandle): void {
    this.deps.stats.sentToAgent(line.length);
    this.deps.agent()?.write(line.take());
  }

  cancelAgentInquiry(): void {
    this.deps.agent()?.write(answers.CANCEL_INQUIRY);
  }

  answerClient(answer: ProxyAnswer | null, refusedVerb: string): void {
    if (answer === null) return;
    const line = answers.refusal(answer, refusedVerb);
    this.deps.stats.sentToClient(line.length, false);
    this.deps.client.write(line);
  }

  noteRefusal(verb: CommandVerb, rule: PolicyRule | undefined, during: 'command' | 'inquire', line: LineHandle | undefined): void {
    // gpg sends these on every connection: dropping them is routine, not news for the log or the audit.
    if (rule === 'environment' && during === 'command') {
      if (this.debug) this.deps.log.debug({ verb, rule }, "an OPTION for the pinentry's environment was acknowledged and dropped");
      return;
    }
    this.deps.stats.refused++;
    // Every refusal is visible at the default level: which verb, which rule, and where the agent's reader was.
    this.deps.log.info({ verb, rule, during }, 'refused by policy');
    this.deps.audit?.refused(verb, rule, during, line?.take());
  }

  beginCommand(verb: CommandVerb, line: LineHandle | undefined): void {
    this.deps.stats.beginCommand();
    if (this.debug) this.deps.log.debug({ verb }, 'command');
    if (!line) return;
    const bytes = line.take();
    this.deps.selection?.commandBegins(verb, bytes);
    this.deps.audit?.commandBegins(verb, bytes);
  }

  /**
   * `agent`: how the agent answered, if it did (the proxy answers a refused command itself); `code`: its ERR's;
   * `consent`: how a command that needed the person's approval got it.
   */
  endCommand(verb: string, outcome: CommandOutcome, agent: 'ok' | 'err' | undefined, code: number | undefined, consent: 'prompt' | 'window' | null): void {
    if (this.debug) this.deps.log.debug({ verb, outcome, ...this.deps.stats.commandRecord() }, 'command done');
    this.deps.releaseCryptoSlot();
    this.deps.selection?.commandEnds(agent);
    this.deps.audit?.commandEnds(outcome, agent, code, consent ?? undefined);
  }

  askConsent(operation: ConsentOperation, line: LineHandle): void {
    this.deps.askConsent(operation, line);
  }

  withdrawConsent(): void {
    this.deps.withdrawConsent();
  }

  requestCryptoSlot(line: LineHandle): void {
    this.deps.requestCryptoSlot(line);
  }

  leaveCryptoQueue(): void {
    this.deps.leaveCryptoQueue();
  }

  /** One ERR line naming the cause to the client, after what was relayed before; the agent's side is torn down. */
  abortSession(failure: SessionFailure | null): void {
    const { client } = this.deps;
    const agent = this.deps.agent();
    const { line, reason } = answers.failure(failure, this.deps.failureSetting);
    this.deps.log.warn({ failure }, `session failed: ${reason}`);
    client.dropInput();
    agent?.discardQueued();
    if (client.writable) {
      this.deps.stats.sentToClient(line.length, false);
      client.endOutput(line, () => client.destroy());
      // A client that never reads must not keep the socket alive.
      setTimeout(() => client.destroy(), this.deps.closeGraceMs).unref();
    }
    agent?.destroy();
  }

  endAgentInput(withPartialLine: boolean): void {
    const agent = this.deps.agent();
    if (withPartialLine) {
      // Never executed: the agent's reader fails on the EOF behind it (Incomplete line).
      const partial = this.deps.client.framer.takePartial();
      if (partial.length > 0) agent?.write(partial);
    }
    agent?.endOutput();
  }

  closeGracefully(): void {
    const { client } = this.deps;
    client.endOutput();
    // Read on (and drop) until the client closes, so that its close is seen.
    client.dropInput();
    this.deps.agent()?.endOutput();
  }

  destroySockets(): void {
    this.deps.client.destroy();
    this.deps.agent()?.destroy();
  }

  rejectEvent(type: string, state: unknown): void {
    this.deps.log.warn({ event: type, state: JSON.stringify(state) }, 'event not handled in this state; ignored');
  }
}

const effectsByActor = new WeakMap<AnyActorRef, SessionEffects>();
const machines = new WeakMap<SessionTimeouts, ReturnType<typeof sessionMachine.provide>>();
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The session machine with these timeouts, its actions calling the effects bound to the actor that runs them. */
export function sessionMachineFor(timeouts: SessionTimeouts) {
  const cached = machines.get(timeouts);
  if (cached) return cached;
  const of = (self: AnyActorRef): SessionEffects => effectsByActor.get(self)!;
  const lineOf = (event: SessionEvent): LineHandle => (event as { line: LineHandle }).line;
  const lineIn = (event: SessionEvent): LineHandle | undefined => ('line' in event ? event.line : undefined);
  const agentAnswer = (event: SessionEvent): 'ok' | 'err' | undefined =>
    event.type === 'AGENT.OK' || event.type === 'AGENT.OK_CLOSING' ? 'ok' : event.type === 'AGENT.ERR' ? 'err' : undefined;
  const machine = sessionMachine.provide({
    actions: {
      dialAgent: ({ self }) => of(self).dialAgent(),
      handshakeAgent: ({ self }) => of(self).handshakeAgent(),
      launchAgent: ({ self }) => of(self).launchAgent(),
      restrictAgent: ({ self }) => of(self).restrictAgent(),
      relayToClient: ({ self, event }) => of(self).relayToClient(lineOf(event), !('bytes' in event)),
      forwardToAgent: ({ self, event }) => of(self).forwardToAgent(lineOf(event)),
      cancelAgentInquiry: ({ self }) => of(self).cancelAgentInquiry(),
      answerClient: ({ self, context }, { answer }) => of(self).answerClient(answer, context.refusedVerb),
      noteRefusal: ({ self, event }, { verb, rule, during }) => of(self).noteRefusal(verb, rule, during, lineIn(event)),
      beginCommand: ({ self, event }, { verb }) => of(self).beginCommand(verb, lineIn(event)),
      endCommand: ({ self, context, event }, { outcome }) =>
        of(self).endCommand(context.command, outcome, agentAnswer(event), event.type === 'AGENT.ERR' ? event.code : undefined, context.consent),
      askConsent: ({ self, event }, { operation }) => of(self).askConsent(operation, lineOf(event)),
      withdrawConsent: ({ self }) => of(self).withdrawConsent(),
      requestCryptoSlot: ({ self, event }) => of(self).requestCryptoSlot(lineOf(event)),
      leaveCryptoQueue: ({ self }) => of(self).leaveCryptoQueue(),
      abortSession: ({ self }, { failure }) => of(self).abortSession(failure),
      endAgentInput: ({ self }, { withPartialLine }) => of(self).endAgentInput(withPartialLine),
      closeGracefully: ({ self }) => of(self).closeGracefully(),
      destroySockets: ({ self }) => of(self).destroySockets(),
      rejectEvent: ({ self }, { type }) => of(self).rejectEvent(type, self.getSnapshot().value),
    },
    delays: {
      connectTimeout: timeouts.connectMs,
      // Past gpgconf's own 15 s bound, so that its failure, with its reason, normally comes first.
      launchTimeout: 20_000,
      greetingTimeout: timeouts.greetingMs,
      idleTimeout: timeouts.idleMs,
      inquiryTimeout: timeouts.inquiryMs,
      // Never fires when off (the guard reads responseTimeoutOn); a timer may not exceed 2^31-1 ms.
      responseTimeout: timeouts.responseMs ?? MAX_TIMER_MS,
      closeGrace: timeouts.closeGraceMs,
      consentTimeout: timeouts.consentMs ?? 60_000,
    },
  });
  machines.set(timeouts, machine);
  return machine;
}

export function bindEffects(actor: AnyActorRef, effects: SessionEffects): void {
  effectsByActor.set(actor, effects);
}
