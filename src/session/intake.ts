/**
 * Intake: framed lines become machine events. No I/O: a line (or, where the machine handles a run of D lines as
 * one, the run) is taken from a framer, classified, judged by the policy, and described by one event named after
 * its kind, with the bytes inside as an opaque handle (src/protocol/line.ts).
 *
 * What the event may publish is decided here: a byte count, except where the size is a secret's (the answer to
 * a secret INQUIRE, the answer of GET_PASSPHRASE); never a byte of the line.
 */
import type { AgentLineEvent, ClientLineEvent, SessionEvent } from '../../machines/session.js';
import { extendView, followsInMemory } from '../coalescingWriter.js';
import { classifyAgentLine, classifyClientLine, type AgentLineKind, type ClientLineKind } from '../protocol/classify.js';
import type { LineFramer } from '../protocol/framer.js';
import { LineHandle, NO_BYTES } from '../protocol/line.js';
import type { CommandPolicy } from '../policy.js';
import type { ConsentOperation } from '../consent/consentRequest.js';

const CLIENT_EVENT: Record<ClientLineKind, ClientLineEvent['type']> = {
  command: 'CLIENT.COMMAND',
  comment: 'CLIENT.COMMENT',
  empty: 'CLIENT.COMMENT',
  data: 'CLIENT.DATA',
  malformedData: 'CLIENT.MALFORMED_DATA',
  end: 'CLIENT.END',
  cancel: 'CLIENT.CAN',
};

const AGENT_EVENT: Record<AgentLineKind, AgentLineEvent['type']> = {
  ok: 'AGENT.OK',
  okClosing: 'AGENT.OK_CLOSING',
  err: 'AGENT.ERR',
  inquire: 'AGENT.INQUIRE',
  status: 'AGENT.STATUS',
  comment: 'AGENT.COMMENT',
  data: 'AGENT.DATA',
  end: 'AGENT.END',
  invalid: 'AGENT.INVALID',
};

/** Where the client's next line lands, as the machine's state tells it. */
export interface ClientLineSetting {
  /** Inside a data INQUIRE's answer: a D line is handled as the one before it, so a run of them is one event. */
  dataRuns: boolean;
  /** The answer is a secret's (a passphrase, a PIN): no size is published. */
  secret: boolean;
  /** Which lines may reach the agent as commands; undefined relays all. */
  policy: CommandPolicy | undefined;
  /** Which commands use a key the person must approve first (`--confirm`); undefined: none. */
  consent?: ((line: Buffer) => ConsentOperation | undefined) | undefined;
  /** Key operations wait for one of the upstream's crypto slots (`--max-crypto`). */
  cryptoSlots?: boolean;
}

/** The client's next complete line as an event, or undefined when none is complete yet. */
export function takeClientEvent(framer: LineFramer, setting: ClientLineSetting): SessionEvent | undefined {
  const item = framer.next();
  if (item === undefined) return undefined;
  // Inside a secret answer not even an over-long line's size is published.
  if (item.kind === 'tooLong') return setting.secret ? { type: 'CLIENT.TOO_LONG' } : { type: 'CLIENT.TOO_LONG', bytes: item.byteCount };
  const { kind, verb } = classifyClientLine(item.bytes);
  const bytes = kind === 'data' && setting.dataRuns ? dataRun(framer, item.bytes, isClientData) : item.bytes;
  // The one policy check: every line but `#` and empty is judged as the command it is wherever the agent reads
  // it as one; the machine decides where that is.
  const refusedBy = setting.policy && kind !== 'comment' && kind !== 'empty' ? setting.policy(bytes, verb) : undefined;
  const event: ClientLineEvent = { type: CLIENT_EVENT[kind], verb, line: new LineHandle(bytes) };
  if (!setting.secret) event.bytes = bytes.length;
  if (refusedBy) event.refusedBy = refusedBy;
  // Judged as the command it would be; whether the agent reads it as one is the machine's to know.
  else if (kind === 'command') {
    if (setting.consent) {
      const operation = setting.consent(bytes);
      if (operation) event.consent = operation;
    }
    if (setting.cryptoSlots && (verb === 'PKSIGN' || verb === 'PKDECRYPT')) event.cryptoSlot = true;
  }
  return event;
}

/** The agent's next complete line as an event (`secret`: the answer of a command whose answer is secret). */
export function takeAgentEvent(framer: LineFramer, secret: boolean): AgentLineEvent | undefined {
  const item = framer.next();
  if (item === undefined) return undefined;
  if (item.kind === 'tooLong') return { type: 'AGENT.INVALID', line: NO_BYTES, bytes: item.byteCount };
  const { kind, keyword } = classifyAgentLine(item.bytes);
  const bytes = kind === 'data' ? dataRun(framer, item.bytes, isAgentData) : item.bytes;
  const event = { type: AGENT_EVENT[kind], line: new LineHandle(bytes) } as AgentLineEvent;
  if (kind === 'inquire' || kind === 'status') (event as { keyword?: string }).keyword = keyword;
  if (kind === 'err') (event as { code?: number }).code = errCode(bytes);
  if (!secret) event.bytes = bytes.length;
  return event;
}

/** The decimal gpg-error code after `ERR ` (0 if there is none): a number, never a secret. */
function errCode(line: Buffer): number {
  let code = 0;
  for (let i = 4; i < line.length && i < 14; i++) {
    const digit = line[i]! - 0x30;
    if (digit < 0 || digit > 9) break;
    code = code * 10 + digit;
  }
  return code;
}

const isAgentData = (line: Buffer) => classifyAgentLine(line).kind === 'data';
const isClientData = (line: Buffer) => classifyClientLine(line).kind === 'data';

/**
 * `first` (a D line) extended by the D lines that follow it back to back in the same chunk, taken from `framer`:
 * one event then stands for the run. Every state treats a D line exactly as the D line before it left it (relay
 * on, forward on, or drop), so the machine ends where it would have after one event per line, for a fraction of
 * the cost on a stream of large D blocks.
 */
function dataRun(framer: LineFramer, first: Buffer, isData: (line: Buffer) => boolean): Buffer {
  let run = first;
  for (let next = framer.peekLine(); next !== undefined && followsInMemory(run, next) && isData(next); next = framer.peekLine()) {
    framer.next();
    run = extendView(run, next);
  }
  return run;
}
