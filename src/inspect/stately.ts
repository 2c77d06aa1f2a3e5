/**
 * `--inspect`: streams every actor (the server machine and each session) to the Stately inspector through
 * `@statelyai/inspect`'s WebSocket inspector, with events and context sanitized. Nothing is created, and nothing
 * costs, unless it is asked for.
 */
import { createWebSocketInspector } from '@statelyai/inspect';
import type { InspectionEvent } from 'xstate';
import { sanitizeContext, sanitizeEvent, withoutInquirySizes } from './sanitize.js';

export interface InspectorStream {
  /** Give this to the proxy's `inspect` option. */
  inspect: (event: InspectionEvent) => void;
  stop(): void;
}

/**
 * Connects to a WebSocket inspector endpoint (a relay the Stately inspector page listens to). Until it is
 * reachable the last 200 messages are kept and the connection is retried every 5 s (the library's behaviour).
 * Only actor, event and snapshot messages are sent: the library drops `@xstate.action` (whose params could
 * carry anything) and microsteps. While a session has an INQUIRE open, its client's events go without their size.
 */
export function streamToInspector(url: string): InspectorStream {
  const inspector = createWebSocketInspector({
    url,
    sanitizeEvent,
    sanitizeContext,
  });
  return {
    inspect: (event) => inspector.inspect.next?.(withoutInquirySizes(event)),
    stop: () => inspector.stop(),
  };
}
