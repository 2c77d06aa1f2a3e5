/**
 * `--max-crypto N`: at most N key operations (PKSIGN, PKDECRYPT) of one upstream's sessions at the agent at once;
 * the rest wait in arrival order. gpg-agent 2.2 serves them in parallel threads, and many at once can fail there
 * (with RSA keys and a cached passphrase, each unprotects the key in secure memory, which runs out: measured in
 * bench/results.md). A session holds its slot from the moment its command is sent until its answer ends.
 */
export interface CryptoSlotTicket {
  /** Leaves the queue, if the slot has not been granted yet (else nothing: the command is on its way). */
  leaveQueue(): void;
  /** Gives a granted slot back (the command's answer ended, or the session did), or leaves the queue. */
  release(): void;
}

export class CryptoSlots {
  private inUse = 0;
  private readonly queue: Array<() => void> = [];

  constructor(readonly size: number) {}

  /** Key operations at the agent now, and waiting (for the live view and tests). */
  get counts(): { inUse: number; waiting: number } {
    return { inUse: this.inUse, waiting: this.queue.length };
  }

  /** Asks for a slot; `granted` is called once it is this caller's (never synchronously). */
  take(granted: () => void): CryptoSlotTicket {
    let state: 'waiting' | 'granted' | 'done' = 'waiting';
    const grant = () => {
      if (state !== 'waiting') return;
      state = 'granted';
      this.inUse++;
      granted();
    };
    const leave = () => {
      if (state !== 'waiting') return;
      state = 'done';
      const at = this.queue.indexOf(grant);
      if (at !== -1) this.queue.splice(at, 1);
    };
    this.queue.push(grant);
    // Granted from a microtask: the caller's machine is still running the action that asked.
    queueMicrotask(() => this.grantWaiting());
    return {
      leaveQueue: leave,
      release: () => {
        if (state === 'waiting') return leave();
        if (state !== 'granted') return;
        state = 'done';
        this.inUse--;
        queueMicrotask(() => this.grantWaiting());
      },
    };
  }

  private grantWaiting(): void {
    while (this.inUse < this.size && this.queue.length > 0) this.queue.shift()!();
  }
}
