/**
 * Consent for a running proxy (`--confirm`): the desk every session's requests go to, prompting through the
 * person's pinentry on gpg-agent's standard socket, and the user IDs prompts name keys by. Made once at start,
 * shared by the sessions of every listener and bridge link of the process: one person, one prompt at a time.
 */
import type { Logger } from 'pino';
import type { ConsentConfig } from '../config.js';
import { ProxyStartError } from '../listenSocket.js';
import type { SessionConsent } from '../session/session.js';
import { daemonSocketPath } from '../upstream/daemons.js';
import { promptThroughAgent } from './agentPrompt.js';
import { ConsentDesk } from './consentDesk.js';
import { confirmationCommand, type ConsentRequest } from './consentRequest.js';
import { KeyNames } from './keyNames.js';

/**
 * Desks by where they prompt (and how): the proxies of one process (several --listen/--upstream pairs) prompting
 * through one agent share one desk, so the person still gets one prompt at a time, and one set of windows.
 */
const desks = new Map<string, SessionConsent>();

export async function startConsent(confirm: ConsentConfig | undefined, env: NodeJS.ProcessEnv, log: Logger): Promise<SessionConsent | undefined> {
  if (!confirm) return undefined;
  if (confirm.prompt) return { operations: confirm.operations, desk: new ConsentDesk(confirm.prompt, confirm.windows), keyNames: new KeyNames(env) };
  const socketPath = confirm.socket ?? (await daemonSocketPath('agent', env));
  // The extra socket forbids GET_CONFIRMATION: prompts sent there would refuse every use.
  const extraSocket = await daemonSocketPath('agent-extra', env).catch(() => '');
  if (socketPath === extraSocket) {
    throw new ProxyStartError(`--confirm-socket ${socketPath} is gpg-agent's extra socket, which forbids the prompt (GET_CONFIRMATION): give its standard socket`);
  }
  log.info({ socket: socketPath, operations: [...confirm.operations], windows: confirm.windows }, "key uses need the person's approval (--confirm): prompts through the pinentry of the agent here");
  const key = JSON.stringify([socketPath, env.GNUPGHOME ?? '', confirm.windows]);
  const shared = desks.get(key);
  if (shared) return { ...shared, operations: confirm.operations };
  const setting = { socketPath, env, log };
  const prompt = (request: ConsentRequest, signal: AbortSignal) => promptThroughAgent(confirmationCommand(request), setting, signal);
  const consent = { operations: confirm.operations, desk: new ConsentDesk(prompt, confirm.windows), keyNames: new KeyNames(env) };
  desks.set(key, consent);
  return consent;
}
