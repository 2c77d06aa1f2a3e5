/**
 * Logging. Records carry session ids, verbs, kinds, byte counts, durations and outcomes; protocol bytes never
 * reach a logger (the session runtime holds them and the machine's events carry none), so no level can leak
 * a secret. JSON lines for machines, pino-pretty for a person at a terminal.
 */
import pino, { type Level, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogLevel = Level | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface LoggerOptions {
  level: LogLevel;
  /** Human-readable output (default: when stdout is a terminal). */
  pretty?: boolean;
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const base = { level: options.level, base: { svc: 'assuan-proxy' } };
  const human = options.pretty ?? Boolean(process.stdout.isTTY);
  if (human) {
    return pino(base, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,svc', destination: 1, sync: true }));
  }
  return options.destination ? pino(base, options.destination) : pino(base);
}

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}
