/**
 * What every front of the proxy shares once it has a client connection: the session registry (the limit, the
 * drain), each Session made from the config, the transition trace and the end-of-session hook. The Unix socket
 * listener (server.ts) and a bridge link's agent end (bridge/agentEnd.ts) hand their connections to one of these.
 */
import type { InspectionEvent } from 'xstate';
import type { ProxyConfig } from './config.js';
import { combineObservers, transitionRecorder } from './machineTools/trace.js';
import { Session, type SessionConsent, type SessionSummary } from './session/session.js';
import type { SpareAgentConnection } from './session/spareConnection.js';
import { SessionRegistry } from './sessionRegistry.js';
import type { AuditLog } from './audit/auditLog.js';
import type { UpstreamTarget } from './upstream/daemons.js';
import type { Duplex } from 'node:stream';
import type { CallerDescription } from './consent/consentRequest.js';
import { CryptoSlots } from './session/cryptoSlots.js';
import type { KeyNames } from './consent/keyNames.js';

export interface SessionHostOptions {
  upstream: UpstreamTarget;
  spare?: SpareAgentConnection | undefined;
  /** Log fields naming where each session comes from (e.g. a bridge link), merged into its log lines. */
  origin?: Record<string, string>;
  /** Where audit records go (`--audit`), opened when the proxy started. */
  audit?: AuditLog | undefined;
  /** Consent prompts (`--confirm`), shared by every session of the process. */
  consent?: SessionConsent | undefined;
  /** User IDs by keygrip for audit records (`--audit`). */
  keyNames?: KeyNames | undefined;
  /** Who is on the other end of a client connection (local sockets only), for prompts and audit records. */
  identifyCaller?: ((client: Duplex) => Promise<CallerDescription | undefined>) | undefined;
}

/** The inspection observer the config asks for: its own, plus the transition trace if asked for. */
export function observerFor(config: ProxyConfig): ((event: InspectionEvent) => void) | undefined {
  const { logger } = config;
  return combineObservers([
    config.inspect,
    config.traceTransitions
      ? transitionRecorder(({ actor, from, event, to, changesState }) => {
          if (!changesState) return;
          // Session actors are `session-<id>`; other machines (the server, a link) by their own id.
          const who = actor.startsWith('session-') ? { session: actor.slice('session-'.length) } : { actor };
          logger.info({ ...who, from, event, to }, 'transition');
        })
      : undefined,
  ]);
}

export function createSessionHost(config: ProxyConfig, options: SessionHostOptions): SessionRegistry {
  const logger = options.origin ? config.logger.child(options.origin) : config.logger;
  const inspect = observerFor(config);
  const { spare } = options;
  // Per upstream: the sessions of this host share its agent.
  const cryptoSlots = config.maxCrypto === undefined ? undefined : new CryptoSlots(config.maxCrypto);
  const tellSessionEnd = (summary: SessionSummary): void => {
    try {
      config.onSessionEnd?.(summary);
    } catch (err) {
      // The caller's hook failing must not end a proxy that serves other sessions.
      logger.error({ err, session: summary.sessionId }, 'onSessionEnd hook threw');
    }
  };
  return new SessionRegistry({
    maxSessions: config.maxSessions,
    ...(config.name ? { sessionIdPrefix: `${config.name}-` } : {}),
    closeGraceMs: config.timeouts.closeGraceMs,
    logger,
    createSession: (sessionId, client, onEnd) =>
      new Session({
        sessionId,
        client,
        upstream: options.upstream,
        timeouts: config.timeouts,
        logger,
        maxBufferedClientBytes: config.maxBufferedClientBytes,
        policy: config.policy,
        restrictAgent: config.restricted,
        takeSpareConnection: spare && (() => spare.take()),
        ...(config.clock ? { clock: config.clock } : {}),
        ...(inspect ? { inspect } : {}),
        ...(options.origin?.link ? { link: options.origin.link } : {}),
        ...(options.audit ? { audit: options.audit } : {}),
        ...(options.consent ? { consent: options.consent } : {}),
        ...(cryptoSlots ? { cryptoSlots } : {}),
        ...(options.keyNames ? { keyNames: options.keyNames } : {}),
        ...(options.identifyCaller ? { identifyCaller: () => options.identifyCaller!(client) } : {}),
        onEnd: (summary) => {
          onEnd();
          tellSessionEnd(summary);
        },
      }),
  });
}
