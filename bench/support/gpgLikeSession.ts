/**
 * A short session as gpg opens one for a signing, read-only commands only: what gpg sends after connecting
 * (RESET, its OPTIONs, GETINFO version) and its key lookups (HAVEKEY, KEYINFO), none of which needs a pinentry.
 */
import { BenchConnection, nowMicros } from './client.js';

/** Twelve commands, each answered OK by gpg-agent 2.2 for a key it holds. */
export function gpgLikeCommands(keygrips: string[]): Buffer[] {
  return [
    'RESET',
    'OPTION ttyname=/dev/pts/0',
    'OPTION ttytype=xterm-256color',
    'OPTION lc-ctype=C.UTF-8',
    'OPTION lc-messages=C',
    'GETINFO version',
    'OPTION allow-pinentry-notify',
    'OPTION agent-awareness=2.1.0',
    `HAVEKEY ${keygrips.join(' ')}`,
    `KEYINFO ${keygrips[0]}`,
    'GETINFO s2k_count',
    'RESET',
  ].map((line) => Buffer.from(`${line}\n`));
}

export interface ShortSessionTimes {
  /** From connect() to the greeting's LF. */
  connectMicros: number;
  /** One per command, from its write to its OK. */
  roundTripMicros: number[];
}

/** Connects, reads the greeting, runs `commands` one at a time, then leaves with BYE. */
export async function gpgLikeSession(socket: string, commands: Buffer[]): Promise<ShortSessionTimes> {
  const start = nowMicros();
  const conn = await BenchConnection.open(socket);
  const connectMicros = nowMicros() - start;
  const roundTripMicros: number[] = [];
  for (const command of commands) roundTripMicros.push(await conn.command(command));
  conn.leave();
  return { connectMicros, roundTripMicros };
}
