/**
 * The listener's lifecycle. Pure definition: the runtime (src/server.ts) provides the effects.
 *
 * Sessions are not children of this machine: each is an independent root actor, so no session's failure can
 * reach the server or another session. The server only counts them, through SESSION_OPENED / SESSION_ENDED.
 * Shutdown stops accepting, lets commands in flight finish (each session is asked to STOP), and after the drain
 * timeout closes the rest (STOP_NOW), then removes our socket.
 */
import { assign, setup } from 'xstate';

export interface ServerContext {
  openSessions: number;
  /** Why the server could not start, worded for the person who started it. */
  startFailure: string | null;
}

export type ServerEvent =
  | { type: 'LISTENING' }
  | { type: 'LISTEN_FAILED'; reason: string }
  | { type: 'SESSION_OPENED' }
  | { type: 'SESSION_ENDED' }
  /** SIGINT/SIGTERM or close(); repeated signals are expected (npm relays Ctrl-C) and change nothing. */
  | { type: 'SHUTDOWN' };

const serverSetup = setup({
  types: {
    context: {} as ServerContext,
    events: {} as ServerEvent,
  },
  actions: {
    /** Check the socket path (private directory, no live socket there), then bind it 0600. */
    listen: () => {},
    /** Close the listening socket: no new connections. */
    stopAccepting: () => {},
    /** Ask every open session to close once its command in flight is done. */
    stopSessions: () => {},
    /** Close every session still open, gracefully. */
    stopSessionsNow: () => {},
    /** Remove our socket file (only if it is still the one we created). */
    removeSocket: () => {},
    rejectEvent: (_, _params: { type: string }) => {},
  },
  guards: {
    noOpenSessions: ({ context }) => context.openSessions === 0,
  },
  delays: {
    /** How long commands in flight may take to finish after a shutdown request. */
    drainTimeout: 10_000,
  },
});

/** Never below zero, whatever order the runtime reports sessions in. */
const endSession = serverSetup.assign({ openSessions: ({ context }) => Math.max(context.openSessions - 1, 0) });

export const serverMachine = serverSetup.createMachine({
  id: 'server',
  context: { openSessions: 0, startFailure: null },
  initial: 'starting',
  on: {
    '*': { actions: { type: 'rejectEvent', params: ({ event }) => ({ type: event.type }) } },
  },
  states: {
    starting: {
      entry: 'listen',
      on: {
        LISTENING: 'listening',
        LISTEN_FAILED: { target: 'failed', actions: assign({ startFailure: ({ event }) => event.reason }) },
      },
    },
    listening: {
      on: {
        SESSION_OPENED: { actions: assign({ openSessions: ({ context }) => context.openSessions + 1 }) },
        SESSION_ENDED: { actions: endSession },
        SHUTDOWN: 'draining',
      },
    },
    draining: {
      entry: ['stopAccepting', 'stopSessions'],
      always: { guard: 'noOpenSessions', target: 'closed' },
      after: { drainTimeout: 'closingSessions' },
      on: {
        SESSION_ENDED: { actions: endSession },
        SHUTDOWN: {},
      },
    },
    /**
     * The drain time is up: the remaining sessions are closed now, and each still ends with its record (a session
     * waits at most its close grace for its sockets), so the server stops only after the last one.
     */
    closingSessions: {
      entry: 'stopSessionsNow',
      always: { guard: 'noOpenSessions', target: 'closed' },
      on: {
        SESSION_ENDED: { actions: endSession },
        SHUTDOWN: {},
      },
    },
    closed: { type: 'final', entry: 'removeSocket' },
    failed: { type: 'final' },
  },
});
