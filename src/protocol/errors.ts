/**
 * ERR lines the proxy writes itself. Format as libassuan's: `ERR <decimal gpg_error_t> <text> <<source>>[ - <detail>]`.
 * Codes use gpg-agent's error source (4) so clients treat them exactly as they would the agent's own answer
 * (gpg special-cases some agent codes, e.g. Forbidden); the `<assuan-proxy>` source text tells a human who spoke.
 * Details are fixed strings and socket error codes: never a byte that came from a peer.
 */
import { MAX_LINE_BYTES, PROXY_SOURCE_NAME } from './limits.js';

const AGENT_SOURCE = 4 << 24;

/** Failures the proxy reports in an ERR line, with the gpg-error code and text a client will see. */
export const PROXY_ERRORS = {
  lineTooLong: { code: AGENT_SOURCE | 263, text: 'Line passed to IPC too long' },
  malformedEscape: { code: AGENT_SOURCE | 276, text: 'IPC syntax error' },
  connectFailed: { code: AGENT_SOURCE | 259, text: 'IPC connect call failed' },
  endOfFile: { code: AGENT_SOURCE | 16383, text: 'End of file' },
  timeout: { code: AGENT_SOURCE | 62, text: 'Timeout' },
  invalidResponse: { code: AGENT_SOURCE | 260, text: 'Invalid IPC response' },
  /** The extra socket's answer to a command it does not allow; gpg copes with it (see protocol notes §7). */
  forbidden: { code: AGENT_SOURCE | 251, text: 'Forbidden' },
  limitReached: { code: AGENT_SOURCE | 183, text: 'Limit reached' },
  /** What gpg-agent answers when the person cancels a prompt (GPG_ERR_CANCELED). */
  cancelled: { code: AGENT_SOURCE | 99, text: 'Operation cancelled' },
  /** What gpg-agent answers for a confirmation not given (GPG_ERR_NOT_CONFIRMED). */
  notConfirmed: { code: AGENT_SOURCE | 114, text: 'Not confirmed' },
} as const;
export type ProxyErrorName = keyof typeof PROXY_ERRORS;

/** Room for a path and what is wrong with it; the line stays far below the 1000 bytes libassuan takes. */
const MAX_DETAIL = 400;

export function errLine(name: ProxyErrorName, detail?: string): Buffer {
  const { code, text } = PROXY_ERRORS[name];
  let line = `ERR ${code} ${text} <${PROXY_SOURCE_NAME}>`;
  if (detail) line += ` - ${printable(detail).slice(0, MAX_DETAIL)}`;
  return Buffer.from(`${line.slice(0, MAX_LINE_BYTES - 3)}\n`, 'latin1');
}

/** Keeps a detail on one printable ASCII line whatever it was built from. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}
