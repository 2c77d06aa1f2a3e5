/**
 * A bridge link, seen from the agent end (the end that runs gpg-agent and starts the transport): one byte stream
 * to the client end (the stdio of `ssh -T`, `kubectl exec -i`, `docker exec -i`, …) carrying HTTP/2, one stream per
 * Assuan session. Pure definition: the runtime (src/bridge/agentEnd.ts) provides the effects and actors.
 *
 * The transport is started, the client end greets with a banner and opens HTTP/2; the link is then up, checked by
 * PINGs. A link that is lost (the transport ended, HTTP/2 failed, a PING went unanswered) is started again after a
 * growing delay, unless it failed to start at all, the client end refused to serve, or it ran out of attempts. A shutdown stops new sessions (GOAWAY),
 * lets the ones in flight finish within the drain timeout, then ends the transport.
 *
 * Sessions are not children of this machine: each stream runs the full session machine as its own actor, as
 * local clients do.
 */
import { assign, fromPromise, setup } from 'xstate';

export type LinkFailure =
  /** The transport command could not be started (not found, not executable). */
  | { reason: 'spawnFailed'; code: string }
  /** No banner and HTTP/2 from the client end within the handshake timeout. */
  | { reason: 'handshakeTimeout' }
  /** The transport ended, or HTTP/2 over it failed. */
  | { reason: 'linkDown'; cause: string }
  /** A PING was not answered within the ping timeout. */
  | { reason: 'pingTimeout' }
  /** The client end could not serve (e.g. a gpg-agent runs at its path there); its message, for people. */
  | { reason: 'refused'; message: string };

export interface LinkContext {
  /** Starts since the link was last up (1 for the first). */
  attempts: number;
  maxAttempts: number;
  failure: LinkFailure | null;
}

export type LinkEvent =
  /** The client end's banner came, and HTTP/2 is established over the transport. */
  | { type: 'LINK_UP' }
  /** The transport ended or HTTP/2 failed; `cause` is worded for people (exit code, signal, error code). */
  | { type: 'LINK_DOWN'; cause: string }
  /** The client end said, in place of its banner, that it cannot serve; retrying would not change that. */
  | { type: 'LINK_REFUSED'; message: string }
  | { type: 'PING_ACKED' }
  /** SIGINT/SIGTERM or close(); repeated requests change nothing. */
  | { type: 'SHUTDOWN' };

/** Placeholder for an actor the runtime provides: it never settles. */
const provided = fromPromise<void>(() => new Promise<void>(() => {}));

const linkSetup = setup({
  types: {
    context: {} as LinkContext,
    events: {} as LinkEvent,
    input: {} as { maxAttempts: number },
  },
  actors: {
    /** Start the transport command with the client end's code on its stdin; resolves once it runs. */
    startTransport: provided,
    /** Resolves once no session is open on the link (at once if none is). */
    waitForSessions: provided,
  },
  actions: {
    sendPing: () => {},
    /** GOAWAY: no new streams; the sessions open are asked to finish their command in flight and close. */
    stopAccepting: () => {},
    /** The drain time is up: the sessions still open are closed now. */
    stopSessionsNow: () => {},
    /** End the transport's input and HTTP/2 politely: the client end exits when it sees the end. */
    closeTransport: () => {},
    /** Tear the link down now: HTTP/2 destroyed (every stream with it), the transport killed. */
    dropTransport: () => {},
    rejectEvent: (_, _params: { type: string }) => {},
  },
  guards: {
    mayRetry: ({ context }) =>
      context.failure?.reason !== 'spawnFailed' && context.failure?.reason !== 'refused' && context.attempts < context.maxAttempts,
  },
  delays: {
    handshakeTimeout: 30_000,
    pingInterval: 15_000,
    pingTimeout: 10_000,
    drainTimeout: 10_000,
    closeGrace: 2_000,
    /** 0.5 s after the first loss, doubling, at most 30 s. */
    retryDelay: ({ context }) => Math.min(500 * 2 ** Math.max(context.attempts - 1, 0), 30_000),
  },
});

const lose = (failure: (event: LinkEvent) => LinkFailure) => ({
  target: '#link.lost',
  actions: linkSetup.assign({ failure: ({ event }) => failure(event) }),
});
const linkDown = (event: LinkEvent): LinkFailure => ({ reason: 'linkDown', cause: event.type === 'LINK_DOWN' ? event.cause : 'unknown' });

export const linkMachine = linkSetup.createMachine({
  id: 'link',
  context: ({ input }) => ({ attempts: 1, maxAttempts: input.maxAttempts, failure: null }),
  initial: 'spawning',
  on: {
    '*': { actions: { type: 'rejectEvent', params: ({ event }) => ({ type: event.type }) } },
  },
  states: {
    spawning: {
      invoke: {
        id: 'startTransport',
        src: 'startTransport',
        onDone: 'handshaking',
        onError: {
          target: 'lost',
          actions: assign({ failure: ({ event }) => ({ reason: 'spawnFailed', code: errorCode(event.error) }) }),
        },
      },
      on: { SHUTDOWN: 'closing' },
    },
    /** The transport runs: waiting for the client end's banner and HTTP/2. Bytes before the banner are skipped. */
    handshaking: {
      after: { handshakeTimeout: lose(() => ({ reason: 'handshakeTimeout' })) },
      on: {
        LINK_UP: 'up',
        LINK_DOWN: lose(linkDown),
        LINK_REFUSED: lose((event) => ({ reason: 'refused', message: event.type === 'LINK_REFUSED' ? event.message : '' })),
        SHUTDOWN: 'closing',
      },
    },
    up: {
      entry: assign({ attempts: 1, failure: null }),
      initial: 'quiet',
      on: {
        LINK_DOWN: lose(linkDown),
        SHUTDOWN: 'draining',
      },
      states: {
        quiet: { after: { pingInterval: 'pinging' } },
        pinging: {
          entry: 'sendPing',
          on: { PING_ACKED: 'quiet' },
          after: { pingTimeout: lose(() => ({ reason: 'pingTimeout' })) },
        },
      },
    },
    draining: {
      entry: 'stopAccepting',
      invoke: { id: 'waitForSessions', src: 'waitForSessions', onDone: 'closing' },
      after: { drainTimeout: { target: 'closing', actions: 'stopSessionsNow' } },
      on: { LINK_DOWN: 'closed', SHUTDOWN: {} },
    },
    /** The link is gone: torn down at once (its sessions end), then started again or given up. */
    lost: {
      entry: 'dropTransport',
      always: [{ guard: 'mayRetry', target: 'reconnecting' }, { target: 'failed' }],
    },
    reconnecting: {
      after: { retryDelay: { target: 'spawning', actions: assign({ attempts: ({ context }) => context.attempts + 1 }) } },
      on: { SHUTDOWN: 'closed' },
    },
    closing: {
      entry: 'closeTransport',
      after: { closeGrace: 'closed' },
      on: { LINK_DOWN: 'closed', SHUTDOWN: {} },
    },
    closed: { type: 'final', entry: 'dropTransport' },
    failed: { type: 'final' },
  },
});

function errorCode(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : 'ERROR';
}
