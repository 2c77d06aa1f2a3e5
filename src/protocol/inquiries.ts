/**
 * What gpg-agent's reader does while an INQUIRE is open, by keyword: the facts the session machine models.
 *
 * libassuan's `assuan_inquire` (assuan-inquire.c) reads client lines until one ends the inquiry: `END`, any line
 * starting with `CAN`, or any other line except `#` comments and empty lines (that one is consumed and the inquiry
 * fails with ERR 274). A `D` line is data, except for an inquiry called with no buffer (`nodataexpected`): there a
 * `D` line ends it like any other line. Only after the command handler returns does the agent's command loop read
 * again, so every line the client sent after the one that ended the inquiry is read later as a new command.
 *
 * Inquiries made with no buffer, read at the tags gnupg-2.2.40 / 2.4.8 and libassuan-2.5.5:
 * - PINENTRY_LAUNCHED (gpg-agent, agent/command.c:343; 2.4: :389), only after `OPTION allow-pinentry-notify`:
 *   the agent ignores the inquiry's error (END, CAN, a D line, EOF alike) and carries on with the pinentry;
 * - CONFIRM 0|1 (gpg-agent 2.4, agent/command.c:4538, loopback pinentry mode).
 * scdaemon's KNOWNCARDP (scd/command.c:440) takes no data at scdaemon, but a client of gpg-agent only sees it
 * through the SCD pass-through, which always reads the answer with a buffer (agent/call-scd.c:771): for the
 * agent's client it takes data. See README "What the proxy knows about gpg-agent's reader".
 */

/** Inquiries whose reader at gpg-agent takes no data: a `D` line ends them, like any line but `#` and empty. */
const NO_DATA_INQUIRIES: ReadonlySet<string> = new Set(['PINENTRY_LAUNCHED', 'CONFIRM']);

/**
 * Inquiries whose answer is a secret (protocol notes §11): a passphrase, a PIN, or key material. An unknown
 * keyword (reported as OTHER by the classifier, e.g. a scdaemon inquiry passed through) counts as secret.
 */
const SECRET_INQUIRIES: ReadonlySet<string> = new Set(['PASSPHRASE', 'NEW_PASSPHRASE', 'NEWPASSWD', 'KEYDATA', 'NEEDPIN', 'SECRET', 'OTHER']);

/**
 * Commands whose answer is a secret (protocol notes §11): GET_PASSPHRASE returns the passphrase (hex in its OK
 * line, or D lines with --data), GETVAL a stored value (historically a passphrase).
 */
const SECRET_ANSWER_COMMANDS: ReadonlySet<string> = new Set(['GET_PASSPHRASE', 'GETVAL']);

export function commandAnswerIsSecret(verb: string): boolean {
  return SECRET_ANSWER_COMMANDS.has(verb);
}

export function inquiryTakesData(keyword: string): boolean {
  return !NO_DATA_INQUIRIES.has(keyword);
}

export function inquiryAnswerIsSecret(keyword: string): boolean {
  return SECRET_INQUIRIES.has(keyword);
}
