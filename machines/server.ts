/**
 * The listener's lifecycle. Pure definition: the runtime (src/server.ts) provides the effects and the two
 * actors it waits on.
 *
 * Sessions are not children of this machine: each is an independent root actor, so no session's failure can
 * reach the server or another session. They are counted once, by the session registry (src/sessionRegistry.ts);
 * the machine needs only to learn when none is left during a shutdown, which the `waitForSessions` actor tells it.
 * Shutdown stops accepting, lets commands in flight finish (each session is asked to STOP), and after the drain
 * timeout closes the rest (STOP_NOW), then removes our socket.
 */
import { assign, fromPromise, setup } from 'xstate';

export interface ServerContext {
  /** Why the server could not start, worded for the person who started it. */
  startFailure: string | null;
}

/** SIGINT/SIGTERM or close(); repeated signals are expected (npm relays Ctrl-C) and change nothing. */
export type ServerEvent = { type: 'SHUTDOWN' };

/** Placeholder for an actor the runtime provides: it never settles. */
const provided = fromPromise<void>(() => new Promise<void>(() => {}));

const serverSetup = setup({
  types: {
    context: {} as ServerContext,
    events: {} as ServerEvent,
  },
  actors: {
    /** Check the socket path (private directory, no live socket there), then bind it 0600. Rejects with the reason. */
    listen: provided,
    /** Resolves once no session is open (at once if none is). */
    waitForSessions: provided,
  },
  actions: {
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
  delays: {
    /** How long commands in flight may take to finish after a shutdown request. */
    drainTimeout: 10_000,
  },
});

export const serverMachine = serverSetup.createMachine({
  id: 'server',
  context: { startFailure: null },
  initial: 'starting',
  on: {
    '*': { actions: { type: 'rejectEvent', params: ({ event }) => ({ type: event.type }) } },
  },
  states: {
    starting: {
      invoke: {
        id: 'listen',
        src: 'listen',
        onDone: 'listening',
        onError: {
          target: 'failed',
          actions: assign({ startFailure: ({ event }) => (event.error instanceof Error ? event.error.message : String(event.error)) }),
        },
      },
    },
    listening: {
      on: { SHUTDOWN: 'draining' },
    },
    draining: {
      entry: ['stopAccepting', 'stopSessions'],
      invoke: { id: 'waitForSessions', src: 'waitForSessions', onDone: 'closed' },
      after: { drainTimeout: 'closingSessions' },
      on: { SHUTDOWN: {} },
    },
    /**
     * The drain time is up: the remaining sessions are closed now, and each still ends with its record (a session
     * waits at most its close grace for its sockets), so the server stops only after the last one.
     */
    closingSessions: {
      entry: 'stopSessionsNow',
      invoke: { id: 'waitForSessions', src: 'waitForSessions', onDone: 'closed' },
      on: { SHUTDOWN: {} },
    },
    closed: { type: 'final', entry: 'removeSocket' },
    failed: { type: 'final' },
  },
});
