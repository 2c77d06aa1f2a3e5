/**
 * Runtime of one client connection: owns the client socket, the upstream socket and the session actor.
 *
 * Data path: socket bytes → LineFramer → classify → machine event (kind, verb, byte count) → machine → named
 * action → socket write. The bytes of the line an event describes are held here, in `currentClientLine` /
 * `currentAgentLine`, for exactly as long as the machine processes that event; the actions relay them unchanged.
 *
 * The machine decides when client lines may be taken (states tagged `clientInput`): lines pipelined behind a
 * command in flight stay in the framer, in order, and are taken when the answer is complete.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import { sessionMachine, type SessionEvent, type SessionFailure } from '../machines/session.js';
import { classifyAgentLine, classifyClientLine } from './protocol/classify.js';
import { errLine, type ProxyErrorName } from './protocol/errors.js';
import { LineFramer } from './protocol/framer.js';
import { CoalescingWriter, extendView, followsInMemory } from './coalescingWriter.js';
import type { CommandPolicy } from './policy.js';
import { commandAnswerIsSecret, inquiryAnswerIsSecret } from './protocol/inquiries.js';

export interface SessionTimeouts {
  connectMs: number;
  greetingMs: number;
  /** From the greeting, or the end of the last answer, to the next complete command. */
  idleMs: number;
  /** From an INQUIRE reaching the client to the end of its answer. */
  inquiryMs: number;
  /** From a request reaching the agent to its first line of answer; undefined: no limit (the default). */
  responseMs?: number | undefined;
  closeGraceMs: number;
}

export interface SessionOptions {
  sessionId: string;
  client: net.Socket;
  upstreamPath: string;
  timeouts: SessionTimeouts;
  logger: Logger;
  /** Client bytes held while not being taken (pipelined lines, a partial line) before the client is paused. */
  maxBufferedClientBytes: number;
  /** Which lines may reach the agent as commands; undefined relays all. */
  policy?: CommandPolicy | undefined;
  /** Ask the agent itself to run this connection restricted (`OPTION pretend-request-origin=remote`) first. */
  restrictAgent?: boolean;
  clock?: { setTimeout(fn: (...args: unknown[]) => void, ms: number): unknown; clearTimeout(id: unknown): void };
  inspect?: Observer<InspectionEvent> | ((event: InspectionEvent) => void);
  onEnd?: (summary: SessionSummary) => void;
}

export interface SessionSummary {
  sessionId: string;
  outcome: 'closed' | 'failed';
  failure: SessionFailure | null;
  durationMs: number;
  /** Connection attempts to the agent (more than one when its listen queue was full). */
  connectAttempts: number;
  commands: number;
  /** Commands the policy refused. */
  refused: number;
  /** Bytes from the client, not counting answers to INQUIREs whose answer is secret (not even their length is shown). */
  bytesFromClient: number;
  /** Bytes to the client, not counting the answers of commands whose answer is secret (GET_PASSPHRASE, GETVAL). */
  bytesToClient: number;
}

export interface SessionInfo {
  sessionId: string;
  /** Top-level state of the session machine. */
  state: string;
  /** Verb of the last command sent to the agent. */
  command: string;
  ageMs: number;
  /** Bytes from the client, not counting answers to INQUIREs whose answer is secret. */
  bytesFromClient: number;
  bytesToClient: number;
  /** Client bytes received but not yet taken (pipelined lines, a partial line). */
  bufferedClientBytes: number;
  /** The proxy has stopped reading the client (greeting pending, buffer bound reached, or agent not reading). */
  clientPaused: boolean;
  /** Bytes written to the agent that its socket has not taken yet (the agent is not reading). */
  upstreamPendingBytes: number;
  /** Bytes written to the client that its socket has not taken yet (the client is not reading). */
  clientPendingBytes: number;
  /** The proxy has stopped reading the agent (the client is not taking what was relayed). */
  agentPaused: boolean;
}

type SessionActor = Actor<typeof sessionMachine>;

const CANCEL_LINE = Buffer.from('CAN\n', 'latin1');
/** The agent runs the connection as its extra socket would, one way only (protocol notes §10). */
const RESTRICT_LINE = Buffer.from('OPTION pretend-request-origin=remote\n', 'latin1');
const MAX_TIMER_MS = 2 ** 31 - 1;

const isAgentData = (line: Buffer) => classifyAgentLine(line).kind === 'data';
const isClientData = (line: Buffer) => classifyClientLine(line).kind === 'data';

/** The runtime behind each running session actor, for the machine's actions (see SessionRuntime.machineFor). */
const runtimeOf = new WeakMap<SessionActor, SessionRuntime>();
const machines = new WeakMap<SessionTimeouts, ReturnType<typeof sessionMachine.provide>>();

export class SessionRuntime {
  readonly sessionId: string;
  private readonly actor: SessionActor;
  private readonly client: net.Socket;
  private upstream: net.Socket | undefined;
  private readonly clientFramer = new LineFramer();
  private readonly agentFramer = new LineFramer();
  /** What the machine's actions relay is collected here and written once per received chunk (see flushWrites). */
  private readonly toClient = new CoalescingWriter((bytes) => this.flushToClient(bytes));
  private readonly toAgent = new CoalescingWriter((bytes) => this.flushToAgent(bytes));
  /** Above 0 while a received chunk is being turned into events: writes wait for the end of the chunk. */
  private batching = 0;
  private readonly log: Logger;
  private readonly debug: boolean;
  private readonly startedAt = performance.now();

  private currentClientLine: Buffer | undefined;
  private currentAgentLine: Buffer | undefined;
  private upstreamConnected = false;
  private agentClosedReported = false;
  private upstreamBlocked = false;
  /** The client's socket has not taken all we wrote (CLIENT_BLOCKED sent, CLIENT_DRAINED not yet). */
  private clientBlocked = false;
  private awaitingAgentWrite = false;
  private clientEnded = false;
  private clientEofSent = false;
  private clientClosed = false;
  private upstreamClosed = false;
  private socketsClosedSent = false;
  private finished = false;
  private pumping = false;
  /** Once closing, client bytes are counted and dropped: nothing is relayed any more. */
  private dropClientInput = false;
  private commandStartedAt = 0;
  /** Bytes relayed each way since the current command began. */
  private commandBytesToAgent = 0;
  private commandBytesToClient = 0;
  private commands = 0;
  private refused = 0;
  /** Every byte received from the client. */
  private bytesFromClient = 0;
  /** Bytes of lines taken as the answer to an INQUIRE whose answer is secret: never published. */
  private secretClientBytes = 0;
  /** Bytes of the answers to commands whose answer is secret (GET_PASSPHRASE): never published. */
  private secretBytesToClient = 0;
  /** The command in flight carried a secret either way: its sizes are not logged. */
  private commandCarriesSecret = false;
  private bytesToClient = 0;

  /**
   * The session machine with this runtime's effects, built once per timeouts object (the server passes one to all
   * its sessions): a machine per session held its own copy of every state node, ~64 KiB of heap each (measured).
   * The actions find their session through the actor that runs them.
   */
  private static machineFor(timeouts: SessionTimeouts) {
    const cached = machines.get(timeouts);
    if (cached) return cached;
    const of = (self: unknown): SessionRuntime => runtimeOf.get(self as SessionActor)!;
    const machine = sessionMachine.provide({
      actions: {
        dialAgent: ({ self }) => of(self).dialAgent(),
        restrictAgent: ({ self }) => of(self).writeUpstream(RESTRICT_LINE),
        relayToClient: ({ self, context }) => {
          const rt = of(self);
          const line = rt.takeAgentLine();
          if (line && commandAnswerIsSecret(context.command)) {
            rt.secretBytesToClient += line.length;
            rt.commandCarriesSecret = true;
          }
          rt.writeClient(line);
        },
        forwardToAgent: ({ self }) => {
          const rt = of(self);
          rt.writeUpstream(rt.takeClientLine());
        },
        watchAgentWrite: ({ self }) => of(self).watchAgentWrite(),
        discardClientLine: ({ self }) => {
          of(self).currentClientLine = undefined;
        },
        discardAgentLine: ({ self }) => {
          of(self).currentAgentLine = undefined;
        },
        cancelAgentInquiry: ({ self }) => of(self).writeUpstream(CANCEL_LINE),
        answerClient: ({ self, context }, { answer }) => {
          const rt = of(self);
          if (answer === 'forbidden') rt.writeClient(errLine('forbidden', `${context.refusedVerb || 'this line'} is not allowed through this socket`));
          else if (answer) rt.writeClient(errLine(answer, clientFaultDetail[answer]));
        },
        noteRefusal: ({ self }, { verb, rule, during }) => {
          const rt = of(self);
          rt.refused++;
          // Every refusal is visible at the default level: which verb, which rule, and where the agent's reader was.
          rt.log.info({ verb, rule, during }, 'refused by policy');
        },
        beginCommand: ({ self }, { verb }) => {
          const rt = of(self);
          rt.commands++;
          rt.commandStartedAt = performance.now();
          rt.commandBytesToAgent = 0;
          rt.commandBytesToClient = 0;
          rt.commandCarriesSecret = false;
          if (rt.debug) rt.log.debug({ verb }, 'command');
        },
        endCommand: ({ self, context }, { outcome }) => {
          const rt = of(self);
          if (rt.debug) {
            const ms = round(performance.now() - rt.commandStartedAt);
            // A command that carried a secret either way gets no sizes: they would give away its length.
            const sizes = rt.commandCarriesSecret ? { sizes: 'withheld' } : { toAgent: rt.commandBytesToAgent, toClient: rt.commandBytesToClient };
            rt.log.debug({ verb: context.command, outcome, ms, ...sizes }, 'command done');
          }
        },
        abortSession: ({ self }, { failure }) => of(self).abort(failure),
        endAgentInput: ({ self }, { withPartialLine }) => {
          const rt = of(self);
          if (withPartialLine) {
            // Never executed: the agent's reader fails on the EOF behind it (Incomplete line).
            const partial = rt.clientFramer.takePartial();
            if (partial.length > 0) rt.writeUpstream(partial);
          }
          rt.toAgent.flush();
          const upstream = rt.upstream;
          if (upstream && !upstream.destroyed && !upstream.writableEnded) upstream.end();
        },
        closeGracefully: ({ self }) => of(self).closeGracefully(),
        destroySockets: ({ self }) => of(self).destroySockets(),
        rejectEvent: ({ self }, { type }) => {
          const state = JSON.stringify(self.getSnapshot().value);
          of(self).log.warn({ event: type, state }, 'event not handled in this state; ignored');
        },
      },
      delays: {
        connectTimeout: timeouts.connectMs,
        greetingTimeout: timeouts.greetingMs,
        idleTimeout: timeouts.idleMs,
        inquiryTimeout: timeouts.inquiryMs,
        // Never fires when off (the guard reads responseTimeoutOn); a timer may not exceed 2^31-1 ms.
        responseTimeout: timeouts.responseMs ?? MAX_TIMER_MS,
        closeGrace: timeouts.closeGraceMs,
      },
    });
    machines.set(timeouts, machine);
    return machine;
  }

  constructor(private readonly options: SessionOptions) {
    this.sessionId = options.sessionId;
    this.client = options.client;
    this.log = options.logger.child({ session: options.sessionId });
    this.debug = this.log.isLevelEnabled('debug');

    const machine = SessionRuntime.machineFor(options.timeouts);
    this.actor = createActor(machine, {
      id: `session-${options.sessionId}`,
      input: {
        sessionId: options.sessionId,
        responseTimeoutOn: options.timeouts.responseMs !== undefined,
        restrictAgent: options.restrictAgent ?? false,
      },
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.inspect ? { inspect: options.inspect } : {}),
    });
    runtimeOf.set(this.actor, this);
    this.actor.subscribe({
      next: (snapshot) => {
        if (snapshot.status === 'done') this.finish(snapshot.context.failure);
      },
      error: (err) => {
        // A bug in an action must end this session only, never the process or other sessions.
        this.log.error({ err }, 'session machine failed');
        this.destroySockets();
        this.finish({ reason: 'internalError' });
      },
    });

    // Client bytes are not read before the agent's greeting has been relayed (the server pauses new sockets).
    this.client.pause();
    this.client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    this.client.on('end', () => {
      this.clientEnded = true;
      if (this.clientFramer.midLine) this.log.debug('client closed in the middle of a line');
      this.pump();
    });
    this.client.on('error', (err: NodeJS.ErrnoException) => this.send({ type: 'CLIENT_GONE', code: err.code ?? 'ERROR' }));
    this.client.on('close', () => {
      this.clientClosed = true;
      if (!this.clientEnded) this.send({ type: 'CLIENT_GONE', code: 'CLOSED' });
      this.checkSocketsClosed();
    });
    this.client.on('drain', () => {
      this.upstream?.resume();
      if (this.clientBlocked) {
        this.clientBlocked = false;
        this.send({ type: 'CLIENT_DRAINED' });
      }
    });
  }

  start(): this {
    this.log.debug('session opened');
    this.actor.start();
    return this;
  }

  /** What a listing of live sessions shows: no payload, only state, verb and counts. */
  info(): SessionInfo {
    const snapshot = this.actor.getSnapshot();
    const value = snapshot.value;
    return {
      sessionId: this.sessionId,
      state: typeof value === 'string' ? value : Object.keys(value)[0] ?? '',
      command: snapshot.context.command,
      ageMs: round(performance.now() - this.startedAt),
      bytesFromClient: this.publishedBytesFromClient(),
      bytesToClient: this.bytesToClient - this.secretBytesToClient,
      bufferedClientBytes: this.inSecretInquiry() ? 0 : this.clientFramer.bufferedBytes,
      clientPaused: this.client.isPaused(),
      upstreamPendingBytes: this.upstream?.writableLength ?? 0,
      clientPendingBytes: this.client.writableLength,
      agentPaused: this.upstream?.isPaused() ?? false,
    };
  }

  private inSecretInquiry(): boolean {
    const inquire = this.actor.getSnapshot().context.inquire;
    return inquire !== '' && inquiryAnswerIsSecret(inquire);
  }

  /** What the client sent, less the answers to secret INQUIREs, whole or (while one is open) in part. */
  private publishedBytesFromClient(): number {
    const unfinished = !this.finished && this.inSecretInquiry() ? this.clientFramer.bufferedBytes : 0;
    return this.bytesFromClient - this.secretClientBytes - unfinished;
  }

  /** Server shutdown: close once the command in flight (if any) is done. */
  stop(): void {
    this.send({ type: 'STOP' });
  }

  /** Server shutdown past its drain time: close now, gracefully. */
  stopNow(): void {
    this.send({ type: 'STOP_NOW' });
  }

  // ---- events in -------------------------------------------------------------------------------------------

  private send(event: SessionEvent): void {
    if (this.finished) return;
    this.actor.send(event);
    if (this.batching === 0) this.flushWrites();
  }

  /** Writes what the actions have collected for each socket, lines contiguous in memory as one write. */
  private flushWrites(): void {
    this.toAgent.flush();
    this.toClient.flush();
  }

  private onClientData(chunk: Buffer): void {
    this.bytesFromClient += chunk.length;
    if (this.dropClientInput) return;
    this.clientFramer.push(chunk);
    this.pump();
  }

  /** Hands queued client lines to the machine for as long as its state takes client input. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    this.batching++;
    try {
      while (!this.finished && !this.upstreamBlocked) {
        const snapshot = this.actor.getSnapshot();
        if (!snapshot.hasTag('clientInput')) break;
        const item = this.clientFramer.next();
        if (item === undefined) {
          if (!this.clientEnded && this.clientFramer.midLine && snapshot.hasTag('idle')) {
            this.send({ type: 'CLIENT_PARTIAL', bytes: this.clientFramer.partialBytes });
          }
          break;
        }
        if (item.kind === 'tooLong') {
          this.send({ type: 'CLIENT_LINE_TOO_LONG', bytes: item.byteCount });
          continue;
        }
        const { kind, verb } = classifyClientLine(item.bytes);
        // Inside a data INQUIRE every D line is handled alike; elsewhere a D line may end an inquiry or be a command.
        const line = kind === 'data' && snapshot.hasTag('inquiry') ? this.dataRun(this.clientFramer, item.bytes, isClientData) : item.bytes;
        // The one policy check: every line but `#` and empty is judged as the command it is wherever the agent
        // reads it as one; the machine decides where that is.
        const refusedBy = this.options.policy && kind !== 'comment' && kind !== 'empty' ? this.options.policy(line, verb) : undefined;
        const inquire = snapshot.context.inquire;
        const secret = inquire !== '' && inquiryAnswerIsSecret(inquire);
        if (secret) {
          this.secretClientBytes += line.length;
          this.commandCarriesSecret = true;
        }
        this.currentClientLine = line;
        this.send({ type: 'CLIENT_LINE', kind, verb, ...(secret ? {} : { bytes: line.length }), ...(refusedBy ? { refusedBy } : {}) });
        this.currentClientLine = undefined;
      }
      // While a command is in flight, an EOF behind no further line is passed on at once (see endAgentInput).
      if (this.clientEnded && !this.clientEofSent && !this.finished && !this.clientFramer.hasItem()) {
        this.clientEofSent = true;
        this.send({ type: 'CLIENT_EOF' });
      }
    } finally {
      this.pumping = false;
      this.batching--;
    }
    if (this.batching === 0) this.flushWrites();
    this.updateClientFlow();
  }

  /** Reads the client only after the greeting, while the upstream takes our writes, and up to the buffer bound. */
  private updateClientFlow(): void {
    if (this.finished || this.clientEnded) return;
    const greeted = !this.actor.getSnapshot().matches('connecting');
    const wanted = greeted && !this.upstreamBlocked && this.clientFramer.bufferedBytes < this.options.maxBufferedClientBytes;
    // Only on a change: resume() on a flowing stream still schedules a tick.
    if (wanted === this.client.isPaused()) {
      if (wanted) this.client.resume();
      else this.client.pause();
    }
  }

  private onAgentData(chunk: Buffer): void {
    this.agentFramer.push(chunk);
    // What this chunk produces is written once it has all been through the machine (see CoalescingWriter).
    this.batching++;
    try {
      for (let item = this.agentFramer.next(); item !== undefined && !this.finished; item = this.agentFramer.next()) {
        if (item.kind === 'tooLong') {
          this.send({ type: 'AGENT_LINE', kind: 'invalid', keyword: '', bytes: item.byteCount });
          continue;
        }
        const info = classifyAgentLine(item.bytes);
        const line = info.kind === 'data' ? this.dataRun(this.agentFramer, item.bytes, isAgentData) : item.bytes;
        const secret = commandAnswerIsSecret(this.actor.getSnapshot().context.command);
        this.currentAgentLine = line;
        this.send({ type: 'AGENT_LINE', kind: info.kind, keyword: info.keyword, ...(secret ? {} : { bytes: line.length }) });
        this.currentAgentLine = undefined;
      }
    } finally {
      this.batching--;
    }
    if (this.batching === 0) this.flushWrites();
    this.pump();
  }

  /**
   * `first` (a D line) extended by the D lines that follow it back to back in the same chunk, taken from `framer`:
   * one event then stands for the run. Every state treats a D line exactly as the D line before it left it (relay
   * on, forward on, or drop), so the machine ends where it would have after one event per line, for a fraction of
   * the cost on a stream of large D blocks.
   */
  private dataRun(framer: LineFramer, first: Buffer, isData: (line: Buffer) => boolean): Buffer {
    let run = first;
    for (let next = framer.peekLine(); next !== undefined && followsInMemory(run, next) && isData(next); next = framer.peekLine()) {
      framer.next();
      run = extendView(run, next);
    }
    return run;
  }

  private onAgentGone(code: string): void {
    if (this.agentClosedReported) return;
    this.agentClosedReported = true;
    if (this.agentFramer.midLine) this.log.debug('agent closed in the middle of a line');
    this.send({ type: 'AGENT_CLOSED', code });
  }

  private checkSocketsClosed(): void {
    const upstreamDone = this.upstream === undefined || this.upstreamClosed;
    if (this.clientClosed && upstreamDone && !this.socketsClosedSent) {
      this.socketsClosedSent = true;
      this.send({ type: 'SOCKETS_CLOSED' });
    }
  }

  // ---- effects ---------------------------------------------------------------------------------------------

  private dialAgent(): void {
    const upstream = net.connect({ path: this.options.upstreamPath });
    this.upstream = upstream;
    // A retry replaces the socket: events of an earlier, failed attempt must not reach the machine.
    const current = () => this.upstream === upstream;
    upstream.on('connect', () => {
      if (!current()) return;
      this.upstreamConnected = true;
      this.send({ type: 'AGENT_CONNECTED' });
    });
    upstream.on('data', (chunk: Buffer) => this.onAgentData(chunk));
    upstream.on('end', () => {
      if (current()) this.onAgentGone('EOF');
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (!current()) return;
      const code = err.code ?? 'ERROR';
      if (this.upstreamConnected) this.onAgentGone(code);
      else this.send({ type: 'AGENT_CONNECT_FAILED', code });
    });
    upstream.on('close', () => {
      if (!current()) return;
      this.upstreamClosed = true;
      if (this.upstreamConnected) this.onAgentGone('EOF');
      this.checkSocketsClosed();
    });
    upstream.on('drain', () => this.onUpstreamDrain());
  }

  private takeClientLine(): Buffer | undefined {
    const line = this.currentClientLine;
    this.currentClientLine = undefined;
    return line;
  }

  private takeAgentLine(): Buffer | undefined {
    const line = this.currentAgentLine;
    this.currentAgentLine = undefined;
    return line;
  }

  private writeClient(bytes: Buffer | undefined): void {
    if (bytes === undefined || this.client.destroyed || this.client.writableEnded) return;
    this.bytesToClient += bytes.length;
    this.commandBytesToClient += bytes.length;
    this.toClient.add(bytes);
  }

  private flushToClient(bytes: Buffer): void {
    if (this.client.destroyed || this.client.writableEnded) return;
    // A client that does not read pauses the agent instead of growing our buffer, for the idle timeout at most.
    if (!this.client.write(bytes)) {
      this.upstream?.pause();
      if (!this.clientBlocked) {
        this.clientBlocked = true;
        this.send({ type: 'CLIENT_BLOCKED' });
      }
    }
  }

  private writeUpstream(bytes: Buffer | undefined): void {
    const upstream = this.upstream;
    if (bytes === undefined || upstream === undefined || upstream.destroyed || upstream.writableEnded) return;
    this.commandBytesToAgent += bytes.length;
    this.toAgent.add(bytes);
  }

  private flushToAgent(bytes: Buffer): void {
    const upstream = this.upstream;
    if (upstream === undefined || upstream.destroyed || upstream.writableEnded) return;
    if (!upstream.write(bytes)) {
      // An agent that does not read pauses the client instead of growing our buffer.
      this.upstreamBlocked = true;
      this.client.pause();
    }
  }

  private watchAgentWrite(): void {
    // Whether the agent's socket took the request is known only once it has been written.
    this.toAgent.flush();
    if (this.upstreamBlocked) this.awaitingAgentWrite = true;
    // Queued behind the current event: the machine takes it as soon as this transition is complete.
    else this.send({ type: 'AGENT_WRITTEN' });
  }

  private onUpstreamDrain(): void {
    this.upstreamBlocked = false;
    if (this.awaitingAgentWrite) {
      this.awaitingAgentWrite = false;
      this.send({ type: 'AGENT_WRITTEN' });
    }
    this.pump();
  }

  private abort(failure: SessionFailure | null): void {
    const [name, detail] = describeFailure(failure, this.options.upstreamPath, this.options.timeouts);
    this.log.warn({ failure }, `session failed: ${detail}`);
    this.dropClientInput = true;
    // What was relayed before the failure goes first, then the ERR (the agent's side is torn down).
    this.toClient.flush();
    this.toAgent.discard();
    if (!this.client.destroyed && !this.client.writableEnded) {
      const line = errLine(name, detail);
      this.bytesToClient += line.length;
      this.client.end(line, () => this.client.destroy());
      // A client that never reads must not keep the socket alive.
      setTimeout(() => this.client.destroy(), this.options.timeouts.closeGraceMs).unref();
    }
    this.upstream?.destroy();
  }

  private closeGracefully(): void {
    this.flushWrites();
    if (!this.client.destroyed && !this.client.writableEnded) this.client.end();
    // Read on (and drop) until the client closes, so that its close is seen.
    this.dropClientInput = true;
    this.client.resume();
    const upstream = this.upstream;
    if (upstream && !upstream.destroyed && !upstream.writableEnded) upstream.end();
  }

  private destroySockets(): void {
    this.client.destroy();
    this.upstream?.destroy();
  }

  private finish(failure: SessionFailure | null): void {
    if (this.finished) return;
    this.finished = true;
    const summary: SessionSummary = {
      sessionId: this.sessionId,
      outcome: failure ? 'failed' : 'closed',
      failure,
      durationMs: round(performance.now() - this.startedAt),
      connectAttempts: this.actor.getSnapshot().context.connectAttempts,
      commands: this.commands,
      refused: this.refused,
      bytesFromClient: this.publishedBytesFromClient(),
      bytesToClient: this.bytesToClient - this.secretBytesToClient,
    };
    this.log.info(summary, 'session ended');
    if (this.actor.getSnapshot().status === 'active') this.actor.stop();
    this.options.onEnd?.(summary);
  }
}

const clientFaultDetail: Record<'lineTooLong' | 'malformedEscape', string> = {
  lineTooLong: 'lines are limited to 1000 bytes',
  malformedEscape: "D line has a '%' not followed by two hex digits",
};

/** The ERR the client gets for a failed session, and a one-line reason for it and for the log. */
function describeFailure(failure: SessionFailure | null, upstreamPath: string, timeouts: SessionTimeouts): [ProxyErrorName, string] {
  switch (failure?.reason) {
    case 'connectFailed':
      return ['connectFailed', `cannot connect to gpg-agent at ${upstreamPath}: ${failure.code}`];
    case 'connectTimeout':
      return ['timeout', `gpg-agent did not accept the connection in time (${failure.attempts} attempts; its listen queue stayed full)`];
    case 'greetingTimeout':
      return ['timeout', 'gpg-agent did not greet in time'];
    case 'restrictFailed':
      return ['connectFailed', 'gpg-agent refused to run the connection restricted (pretend-request-origin)'];
    case 'responseTimeout':
      return ['timeout', 'gpg-agent did not answer in time'];
    case 'idleTimeout':
      return ['timeout', `no command for ${seconds(timeouts.idleMs)} (the idle limit); closing`];
    case 'clientStalled':
      return ['timeout', `the client read nothing for ${seconds(timeouts.idleMs)} (the idle limit); closing`];
    case 'inquiryTimeout':
      return ['timeout', `the INQUIRE was not answered within ${seconds(timeouts.inquiryMs)}; closing`];
    case 'badGreeting':
      return ['connectFailed', 'gpg-agent did not greet with OK'];
    case 'agentClosed':
      return ['endOfFile', `gpg-agent closed the connection (${failure.code})`];
    case 'agentProtocolViolation':
      return ['invalidResponse', 'gpg-agent sent a line that is not valid here'];
    case 'unsolicitedAgentOutput':
      return ['invalidResponse', 'gpg-agent sent output with no command pending'];
    case 'internalError':
      return ['endOfFile', 'internal error in the proxy'];
    default:
      return ['endOfFile', 'session ended'];
  }
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
