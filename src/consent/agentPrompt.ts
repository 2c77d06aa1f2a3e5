/**
 * Asks the person through their own pinentry: a connection of its own to gpg-agent's standard socket sending
 * `GET_CONFIRMATION` (gpg-agent forbids it on the extra socket, so the prompt works whichever socket the relayed
 * sessions use). The agent runs one pinentry at a time for all its clients, so the prompt also waits for a
 * passphrase dialog that is up.
 *
 * gpg-agent 2.2 does not stop a pinentry showing GET_CONFIRMATION when the asking connection closes (measured:
 * the pinentry stays, holding the agent's pinentry lock, so every later prompt and passphrase dialog waits). So
 * the prompt asks to be told the pinentry's pid (`OPTION allow-pinentry-notify`), and a withdrawn prompt sends
 * it SIGINT, as gpg-agent itself does to stop a pinentry, but only when that pid is a child of the agent the
 * prompt reached (an agent behind a forwarded socket runs its pinentry on another host). A prompt withdrawn while
 * the agent still waits for its pinentry lock (another dialog is up) is not closed: gpg-agent would show it once it
 * gets the lock anyway, to no one, and hold the lock again (neither a failed write of PINENTRY_LAUNCHED nor a CAN
 * to it stops it: only GPG_ERR_CANCELED does, call-pinentry.c start_pinentry, and CAN gives ASS_CANCELED). So the
 * connection stays open, and at PINENTRY_LAUNCHED (the agent waits for our answer, the pinentry has shown nothing
 * yet) the new pinentry is stopped before the answer goes; the agent's own lock timeout (60 s) bounds the wait.
 */
import fs from 'node:fs/promises';
import type { Logger } from 'pino';
import { AssuanConnection, AssuanError, DialError, printable } from '../protocol/assuanClient.js';

/** How a prompt ended: the person approved, refused (Cancel, No), let it time out, or no prompt could be shown. */
export type PromptVerdict = 'approved' | 'refused' | 'timedOut' | 'unavailable';

/** How long a withdrawn prompt may wait for the agent's pinentry lock to cancel it: past gpg-agent's 60 s. */
const WITHDRAWN_BOUND_MS = 70_000;

/** gpg-error codes (low 16 bits) GET_CONFIRMATION answers with. */
const GPG_ERR_TIMEOUT = 62;
const GPG_ERR_FORBIDDEN = 251;

export interface AgentPromptSetting {
  /** gpg-agent's standard socket (or a socket file naming it). */
  socketPath: string;
  /** The environment socket files are read in, and the pinentry's display and terminal are taken from. */
  env: NodeJS.ProcessEnv;
  log: Logger;
}

/** Where the pinentry should appear: the proxy's own display and terminal, when it has them. */
function displayOptions(env: NodeJS.ProcessEnv): string[] {
  const options: string[] = [];
  const add = (name: string, value: string | undefined) => {
    // A value with a newline would end the command line early; such a value is not a display anyway.
    if (value && !/[\r\n\0]/.test(value)) options.push(`OPTION ${name}=${value}`);
  };
  add('display', env.DISPLAY);
  add('ttyname', env.GPG_TTY);
  add('ttytype', env.TERM);
  add('xauthority', env.XAUTHORITY);
  return options;
}

/**
 * Shows `command` (a GET_CONFIRMATION line, see consentRequest.ts) and resolves with what the person did.
 * Aborting `signal` withdraws the prompt (its pinentry is stopped) and resolves `timedOut`. Never rejects.
 */
export async function promptThroughAgent(command: string, setting: AgentPromptSetting, signal: AbortSignal): Promise<PromptVerdict> {
  const { log } = setting;
  let connection: AssuanConnection | undefined;
  let agentPid = 0;
  let pinentryPid = 0;
  /** GET_CONFIRMATION is with the agent, its answer not in yet. */
  let asking = false;
  /** The agent will say when its pinentry starts (OPTION allow-pinentry-notify accepted). */
  let notified = false;
  const withdraw = () => {
    if (pinentryPid > 0) {
      if (agentPid > 0) void stopPinentry(pinentryPid, agentPid, log);
    } else if (asking && notified && agentPid > 0) {
      // No pinentry yet: the agent waits for its lock. It is cancelled at PINENTRY_LAUNCHED (see above).
      setTimeout(() => connection?.close(), WITHDRAWN_BOUND_MS).unref();
      return;
    }
    connection?.close();
  };
  signal.addEventListener('abort', withdraw, { once: true });
  try {
    // A person may take minutes; the session's consent timeout, through `signal`, is the bound that counts.
    ({ connection } = await AssuanConnection.open(setting.socketPath, setting.env, 30 * 60_000));
    if (signal.aborted) return 'timedOut';
    const pid = await connection.request('GETINFO pid');
    agentPid = pid.ok ? Number(pid.data.toString('latin1')) || 0 : 0;
    notified = (await connection.request('OPTION allow-pinentry-notify')).ok;
    for (const option of displayOptions(setting.env)) await connection.request(option);
    if (signal.aborted) return 'timedOut';
    asking = true;
    const answer = await connection.request(command, async (keyword, args) => {
      if (keyword !== 'PINENTRY_LAUNCHED') return 'END';
      pinentryPid = Number(args.split(' ')[0]) || 0;
      // Withdrawn while it waited for the lock: its pinentry goes before it has shown anything.
      if (signal.aborted && agentPid > 0) await stopPinentry(pinentryPid, agentPid, log);
      return 'END';
    });
    asking = false;
    if (signal.aborted) return 'timedOut';
    if (answer.ok) return 'approved';
    const code = answer.error?.code ?? 0;
    if (code === GPG_ERR_TIMEOUT) return 'timedOut';
    if (code === GPG_ERR_FORBIDDEN) {
      log.error({ socket: setting.socketPath }, "consent prompts need gpg-agent's standard socket: this one forbids GET_CONFIRMATION (is it the extra socket?)");
      return 'unavailable';
    }
    // Cancel, No, and whatever else the agent answers: the use is not approved.
    if (code !== 99 && code !== 114) log.warn({ code, answer: printable(answer.error?.text ?? '').slice(0, 120) }, 'the consent prompt failed; the use is refused');
    return 'refused';
  } catch (err) {
    if (signal.aborted) return 'timedOut';
    const reason = err instanceof DialError || err instanceof AssuanError ? err.message : String(err);
    log.error({ socket: setting.socketPath, reason }, 'no consent prompt could be shown; the use is refused');
    return 'unavailable';
  } finally {
    signal.removeEventListener('abort', withdraw);
    connection?.close();
  }
}

/** SIGINT to the pinentry, if it is still the agent's child (a pid may have been reused since). */
async function stopPinentry(pinentryPid: number, agentPid: number, log: Logger): Promise<void> {
  try {
    const stat = await fs.readFile(`/proc/${pinentryPid}/stat`, 'latin1');
    // Fields after the command name (which may hold blanks and parentheses): state, then the parent's pid.
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (parent !== agentPid) return;
    process.kill(pinentryPid, 'SIGINT');
    log.info({ pinentryPid }, 'consent prompt withdrawn: its pinentry was stopped');
  } catch {
    // Gone already, or not ours to see: nothing to stop.
  }
}
