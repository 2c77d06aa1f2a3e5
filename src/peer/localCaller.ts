/**
 * The caller of a local session as consent prompts and audit records name it: who holds the other end of the
 * client's Unix socket (callerIdentity.ts). Decision windows group requests by user and program, not by pid: each
 * `gpg` run is a new process, and a window that a new process could not use would ask at every signature.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { CallerDescription } from '../consent/consentRequest.js';
import { describeCaller, lookupCaller } from './callerIdentity.js';

export async function identifyLocalCaller(client: Duplex, log: Logger): Promise<CallerDescription | undefined> {
  if (!(client instanceof net.Socket)) return undefined;
  const found = await lookupCaller(client);
  if (!found.caller) {
    log.debug({ reason: found.reason }, 'the caller could not be identified');
    return undefined;
  }
  const { caller } = found;
  return { key: JSON.stringify(['local', caller.uid, caller.program]), text: describeCaller(caller) };
}
