/**
 * One client connection: the session actor, the client's endpoint, the agent's endpoint once dialed, and the
 * intake between them. No bytes are handled here, only routed:
 *
 *   socket → endpoint (framer) → intake (line → event) → machine → effects (endpoint write) → socket
 *
 * The machine decides when client lines may be taken (states tagged `clientInput`): lines pipelined behind a
 * command in flight stay in the client's framer, in order, and are taken when the answer is complete.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import { stateName, type SessionEvent, type SessionFailure } from '../../machines/session.js';
import type { CommandPolicy } from '../policy.js';
import { commandAnswerIsSecret, inquiryAnswerIsSecret } from '../protocol/inquiries.js';
import type { FailureSetting } from './answers.js';
import { bindEffects, SessionEffects, sessionMachineFor, type SessionTimeouts } from './effects.js';
import { takeAgentEvent, takeClientEvent } from './intake.js';
import { LineEndpoint } from './lineEndpoint.js';
import type { SpareConnection } from './spareConnection.js';
import type { AuditLog } from '../audit/auditLog.js';
import { SessionAudit } from '../audit/sessionAudit.js';
import type { ConsentDesk } from '../consent/consentDesk.js';
import type { CallerDescription, ConsentOperation, ConsentRequest } from '../consent/consentRequest.js';
import type { KeyNames } from '../consent/keyNames.js';
import { cardKeyOf, consentOperation } from '../consent/consentRequest.js';
import { KeySelection } from './keySelection.js';
import type { CryptoSlots, CryptoSlotTicket } from './cryptoSlots.js';
import type { LineHandle } from '../protocol/line.js';
import { dialUpstream } from '../upstream/dial.js';
import type { UpstreamHandshake } from '../upstream/handshake.js';
import type { UpstreamTarget } from '../upstream/daemons.js';
import { SessionStats, type SessionInfo, type SessionSummary } from './stats.js';

export type { SessionInfo, SessionSummary } from './stats.js';
export type { SessionTimeouts } from './effects.js';

export interface SessionOptions {
  sessionId: string;
  /** The client's connection: a Unix socket, or an HTTP/2 stream of a bridge link. */
  client: Duplex;
  /** The daemon this session is relayed to. */
  upstream: UpstreamTarget;
  timeouts: SessionTimeouts;
  logger: Logger;
  /** Client bytes held while not being taken (pipelined lines, a partial line) before the client is paused. */
  maxBufferedClientBytes: number;
  /** Which lines may reach the agent as commands; undefined relays all. */
  policy?: CommandPolicy | undefined;
  /** Ask the agent itself to run this connection restricted (`OPTION pretend-request-origin=remote`) first. */
  restrictAgent?: boolean;
  /** A connection to the agent dialed and greeted ahead of this client, if one is ready (see spareConnection.ts). */
  takeSpareConnection?: (() => SpareConnection | undefined) | undefined;
  clock?: { setTimeout(fn: (...args: unknown[]) => void, ms: number): unknown; clearTimeout(id: unknown): void };
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  onEnd?: (summary: SessionSummary) => void;
  /** The bridge link the client came over, named in the session's listing. */
  link?: string;
  /** Where the session's audit records go (`--audit`), if anywhere. */
  audit?: AuditLog | undefined;
  /** Key uses the person must approve first (`--confirm`), and where that is decided. */
  consent?: SessionConsent | undefined;
  /** Who is on the other end of a local client's socket (src/peer/callerIdentity.ts), for prompts and records. */
  identifyCaller?: (() => Promise<CallerDescription | undefined>) | undefined;
  /** The upstream's crypto slots (`--max-crypto`), shared by its sessions; undefined: no limit. */
  cryptoSlots?: CryptoSlots | undefined;
  /** User IDs by keygrip, for audit records (the consent prompt's come with `consent`). */
  keyNames?: KeyNames | undefined;
}

export interface SessionConsent {
  /** The operations that need approval; a command that is one of them waits in awaitingConsent. */
  readonly operations: ReadonlySet<ConsentOperation>;
  /** Shared by every session of the proxy: one prompt at a time, and the decision windows. */
  readonly desk: ConsentDesk;
  /** The user IDs prompts name keys by. */
  readonly keyNames?: KeyNames | undefined;
}

type SessionActor = Actor<ReturnType<typeof sessionMachineFor>>;

export class Session {
  readonly sessionId: string;
  private readonly actor: SessionActor;
  private readonly client: LineEndpoint;
  private agent: LineEndpoint | undefined;
  /** Dials so far: an answer to an earlier one is stale. */
  private dialAttempts = 0;
  /** The socket file's handshake, for a TCP-emulated upstream, from the last dial. */
  private handshake: UpstreamHandshake | undefined;
  /** The session's audit records (`--audit`), if asked for. */
  private readonly audit: SessionAudit | undefined;
  /** The key and hash the agent holds, followed for the audit and consent prompts (not otherwise: it costs). */
  private readonly selection: KeySelection | undefined;
  /** Who is on the other end, once looked up (local sessions; only when a prompt or a record names it). */
  private caller: CallerDescription | undefined;
  private readonly callerLookup: Promise<void> | undefined;
  /** The open consent request: what it asks (for the live view), and how to withdraw it. */
  private consentPending: { operation: ConsentOperation; keygrip: string | undefined; withdraw?: () => void } | undefined;
  /** The last decision, for the live view. */
  private lastConsent: SessionInfo['lastConsent'];
  /** Consent requests so far: a decision for an earlier one is stale. */
  private consentAsks = 0;
  /** This session's place in the upstream's crypto slots (`--max-crypto`): queued, or holding one. */
  private cryptoTicket: CryptoSlotTicket | undefined;
  /** Which command lines need the person's approval (`--confirm`); undefined: none. */
  private readonly needsConsent: ((line: Buffer) => ConsentOperation | undefined) | undefined;
  /** What a failure message names; which socket file form was dialed is learnt on the way. */
  private readonly failureSetting: FailureSetting;
  /** The Cygwin exchange is under way: bytes read are the handshake's, and a close is its failure. */
  private inHandshake = false;
  private readonly stats = new SessionStats();
  private readonly log: Logger;
  /** Above 0 while received lines are turned into events: writes wait for the end of the batch. */
  private batching = 0;
  /** The re-entry guard of the client pump (an event it sends may end in a call back to it). */
  private pumping = false;
  /** An event is being sent: its writes are flushed once it has been handled, not at each transition. */
  private sending = false;
  /** CLIENT_EOF has been delivered (once). */
  private eofDelivered = false;
  private socketsClosedReported = false;
  private finished = false;

  constructor(private readonly options: SessionOptions) {
    this.sessionId = options.sessionId;
    const consent = options.consent;
    this.needsConsent = consent && ((line: Buffer) => consentOperation(line, consent.operations));
    if (options.audit || consent) {
      this.selection = new KeySelection();
      this.callerLookup = options.identifyCaller?.().then(
        (caller) => void (this.caller = caller),
        () => {},
      );
    }
    const keyNames = options.keyNames ?? consent?.keyNames;
    this.audit =
      options.audit &&
      new SessionAudit(
        options.audit,
        options.sessionId,
        options.link,
        this.selection,
        // A record waits for the lookup of who the caller is (made once per session, bounded).
        () => (this.callerLookup ? this.callerLookup.then(() => this.caller?.text) : undefined),
        keyNames && ((grip) => keyNames.userIdOf(grip)),
      );
    this.failureSetting = { upstreamPath: options.upstream.path, daemon: options.upstream.daemon, idleMs: options.timeouts.idleMs, inquiryMs: options.timeouts.inquiryMs };
    this.log = options.logger.child({ session: options.sessionId });
    this.client = new LineEndpoint(options.client, {
      readable: () => this.pump(),
      ended: () => {
        if (this.client.framer.midLine) this.log.debug('client closed in the middle of a line');
        this.pump();
      },
      failed: (code) => this.send({ type: 'CLIENT_GONE', code }),
      closed: () => {
        if (!this.client.ended) this.send({ type: 'CLIENT_GONE', code: 'CLOSED' });
        this.reportSocketsClosed();
      },
      // A client that does not read pauses the agent instead of growing our buffer, for the idle timeout at most.
      blocked: () => {
        this.agent?.setReading(false);
        this.send({ type: 'CLIENT_BLOCKED' });
      },
      drained: () => {
        this.agent?.setReading(true);
        this.send({ type: 'CLIENT_DRAINED' });
      },
    });

    const effects = new SessionEffects({
      client: this.client,
      agent: () => this.agent,
      dialAgent: () => this.dialAgent(),
      handshakeAgent: () => this.handshakeAgent(),
      launchAgent: () => this.launchAgent(),
      stats: this.stats,
      log: this.log,
      failureSetting: this.failureSetting,
      audit: this.audit,
      selection: this.selection,
      askConsent: (operation, line) => this.askConsent(operation, line),
      withdrawConsent: () => this.withdrawConsent(),
      requestCryptoSlot: (line) => this.requestCryptoSlot(line),
      leaveCryptoQueue: () => this.cryptoTicket?.leaveQueue(),
      releaseCryptoSlot: () => this.releaseCryptoSlot(),
      closeGraceMs: options.timeouts.closeGraceMs,
    });
    this.actor = createActor(sessionMachineFor(options.timeouts), {
      id: `session-${options.sessionId}`,
      input: {
        sessionId: options.sessionId,
        responseTimeoutOn: options.timeouts.responseMs !== undefined,
        restrictAgent: options.restrictAgent ?? false,
        mayLaunchAgent: options.upstream.launch !== undefined,
      },
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.inspect ? { inspect: options.inspect } : {}),
    });
    bindEffects(this.actor, effects);
    this.actor.subscribe({
      next: (snapshot) => {
        if (snapshot.status === 'done') this.finish(snapshot.context.failure);
        // A transition the machine's own timer took (the consent timeout) wrote outside any send: flush it.
        else if (this.batching === 0 && !this.sending) this.flushWrites();
      },
      error: (err) => {
        // A bug in an action must end this session only, never the process or other sessions.
        this.log.error({ err }, 'session machine failed');
        effects.destroySockets();
        this.finish({ reason: 'internalError' });
      },
    });
    // Client bytes are not read before the agent's greeting has been relayed (the server pauses new sockets).
    options.client.pause();
  }

  start(): this {
    this.log.debug('session opened');
    this.actor.start();
    return this;
  }

  /** Server shutdown: close once the command in flight (if any) is done. */
  stop(): void {
    this.send({ type: 'STOP' });
  }

  /** Server shutdown past its drain time: close now, gracefully. */
  stopNow(): void {
    this.send({ type: 'STOP_NOW' });
  }

  /** What a listing of live sessions shows: no payload, only state, verb and counts. */
  info(): SessionInfo {
    const snapshot = this.actor.getSnapshot();
    const secretAnswerOpen = this.inSecretInquiry();
    return {
      sessionId: this.sessionId,
      state: stateName(snapshot.value),
      command: snapshot.context.command,
      ageMs: this.stats.ageMs(),
      bytesFromClient: this.publishedFromClient(),
      bytesToClient: this.stats.publishedToClient(),
      bufferedClientBytes: secretAnswerOpen ? 0 : this.client.framer.bufferedBytes,
      clientPaused: this.client.paused,
      upstreamPendingBytes: this.agent?.pendingBytes ?? 0,
      clientPendingBytes: this.client.pendingBytes,
      agentPaused: this.agent?.paused ?? false,
      ...(this.options.link ? { link: this.options.link } : {}),
      ...(this.consentPending
        ? { pendingConsent: { operation: this.consentPending.operation, ...(this.consentPending.keygrip ? { keygrip: this.consentPending.keygrip } : {}) } }
        : {}),
      ...(this.lastConsent ? { lastConsent: this.lastConsent } : {}),
    };
  }

  // ---- events in -------------------------------------------------------------------------------------------

  private send(event: SessionEvent): void {
    if (this.finished) return;
    this.sending = true;
    try {
      this.actor.send(event);
    } finally {
      this.sending = false;
    }
    if (this.batching === 0) this.flushWrites();
  }

  /** Writes what the effects have queued for each socket: a batch's lines, contiguous in memory, as one write. */
  private flushWrites(): void {
    this.agent?.flush();
    this.client.flush();
  }

  /** Hands queued client lines to the machine for as long as its state takes client input. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    this.batching++;
    const { client } = this;
    try {
      while (!this.finished && !this.agent?.blocked) {
        const snapshot = this.actor.getSnapshot();
        if (!snapshot.hasTag('clientInput')) break;
        const inquire = snapshot.context.inquire;
        const secret = inquire !== '' && inquiryAnswerIsSecret(inquire);
        const event = takeClientEvent(client.framer, { dataRuns: snapshot.hasTag('inquiry'), secret, policy: this.options.policy, consent: this.needsConsent, cryptoSlots: this.options.cryptoSlots !== undefined });
        if (event === undefined) {
          if (!client.ended && client.framer.midLine && snapshot.hasTag('idle')) {
            this.send({ type: 'CLIENT_PARTIAL', bytes: client.framer.partialBytes });
          }
          break;
        }
        if (secret && 'line' in event) this.stats.tookSecretAnswer(event.line.length);
        this.send(event);
      }
      // While a command is in flight, an EOF behind no further line is passed on at once (see endAgentInput).
      if (client.ended && !this.eofDelivered && !this.finished && !client.framer.hasItem()) {
        this.eofDelivered = true;
        this.send({ type: 'CLIENT_EOF' });
      }
    } finally {
      this.pumping = false;
      this.batching--;
    }
    if (this.batching === 0) this.flushWrites();
    this.updateClientFlow();
  }

  /** Reads the client only after the greeting, while the agent takes our writes, and up to the buffer bound. */
  private updateClientFlow(): void {
    const { client } = this;
    if (this.finished || client.ended || client.droppingInput) return;
    const greeted = !this.actor.getSnapshot().matches('connecting');
    client.setReading(greeted && !this.agent?.blocked && client.framer.bufferedBytes < this.options.maxBufferedClientBytes);
  }

  /** Every complete agent line goes to the machine as it arrives; the batch's writes go out once at its end. */
  private takeAgentLines(agent: LineEndpoint): void {
    this.batching++;
    try {
      while (!this.finished) {
        const event = takeAgentEvent(agent.framer, commandAnswerIsSecret(this.actor.getSnapshot().context.command));
        if (event === undefined) break;
        this.send(event);
      }
    } finally {
      this.batching--;
    }
    if (this.batching === 0) this.flushWrites();
    this.pump();
  }

  private dialAgent(): void {
    const spare = this.options.takeSpareConnection?.();
    if (spare) {
      this.useAgentSocket(spare.socket, spare);
      return;
    }
    const attempt = ++this.dialAttempts;
    void dialUpstream(this.options.upstream.path, this.options.upstream.env).then((outcome) => {
      // A retry, or the session's end, makes this attempt stale: what it opened is closed unused.
      const stale = attempt !== this.dialAttempts || this.finished || !this.actor.getSnapshot().matches('connecting');
      if (outcome.kind === 'connected') {
        if (stale) outcome.socket.destroy();
        else {
          this.handshake = outcome.handshake;
          this.failureSetting.socketFileForm = outcome.handshake?.form;
          this.useAgentSocket(outcome.socket, undefined);
          this.send({ type: 'AGENT_CONNECTED', ...(outcome.handshake ? { handshake: outcome.handshake.form } : {}) });
        }
      } else if (stale) {
        return;
      } else if (outcome.kind === 'invalidFile') {
        this.log.warn({ file: outcome.error.file, defect: outcome.error.defect }, outcome.error.message);
        this.send({ type: 'AGENT_UPSTREAM_INVALID', defect: outcome.error.defect });
      } else {
        this.send({ type: 'AGENT_CONNECT_FAILED', code: outcome.code });
      }
    });
  }

  /** Reads and writes the agent's socket as Assuan lines from now on (connected, or a spare with its greeting). */
  private useAgentSocket(socket: Duplex, spare: SpareConnection | undefined): void {
    let goneReported = false;
    // A retry replaces the endpoint: events of an earlier, failed attempt must not reach the machine.
    const current = () => this.agent === endpoint;
    const gone = (code: string) => {
      if (goneReported) return;
      goneReported = true;
      // Closed in the middle of the Cygwin exchange: the handshake names what it was waiting for.
      const cut = this.inHandshake && this.actor.getSnapshot().matches({ connecting: { reaching: 'handshaking' } }) ? this.handshake?.ended().failed : undefined;
      if (cut) return this.send({ type: 'AGENT_HANDSHAKE_FAILED', defect: cut });
      if (endpoint.framer.midLine) this.log.debug('agent closed in the middle of a line');
      this.send({ type: 'AGENT_CLOSED', code });
    };
    const endpoint = new LineEndpoint(socket, {
      readable: () => this.takeAgentLines(endpoint),
      ended: () => {
        if (current()) gone('EOF');
      },
      failed: (code) => {
        if (current()) gone(code);
      },
      closed: () => {
        if (!current()) return;
        gone('EOF');
        this.reportSocketsClosed();
      },
      // An agent that does not read pauses the client instead of growing our buffer.
      blocked: () => {
        this.client.setReading(false);
        this.send({ type: 'AGENT_BLOCKED' });
      },
      drained: () => {
        this.send({ type: 'AGENT_DRAINED' });
        this.pump();
      },
    });
    this.agent = endpoint;
    if (!spare) return;
    // Called from the machine's entry into dialing: what the spare brings is delivered once that step is over.
    queueMicrotask(() => {
      if (this.finished) socket.destroy();
      if (!current() || this.finished) return;
      this.send({ type: 'AGENT_SPARE_TAKEN' });
      endpoint.framer.push(spare.received);
      this.takeAgentLines(endpoint);
      socket.resume();
    });
  }

  /** The socket file's handshake, on the raw bytes before the greeting (src/upstream/handshake.ts). */
  private handshakeAgent(): void {
    const { agent, handshake } = this;
    if (!agent || !handshake) return;
    this.inHandshake = handshake.needsReply;
    const raw = agent.readRaw((chunk) => {
      // A session that has moved on meanwhile (stopped, timed out) drops what the server still sends.
      if (!this.inHandshake || !this.actor.getSnapshot().matches({ connecting: { reaching: 'handshaking' } })) return;
      const step = handshake.receive(chunk);
      if (step.write) agent.writeRaw(step.write);
      if (step.failed) {
        this.inHandshake = false;
        this.send({ type: 'AGENT_HANDSHAKE_FAILED', defect: step.failed });
      } else if (step.done) {
        this.inHandshake = false;
        this.send({ type: 'AGENT_HANDSHAKE_DONE' });
        raw.lines(step.done.leftover);
      }
    });
    agent.writeRaw(handshake.opening());
    // The Windows form asks nothing back: the greeting follows the nonce.
    if (!handshake.needsReply) {
      raw.lines(Buffer.alloc(0));
      queueMicrotask(() => this.send({ type: 'AGENT_HANDSHAKE_DONE' }));
    }
  }

  /** Starts the daemon (one launch shared by every session that finds it gone), then reports how that went. */
  private launchAgent(): void {
    const launch = this.options.upstream.launch;
    if (!launch) {
      queueMicrotask(() => this.send({ type: 'AGENT_LAUNCH_FAILED' }));
      return;
    }
    this.log.info({ daemon: this.options.upstream.daemon }, 'nothing answers at the upstream socket: starting the daemon');
    // A session that has moved on meanwhile (stopped, timed out) takes no word of the launch.
    const stillLaunching = () => this.actor.getSnapshot().matches({ connecting: 'launching' });
    launch().then(
      () => {
        if (stillLaunching()) this.send({ type: 'AGENT_LAUNCHED' });
      },
      (err: Error) => {
        this.log.warn({ daemon: this.options.upstream.daemon, error: err.message }, 'could not start the daemon');
        if (stillLaunching()) this.send({ type: 'AGENT_LAUNCH_FAILED' });
      },
    );
  }

  // ---- consent (`--confirm`) ---------------------------------------------------------------------------------

  /**
   * Asks the person about the held command `line` (it stays here, in the handle, until approved); the decision
   * comes back as CONSENT_GRANTED, carrying the line to the action that sends it, or CONSENT_REFUSED.
   */
  private askConsent(operation: ConsentOperation, line: LineHandle): void {
    const consent = this.options.consent;
    const asked = ++this.consentAsks;
    // A card's key use names its key in the line; the agent's selection is another key's.
    const cardKey = cardKeyOf(line.take());
    const pending: NonNullable<typeof this.consentPending> = { operation, keygrip: cardKey === undefined ? this.selection?.key : undefined };
    this.consentPending = pending;
    const current = () => asked === this.consentAsks && !this.finished;
    if (!consent) {
      queueMicrotask(() => current() && this.send({ type: 'CONSENT_REFUSED', answer: 'notConfirmed' }));
      return;
    }
    this.log.info({ operation, keygrip: pending.keygrip }, 'asking the person to approve a key use');
    void this.consentRequest(operation, pending.keygrip, cardKey, consent).then((request) => {
      if (!current()) return;
      pending.withdraw = consent.desk.request(request, (decision) => {
        if (!current()) return;
        this.consentPending = undefined;
        this.lastConsent = { operation, decision: decision.approved ? decision.by : decision.verdict };
        this.log.info({ operation, keygrip: pending.keygrip, ...(decision.approved ? { approvedBy: decision.by } : { refused: decision.verdict }) }, 'key use decided');
        if (decision.approved) this.send({ type: 'CONSENT_GRANTED', line, by: decision.by });
        else this.send({ type: 'CONSENT_REFUSED', answer: decision.verdict === 'refused' ? 'cancelled' : 'notConfirmed' });
      });
    });
  }

  /** The session left awaitingConsent (decided, timed out, closing): a prompt still up for it is taken down. */
  private withdrawConsent(): void {
    this.consentAsks++;
    this.consentPending?.withdraw?.();
    this.consentPending = undefined;
  }

  private async consentRequest(operation: ConsentOperation, keygrip: string | undefined, cardKey: string | undefined, consent: SessionConsent): Promise<ConsentRequest> {
    const [userId] = await Promise.all([consent.keyNames?.userIdOf(keygrip), this.callerLookup]);
    const { link } = this.options;
    // Unknown callers share no window: each session of one is asked for itself.
    const caller = this.caller ?? (link ? { key: `link\0${link}`, text: `bridge link ${link}` } : { key: `session\0${this.sessionId}`, text: 'a local process (not identified)' });
    const hash = operation === 'sign' && cardKey === undefined ? this.selection?.hash : undefined;
    return { operation, sessionId: this.sessionId, keygrip, ...(cardKey !== undefined ? { cardKey } : {}), userId, hash, caller, at: new Date() };
  }

  // ---- crypto slots (`--max-crypto`) ---------------------------------------------------------------------------

  /** Queues the held command `line` for a slot; the grant brings it back as CRYPTO_SLOT_GRANTED. */
  private requestCryptoSlot(line: LineHandle): void {
    const slots = this.options.cryptoSlots;
    if (!slots) return void queueMicrotask(() => this.send({ type: 'CRYPTO_SLOT_GRANTED', line }));
    this.cryptoTicket = slots.take(() => this.send({ type: 'CRYPTO_SLOT_GRANTED', line }));
  }

  private releaseCryptoSlot(): void {
    this.cryptoTicket?.release();
    this.cryptoTicket = undefined;
  }

  private reportSocketsClosed(): void {
    const agentDone = this.agent === undefined || this.agent.closed;
    if (this.client.closed && agentDone && !this.socketsClosedReported) {
      this.socketsClosedReported = true;
      this.send({ type: 'SOCKETS_CLOSED' });
    }
  }

  // ---- secrets kept out of the counts ----------------------------------------------------------------------

  private inSecretInquiry(): boolean {
    const inquire = this.actor.getSnapshot().context.inquire;
    return inquire !== '' && inquiryAnswerIsSecret(inquire);
  }

  /** What the client sent, less the answers to secret INQUIREs, whole or (while one is open) in part. */
  private publishedFromClient(): number {
    const unfinished = !this.finished && this.inSecretInquiry() ? this.client.framer.bufferedBytes : 0;
    return this.stats.publishedFromClient(this.client.bytesIn, unfinished);
  }

  private finish(failure: SessionFailure | null): void {
    if (this.finished) return;
    this.finished = true;
    const summary: SessionSummary = {
      sessionId: this.sessionId,
      outcome: failure ? 'failed' : 'closed',
      failure,
      durationMs: this.stats.ageMs(),
      connectAttempts: this.actor.getSnapshot().context.connectAttempts,
      commands: this.stats.commands,
      refused: this.stats.refused,
      bytesFromClient: this.publishedFromClient(),
      bytesToClient: this.stats.publishedToClient(),
    };
    this.log.info(summary, 'session ended');
    this.audit?.sessionEnds();
    // A session that ends holding a slot (or queued for one) gives it back: the next one waiting goes on.
    this.releaseCryptoSlot();
    if (this.actor.getSnapshot().status === 'active') this.actor.stop();
    this.options.onEnd?.(summary);
  }
}
