/** Runs a bridge link in-process for a test: the agent end here, the client end through a real transport process. */
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { bundle } from '../../scripts/bundle.js';
import { startForward, type ForwardOptions, type RunningForward } from '../../src/bridge/agentEnd.js';
import { resolveConfig, type ProxyOptions } from '../../src/config.js';
import { combineObservers } from '../../src/machineTools/trace.js';
import { makeTempDir } from './gnupg.js';
import type { LogRecord } from './proxy.js';
import { startRecording } from './transitionRecords.js';

export const PIPE_RELAY = path.resolve('test/support/pipeRelay.mjs');
/** A transport like `ssh -T host`: its own process between the ends, printing a motd-like line first. */
export const NOISY_TRANSPORT = [process.execPath, PIPE_RELAY, '--noise', 'Welcome to the far side!\r\nLast login: never\n'];

let code: Promise<Buffer> | undefined;
/** The single-file build, built once per test file (as `npm run bundle` does). */
export function clientEndCode(): Promise<Buffer> {
  code ??= (async () => {
    const dir = makeTempDir('bundle.');
    try {
      const { outfile } = await bundle(path.join(dir, 'assuan-proxy.mjs'));
      return fs.readFileSync(outfile);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  })();
  return code;
}

export interface TestForward {
  forward: RunningForward;
  logs: LogRecord[];
  close(): Promise<'closed' | 'failed'>;
}

export async function startTestForward(
  options: Omit<ForwardOptions, 'config' | 'clientEndCode' | 'transport' | 'upstream'> & {
    upstream: string;
    remoteSocket: string;
    transport?: readonly string[];
    proxy?: ProxyOptions;
  },
): Promise<TestForward> {
  const logs: LogRecord[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogRecord);
      done();
    },
  });
  const recording = startRecording();
  const config = resolveConfig({
    logger: pino({ level: 'debug' }, destination),
    warmUpSessions: 0,
    ...options.proxy,
    inspect: combineObservers([options.proxy?.inspect, recording.observer])!,
  });
  const { upstream, remoteSocket, transport, proxy: _proxy, ...rest } = options;
  const forward = startForward({
    ...rest,
    transport: transport ?? NOISY_TRANSPORT,
    clientEndCode: await clientEndCode(),
    clientEndArgs: ['client-end', '--listen', remoteSocket, '--log-level', 'debug', ...(rest.clientEndArgs ?? [])],
    config,
    upstream: { path: upstream, daemon: 'gpg-agent', env: process.env },
  });
  let saved = false;
  const save = () => {
    if (!saved) recording.save(`forward ${remoteSocket}`);
    saved = true;
  };
  void forward.done.then(save);
  return {
    forward,
    logs,
    async close() {
      const result = await forward.close();
      save();
      return result;
    },
  };
}
