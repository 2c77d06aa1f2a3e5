/**
 * One place where every consent request of the proxy is decided: one prompt at a time (a person answers one
 * question at a time, and gpg-agent shows one pinentry at a time anyway), in arrival order, and decision windows:
 * after the person approves a use, the same caller using the same key for the same operation is not asked again
 * for the window's seconds (`--confirm-window sign=0,decrypt=300`; 0, the default, asks every time).
 */
import type { ConsentOperation, ConsentRequest } from './consentRequest.js';
import type { PromptVerdict } from './agentPrompt.js';

/** How a request was decided: approved at a prompt or within an open window, or not approved. */
export type ConsentDecision =
  | { readonly approved: true; readonly by: 'prompt' | 'window' }
  | { readonly approved: false; readonly verdict: Exclude<PromptVerdict, 'approved'> };

/** Shows one prompt; aborting the signal withdraws it. */
export type ShowPrompt = (request: ConsentRequest, signal: AbortSignal) => Promise<PromptVerdict>;

interface Waiting {
  readonly request: ConsentRequest;
  readonly decided: (decision: ConsentDecision) => void;
  readonly abort: AbortController;
}

export class ConsentDesk {
  private readonly queue: Waiting[] = [];
  private showing: Waiting | undefined;
  /** Window key → when the window closes (ms on `now`'s clock). */
  private readonly windows = new Map<string, number>();

  constructor(
    private readonly show: ShowPrompt,
    /** Seconds an approval covers, per operation (absent: 0). */
    private readonly windowSeconds: Partial<Record<ConsentOperation, number>>,
    private readonly now: () => number = Date.now,
  ) {}

  /** The requests waiting for the person, the one shown first (for the live view: operation and key only). */
  get pending(): readonly ConsentRequest[] {
    return [...(this.showing ? [this.showing.request] : []), ...this.queue.map((w) => w.request)];
  }

  /**
   * Decides `request`; `decided` is called once, unless the request is withdrawn first (the returned function:
   * the session moved on, it timed out or its client left), which also takes a prompt it has down.
   */
  request(request: ConsentRequest, decided: (decision: ConsentDecision) => void): () => void {
    if (this.windowOpen(request)) {
      decided({ approved: true, by: 'window' });
      return () => {};
    }
    const waiting: Waiting = { request, decided, abort: new AbortController() };
    this.queue.push(waiting);
    this.next();
    return () => {
      const queued = this.queue.indexOf(waiting);
      if (queued !== -1) this.queue.splice(queued, 1);
      // The prompt's own promise settles once it is down; the next one is shown after that, not over it.
      if (this.showing === waiting) waiting.abort.abort();
    };
  }

  private next(): void {
    // `showing` is checked at every turn: a `decided` called below may ask again at once, and that request()
    // shows the next prompt itself; going on here would put a second one up beside it.
    while (!this.showing) {
      const waiting = this.queue.shift();
      if (!waiting) return;
      // A request that waited behind an approval of the same use is covered by its window.
      if (this.windowOpen(waiting.request)) {
        waiting.decided({ approved: true, by: 'window' });
        continue;
      }
      this.showing = waiting;
      const shown = waiting;
      // A prompt that fails (throws, rejects) refuses the use as `unavailable`: left unsettled, it would keep
      // `showing` set and every later request would wait for ever.
      const verdict = new Promise<PromptVerdict>((resolve) => resolve(this.show(shown.request, shown.abort.signal))).catch((): PromptVerdict => 'unavailable');
      void verdict.then((verdict) => {
        this.showing = undefined;
        if (!shown.abort.signal.aborted) {
          if (verdict === 'approved') this.openWindow(shown.request);
          shown.decided(verdict === 'approved' ? { approved: true, by: 'prompt' } : { approved: false, verdict });
        }
        this.next();
      });
      return;
    }
  }

  private openWindow(request: ConsentRequest): void {
    const seconds = this.windowSeconds[request.operation] ?? 0;
    const key = windowKey(request);
    if (seconds <= 0 || key === undefined) return;
    // Closed windows are dropped as new ones open, so the map holds no more than the windows still open.
    for (const [key, until] of this.windows) if (until <= this.now()) this.windows.delete(key);
    this.windows.set(key, this.now() + seconds * 1000);
  }

  private windowOpen(request: ConsentRequest): boolean {
    const key = windowKey(request);
    const until = key === undefined ? undefined : this.windows.get(key);
    if (key === undefined || until === undefined) return false;
    if (this.now() < until) return true;
    this.windows.delete(key);
    return false;
  }
}

/** A card key reference a window may name: a plain one (OPENPGP.3), compared exactly. */
const PLAIN_CARD_KEY = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * A window covers one caller, one key, one operation: never a key other than the one approved. A use whose key is
 * not known (no SIGKEY/SETKEY the agent accepted, a card key given in another form) gets no window: each is asked.
 */
function windowKey(request: ConsentRequest): string | undefined {
  const key = request.cardKey !== undefined ? (PLAIN_CARD_KEY.test(request.cardKey) ? `card:${request.cardKey}` : undefined) : request.keygrip;
  return key === undefined ? undefined : JSON.stringify([request.caller.key, key, request.operation]);
}
