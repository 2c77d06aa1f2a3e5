/**
 * `assuan-proxy --check [FILE]`: a dry run of the policy (`--restricted`, `--allow`, `--deny`, `--keys`) over a
 * transcript, or lines typed in: for each client line, whether the proxy would relay it or refuse it, and which
 * rule decided. Nothing is started and nothing is sent anywhere.
 *
 * A transcript is client lines, one per line, optionally prefixed `C: `; lines prefixed `S: ` are the agent's and
 * tell where its reader is, as in a session: after `S: INQUIRE <keyword>` the client's D lines (and `#`/empty
 * lines) are the answer and are not judged, END or CAN ends it, and any other line ends it too and is judged as the
 * command the agent would take it for; `S: OK` or `S: ERR …` ends the command. Without `S:` lines every client
 * line is read as a command, as it is wherever the agent reads commands (a stray D, END or CAN included).
 *
 * What is printed names verbs, rules and keygrips, never the rest of a line (a transcript may hold a passphrase).
 */
import type { PolicyRule } from '../machines/session.js';
import { consentOperation, type ConsentOperation } from './consent/consentRequest.js';
import { keygripsNamed } from './keyAllowList.js';
import type { CommandPolicy } from './policy.js';
import { classifyClientLine, contentLength } from './protocol/classify.js';
import { inquiryTakesData } from './protocol/inquiries.js';
import { MAX_LINE_BYTES } from './protocol/limits.js';

export interface LineVerdict {
  /** 1-based line number in the transcript. */
  line: number;
  verb: string;
  /** `held`: relayed only once the person approves it (`--confirm`); `answered`: the proxy answers OK, sends nothing. */
  verdict: 'relayed' | 'refused' | 'skipped' | 'held' | 'answered';
  /** The rule that refused it, or why it was refused or skipped. */
  reason?: PolicyRule | 'too long' | 'inquiry answer' | 'comment' | ConsentOperation;
  keygrips?: string[];
}

const RULE_WORDS: Readonly<Record<PolicyRule, string>> = {
  deny: 'denied (--deny)',
  allow: 'not allowed (--allow)',
  restricted: "forbidden on gpg-agent's extra socket (--restricted)",
  keys: 'names a key not on the list, or lists or makes keys (--keys)',
  arguments: 'its arguments are not allowed (argument checks: keygrip, SETHASH, OPTION, --preset)',
  environment: "sets the pinentry's environment: answered OK by the proxy, not sent (--allow-option to pass it)",
  confirm: 'not approved at the prompt (--confirm)',
};

/** `confirm`: the operations `--confirm` holds for the person's approval. */
export function checkTranscript(transcript: Buffer, policy: CommandPolicy | undefined, confirm?: ReadonlySet<ConsentOperation>): LineVerdict[] {
  const verdicts: LineVerdict[] = [];
  let inquiry: 'data' | 'noData' | undefined;
  let number = 0;
  let start = 0;
  while (start < transcript.length) {
    let end = transcript.indexOf(0x0a, start);
    end = end === -1 ? transcript.length : end + 1;
    const raw = transcript.subarray(start, end);
    start = end;
    number++;
    const agentLine = raw.subarray(0, 3).toString('latin1') === 'S: ';
    if (agentLine) {
      const text = raw.toString('latin1', 3, contentLength(raw));
      const keyword = /^INQUIRE (\S+)/.exec(text)?.[1];
      if (keyword !== undefined) inquiry = inquiryTakesData(keyword) ? 'data' : 'noData';
      else if (/^(OK|ERR)( |$)/.test(text)) inquiry = undefined;
      continue;
    }
    const line = raw.subarray(0, 3).toString('latin1') === 'C: ' ? raw.subarray(3) : raw;
    const withEnd = line.length > 0 && line[line.length - 1] === 0x0a ? line : Buffer.concat([line, Buffer.from('\n')]);
    const { kind, verb } = classifyClientLine(withEnd);
    if (withEnd.length > MAX_LINE_BYTES) {
      verdicts.push({ line: number, verb: verb || '(none)', verdict: 'refused', reason: 'too long' });
      continue;
    }
    if (kind === 'comment' || kind === 'empty') {
      verdicts.push({ line: number, verb: '', verdict: 'skipped', reason: 'comment' });
      continue;
    }
    // A command line inside an INQUIRE ends it unexecuted: the policy judges it, but there is no key use to ask about.
    const endsInquiry = inquiry !== undefined;
    if (inquiry !== undefined) {
      // The answer to an INQUIRE: data, until END or CAN; in one that takes no data, any line ends it.
      if (inquiry === 'data' && (kind === 'data' || kind === 'malformedData')) {
        verdicts.push({ line: number, verb: 'D', verdict: 'skipped', reason: 'inquiry answer' });
        continue;
      }
      inquiry = undefined;
      if (kind === 'end' || kind === 'cancel' || kind === 'data' || kind === 'malformedData') {
        verdicts.push({ line: number, verb: verb || kind.toUpperCase(), verdict: 'skipped', reason: 'inquiry answer' });
        continue;
      }
    }
    const rule = policy?.(withEnd, verb);
    const keygrips = keygripsNamed(withEnd);
    const held = !rule && !endsInquiry && kind === 'command' && confirm ? consentOperation(withEnd, confirm) : undefined;
    const verdict = rule === 'environment' ? 'answered' : rule ? 'refused' : held ? 'held' : 'relayed';
    verdicts.push({ line: number, verb: verb || '(none)', verdict, ...(rule || held ? { reason: rule ?? held } : {}), ...(keygrips.length ? { keygrips } : {}) });
  }
  return verdicts;
}

export function formatVerdicts(verdicts: readonly LineVerdict[]): string {
  return verdicts
    .map((v) => {
      const keys = v.keygrips ? ` [${v.keygrips.join(' ')}]` : '';
      if (v.verdict === 'relayed') return `line ${v.line}: ${v.verb}${keys}: relayed`;
      if (v.verdict === 'held') return `line ${v.line}: ${v.verb}${keys}: held for the person's approval (--confirm ${v.reason}), relayed if approved`;
      if (v.verdict === 'answered') return `line ${v.line}: ${v.verb}${keys}: answered OK by the proxy, not sent (it sets the pinentry's environment; --allow-option passes it)`;
      if (v.verdict === 'skipped') return `line ${v.line}: ${v.reason === 'comment' ? 'comment or empty: relayed, no answer' : `${v.verb}: part of an INQUIRE's answer: relayed`}`;
      return `line ${v.line}: ${v.verb}${keys}: refused, ${v.reason === 'too long' ? 'longer than libassuan takes' : (RULE_WORDS as Readonly<Record<string, string>>)[v.reason!] ?? v.reason}`;
    })
    .join('\n')
    .concat(verdicts.length ? '\n' : '');
}
