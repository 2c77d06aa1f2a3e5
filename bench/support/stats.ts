/** Summary statistics and number formatting for the benchmark tables. */

export interface Summary {
  median: number;
  p90: number;
  p99: number;
  n: number;
}

export function summarize(samples: number[]): Summary {
  const sorted = Float64Array.from(samples).sort();
  return { median: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), p99: quantile(sorted, 0.99), n: sorted.length };
}

export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export function median(samples: number[]): number {
  return summarize(samples).median;
}

export const micros = (us: number): string => `${us.toFixed(1)} µs`;
export const millis = (ms: number): string => `${ms.toFixed(1)} ms`;
export const ratio = (x: number): string => x.toFixed(2);

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs each path's step in rounds, rotating the order every round so no path always goes first. */
export async function interleave<P>(paths: P[], rounds: number, step: (path: P) => Promise<void>): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < paths.length; k++) await step(paths[(round + k) % paths.length]!);
  }
}
