/**
 * Differential runs: the same client bytes, sent the same way, directly to gpg-agent and through the proxy. A run
 * is a list of steps; it always ends with the client shutting down its writing side and reading until the peer
 * closes, so it ends by itself, with no timer.
 */
import net from 'node:net';

export type Step =
  /** Write these bytes in one write. */
  | { send: string | Buffer }
  /** Wait until what has arrived since the last wait matches. */
  | { until: RegExp }
  /** Shut down the writing side (half-close), as gpg does when it gives up in the middle of an INQUIRE. */
  | { halfClose: true };

/** Everything the client read, as latin1 text, until the peer closed. */
export function transcript(socketPath: string, steps: Step[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: socketPath, allowHalfOpen: true });
    let received = '';
    let waitFrom = 0;
    let next = 0;
    let waiting: RegExp | undefined = /^OK/m;
    const advance = () => {
      while (next <= steps.length) {
        if (waiting) {
          const match = waiting.exec(received.slice(waitFrom));
          if (!match) return;
          waitFrom += match.index + match[0].length;
          waiting = undefined;
        }
        if (next === steps.length) {
          next++;
          // Every run ends with a half-close: the peer then finishes and closes by itself.
          if (!socket.writableEnded) socket.end();
          return;
        }
        const step = steps[next++]!;
        if ('send' in step) socket.write(typeof step.send === 'string' ? Buffer.from(step.send, 'latin1') : step.send);
        else if ('until' in step) waiting = step.until;
        else socket.end();
      }
    };
    socket.on('connect', advance);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      advance();
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
  });
}

/** What differs between two runs for reasons of their own: the greeting's pid, a pinentry's pid. */
export function normalized(text: string): string {
  return text
    .replace(/^OK Pleased to meet you, process \d+$/m, 'OK Pleased to meet you, process N')
    .replace(/^INQUIRE PINENTRY_LAUNCHED .*$/gm, 'INQUIRE PINENTRY_LAUNCHED …');
}
