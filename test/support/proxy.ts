/** Starts the proxy in-process for a test, with every log record captured for assertions. */
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
// The package's public entry point, as users import it.
import { startProxy, type ProxyOptions, type RunningProxy } from '../../src/index.js';
import { combineObservers } from '../../src/machineTools/trace.js';
import { makeTempDir } from './gnupg.js';
import { startRecording } from './transitionRecords.js';

export interface LogRecord {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface TestProxy {
  proxy: RunningProxy;
  socket: string;
  logs: LogRecord[];
  /** Every log line exactly as written, for secret scans. */
  rawLog: () => string;
  close(): Promise<void>;
}

export async function startTestProxy(options: ProxyOptions): Promise<TestProxy> {
  const raw: string[] = [];
  const logs: LogRecord[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      const text = chunk.toString();
      raw.push(text);
      for (const line of text.split('\n')) if (line) logs.push(JSON.parse(line) as LogRecord);
      done();
    },
  });
  const dir = options.listen ? undefined : makeTempDir('apx.');
  const listen = options.listen ?? path.join(dir!, 'S.gpg-agent');
  const recording = startRecording();
  const inspect = combineObservers([options.inspect, recording.observer])!;
  let proxy: RunningProxy;
  try {
    proxy = await startProxy({ logger: pino({ level: 'trace' }, destination), ...options, listen, inspect });
  } catch (err) {
    // A refused start is a transition of the server machine too.
    recording.save(listen);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    proxy,
    socket: proxy.socketPath,
    logs,
    rawLog: () => raw.join(''),
    async close() {
      await proxy.close();
      recording.save(listen);
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Log records of events a state did not handle: in real traffic there should be none. */
export function rejectedEvents(logs: LogRecord[]): LogRecord[] {
  return logs.filter((r) => r.msg.startsWith('event not handled'));
}

/** Resolves once the proxy has no open session (sessions end asynchronously after their sockets close). */
export async function sessionsDrained(proxy: RunningProxy): Promise<void> {
  while (proxy.sessionCount > 0) await new Promise((r) => setImmediate(r));
}
