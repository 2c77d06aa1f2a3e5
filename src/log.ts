/**
 * Logging. Records carry session ids, verbs, kinds, byte counts, durations and outcomes; protocol bytes never
 * reach a logger (the session runtime holds them and the machine's events carry none), so no level can leak
 * a secret. JSON lines for machines, pino-pretty for a person at a terminal.
 */
import pino, { type Level, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import { logSink } from './logSink.js';

export type LogLevel = Level | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LoggerOptions {
  level: LogLevel;
  /** Human-readable output (default: when stdout is a terminal). */
  pretty?: boolean;
  /** Default: stdout, through a sink that never blocks or keeps the process from exiting (see logSink.ts). */
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const base = { level: options.level, base: { svc: 'assuan-proxy' } };
  if (options.destination) return pino(base, options.destination);
  const sink = logSink(process.stdout);
  const human = options.pretty ?? Boolean(process.stdout.isTTY);
  if (human) {
    // Formatted in-line (pino-pretty's own stream would write with a blocking sonic-boom of its own).
    const format = prettyFactory({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,svc' });
    return pino(base, { write: (line: string) => sink.write(format(line)) });
  }
  return pino(base, { write: (line: string) => sink.write(line) });
}

let sharedDefault: Logger | undefined;

/**
 * The logger used when none is given, by the CLI and the library alike: `info` (one line per session, one per
 * refusal), JSON lines on stdout, or formatted when stdout is a terminal. One per process.
 */
export function defaultLogger(): Logger {
  sharedDefault ??= createLogger({ level: 'info' });
  return sharedDefault;
}

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}
