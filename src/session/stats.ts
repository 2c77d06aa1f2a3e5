/**
 * A session's counters, and what may be published of them: sizes that would give away a secret's length (the
 * answer to a secret INQUIRE, the answer of GET_PASSPHRASE) are counted apart and never shown.
 */
import type { SessionFailure } from '../../machines/session.js';

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
  /** The session machine's state, as the design names it (connecting, ready, sendingToClient, …). */
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
  /** The bridge link the client came over (`forward`); absent for a local client. */
  link?: string;
  /** A key use waiting for the person's approval (`--confirm`): the operation and the key, no more. */
  pendingConsent?: { operation: string; keygrip?: string };
  /** The session's last consent decision: the operation, and approved (at a prompt, by a window) or refused. */
  lastConsent?: { operation: string; decision: 'prompt' | 'window' | 'refused' | 'timedOut' | 'unavailable' };
}

export class SessionStats {
  readonly startedAt = performance.now();
  commands = 0;
  refused = 0;
  /** Bytes of lines taken as the answer to an INQUIRE whose answer is secret: never published. */
  private secretFromClient = 0;
  private toClient = 0;
  /** Bytes of the answers to commands whose answer is secret: never published. */
  private secretToClient = 0;
  private commandStartedAt = 0;
  /** Bytes relayed each way since the current command began. */
  private commandToAgent = 0;
  private commandToClient = 0;
  /** The command in flight carried a secret either way: its sizes are not logged. */
  private commandCarriesSecret = false;

  beginCommand(): void {
    this.commands++;
    this.commandStartedAt = performance.now();
    this.commandToAgent = 0;
    this.commandToClient = 0;
    this.commandCarriesSecret = false;
  }

  sentToAgent(bytes: number): void {
    this.commandToAgent += bytes;
  }

  sentToClient(bytes: number, secret: boolean): void {
    this.toClient += bytes;
    this.commandToClient += bytes;
    if (secret) {
      this.secretToClient += bytes;
      this.commandCarriesSecret = true;
    }
  }

  /** A line taken as the answer to a secret INQUIRE. */
  tookSecretAnswer(bytes: number): void {
    this.secretFromClient += bytes;
    this.commandCarriesSecret = true;
  }

  /** The current command's time and sizes for the debug log; a command that carried a secret gets no sizes. */
  commandRecord(): { ms: number; toAgent?: number; toClient?: number; sizes?: 'withheld' } {
    const ms = round(performance.now() - this.commandStartedAt);
    return this.commandCarriesSecret ? { ms, sizes: 'withheld' } : { ms, toAgent: this.commandToAgent, toClient: this.commandToClient };
  }

  /** What the client sent, less secret answers (`unfinishedSecret`: bytes of one still arriving). */
  publishedFromClient(received: number, unfinishedSecret: number): number {
    return received - this.secretFromClient - unfinishedSecret;
  }

  publishedToClient(): number {
    return this.toClient - this.secretToClient;
  }

  ageMs(): number {
    return round(performance.now() - this.startedAt);
  }
}

export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
