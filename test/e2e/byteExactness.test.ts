/**
 * Byte-exactness, as a property over random Assuan sessions through the proxy against an upstream that follows
 * a script: commands (with comments and empty lines between them), status and comment lines, big binary D
 * blocks, several INQUIREs per command answered with D lines and END, or cancelled with CAN. Both sides write in
 * random chunks, the client pipelining its whole side at once. What each side receives must be exactly what the
 * other sent. Runs PROPERTY_RUNS cases (default 10,000).
 */
import fc from 'fast-check';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LineFramer } from '../../src/protocol/framer.js';
import { makeTempDir } from '../support/gnupg.js';
import { seededRandom } from '../support/random.js';
import { sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';

const RUNS = Number(process.env.PROPERTY_RUNS ?? 10_000);
const CASE_TIMEOUT_MS = 10_000;

// ---- the session model ---------------------------------------------------------------------------------

interface Inquire {
  keyword: string;
  /** The client's answer: D lines, possibly with comment or empty lines among them. */
  answer: Buffer[];
  cancel: boolean;
}
type AgentStep = { kind: 'lines'; lines: Buffer[] } | { kind: 'inquire'; inquire: Inquire };
interface Exchange {
  /** Comment and empty lines the client sends before the command (the agent never answers them). */
  before: Buffer[];
  command: Buffer;
  steps: AgentStep[];
  final: Buffer;
}

const latin1 = (text: string) => Buffer.from(text, 'latin1');
const eol = fc.constantFrom('\n', '\n', '\n', '\r\n');

/** Binary bytes as a D line payload: `%`, CR and LF escaped, as libassuan does. */
function dLine(payload: Uint8Array, end: string): Buffer {
  let text = 'D ';
  for (const byte of payload) text += byte === 0x25 || byte === 0x0d || byte === 0x0a ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  return latin1(text + end);
}
const dLines = (minLines: number, maxLines: number) =>
  fc.array(fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 330, size: 'max' }), eol).map(([payload, end]) => dLine(payload, end)), {
    minLength: minLines,
    maxLength: maxLines,
    size: 'max',
  });
/** Occasionally a big block: 100 to 300 lines of up to 330 binary bytes each (escaped, up to ~1000 bytes a line). */
const dBlock = fc.oneof({ weight: 9, arbitrary: dLines(1, 8) }, { weight: 1, arbitrary: dLines(100, 300) });

const printable = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 -_=+%:/'.split('')), maxLength: 60 });
const commentLine = fc.tuple(printable, eol).map(([text, end]) => latin1(`#${text}${end}`));
const emptyLine = eol.map((end) => latin1(end));
const noReplyLines = fc.array(fc.oneof(commentLine, emptyLine), { maxLength: 2 });
const statusLine = fc.tuple(fc.constantFrom('PROGRESS', 'KEYINFO', 'PADDING', 'CACHE_NONCE'), printable).map(([kw, text]) => latin1(`S ${kw} ${text}\n`));
const agentLines = fc.array(fc.oneof(statusLine, commentLine.map((l) => latin1(`${l.toString('latin1').trimEnd()}\n`)), dBlock.map((b) => Buffer.concat(b))), { maxLength: 3 });

const inquire: fc.Arbitrary<Inquire> = fc.record({
  keyword: fc.constantFrom('CIPHERTEXT', 'KEYDATA', 'PASSPHRASE', 'NEEDPIN'),
  answer: fc.tuple(dBlock, noReplyLines).map(([d, extra]) => [...d, ...extra]),
  cancel: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
});

const exchange: fc.Arbitrary<Exchange> = fc
  .record({
    before: noReplyLines,
    command: fc.tuple(fc.constantFrom('NOP', 'GETINFO version', 'HAVEKEY', 'PKSIGN', 'PKDECRYPT', 'SETKEYDESC', 'IMPORT_KEY', 'READKEY'), printable, eol),
    steps: fc.array(fc.oneof(agentLines.map((lines): AgentStep => ({ kind: 'lines', lines })), inquire.map((i): AgentStep => ({ kind: 'inquire', inquire: i }))), { maxLength: 3 }),
    final: fc.constantFrom('OK\n', 'OK done\n', 'ERR 67108881 No secret key <GPG Agent>\n'),
  })
  .map(({ before, command: [verb, args, end], steps, final }) => {
    // A cancelled INQUIRE ends the command: libassuan returns the error and the agent answers ERR.
    const cut = steps.findIndex((s) => s.kind === 'inquire' && s.inquire.cancel);
    return {
      before,
      command: latin1(`${verb}${args ? ` ${args}` : ''}${end}`),
      steps: cut === -1 ? steps : steps.slice(0, cut + 1),
      final: latin1(cut === -1 ? final : 'ERR 67109141 IPC call has been cancelled <GPG Agent>\n'),
    };
  });

interface Session {
  exchanges: Exchange[];
  /** Seeds the random chunking of each side's writes. */
  seed: number;
}
const session: fc.Arbitrary<Session> = fc.record({ exchanges: fc.array(exchange, { minLength: 1, maxLength: 4 }), seed: fc.integer() });

function clientStream(s: Session): Buffer {
  const parts: Buffer[] = [];
  for (const x of s.exchanges) {
    parts.push(...x.before, x.command);
    for (const step of x.steps) if (step.kind === 'inquire') parts.push(...step.inquire.answer, latin1(step.inquire.cancel ? 'CAN\n' : 'END\n'));
  }
  return Buffer.concat(parts);
}

/** Writes `bytes` in random pieces, letting the event loop turn between them so that reads see the splits. */
async function writeInPieces(socket: net.Socket, bytes: Buffer, next: () => number): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    const size = 1 + Math.floor(next() ** 3 * Math.min(bytes.length - at, 4096));
    socket.write(bytes.subarray(at, at + size));
    at += size;
    if (next() < 0.3) await new Promise((r) => setImmediate(r));
  }
}

// ---- the scripted upstream -------------------------------------------------------------------------------

interface UpstreamResult {
  received: Buffer;
  sent: Buffer;
}

/** An upstream that plays the next queued session script on each connection. */
async function startScriptUpstream(dir: string) {
  const socketPath = path.join(dir, 'S.script');
  const queue: Array<{ script: Session; done: (r: UpstreamResult) => void; fail: (e: Error) => void }> = [];
  // Half-open, as gpg-agent: the client's EOF arrives behind its last command, whose answer must still go out.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const job = queue.shift();
    if (!job) return socket.destroy();
    void play(socket, job.script).then(job.done, job.fail);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    expect(script: Session): Promise<UpstreamResult> {
      return new Promise((done, fail) => queue.push({ script, done, fail }));
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function play(socket: net.Socket, script: Session): Promise<UpstreamResult> {
  const framer = new LineFramer(1 << 20);
  const received: Buffer[] = [];
  const sent: Buffer[] = [];
  const next = seededRandom(script.seed ^ 0x5bd1e995);
  let wake: (() => void) | undefined;
  let ended = false;
  socket.on('data', (chunk: Buffer) => {
    framer.push(chunk);
    wake?.();
  });
  socket.on('end', () => {
    ended = true;
    wake?.();
  });
  socket.on('error', () => {});
  const readLine = async (): Promise<Buffer | undefined> => {
    for (;;) {
      const item = framer.next();
      if (item?.kind === 'line') {
        const line = Buffer.from(item.bytes);
        received.push(line);
        return line;
      }
      if (ended) return undefined;
      await new Promise<void>((r) => (wake = r));
    }
  };
  const send = async (bytes: Buffer) => {
    sent.push(bytes);
    await writeInPieces(socket, bytes, next);
  };

  await send(latin1('OK Pleased to meet you, scripted\n'));
  for (const x of script.exchanges) {
    for (let i = 0; i < x.before.length + 1; i++) await readLine();
    for (const step of x.steps) {
      if (step.kind === 'lines') {
        await send(Buffer.concat(step.lines));
        continue;
      }
      await send(latin1(`INQUIRE ${step.inquire.keyword}\n`));
      for (;;) {
        const line = await readLine();
        if (line === undefined) throw new Error('client side ended inside an INQUIRE');
        if (/^(END|CAN)\r?\n$/.test(line.toString('latin1'))) break;
      }
    }
    await send(x.final);
  }
  // Whatever else arrives (nothing, in a correct relay) is recorded until the proxy closes our side.
  while ((await readLine()) !== undefined);
  socket.end();
  return { received: Buffer.concat(received), sent: Buffer.concat(sent) };
}

// ---- the property ----------------------------------------------------------------------------------------

let dir: string;
let upstream: Awaited<ReturnType<typeof startScriptUpstream>>;
let proxy: TestProxy;

beforeAll(async () => {
  dir = makeTempDir('prop.');
  upstream = await startScriptUpstream(dir);
  proxy = await startTestProxy({ upstream: upstream.socketPath });
});
afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function runSession(script: Session): Promise<{ toAgent: Buffer; fromAgent: Buffer; toClient: Buffer; fromClient: Buffer }> {
  const agentSide = upstream.expect(script);
  const client = net.connect({ path: proxy.socket });
  const received: Buffer[] = [];
  client.on('data', (chunk: Buffer) => received.push(chunk));
  const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
  await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
  const fromClient = clientStream(script);
  await writeInPieces(client, fromClient, seededRandom(script.seed));
  // Half-close: the proxy passes the EOF on once every line is relayed; the upstream then ends the session.
  client.end();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('session did not finish: a relay stalled')), CASE_TIMEOUT_MS);
  });
  try {
    const [agent] = await Promise.race([Promise.all([agentSide, closed]), timeout]);
    return { toAgent: agent.received, fromAgent: agent.sent, toClient: Buffer.concat(received), fromClient };
  } finally {
    clearTimeout(timer);
  }
}

describe('byte-exactness (property)', () => {
  it(`relays ${RUNS} random sessions byte for byte, both ways`, async () => {
    let cases = 0;
    let bytes = 0;
    await fc.assert(
      fc.asyncProperty(session, async (script) => {
        const r = await runSession(script);
        cases++;
        bytes += r.fromClient.length + r.fromAgent.length;
        expect(r.toAgent.equals(r.fromClient), 'the agent received exactly what the client sent').toBe(true);
        expect(r.toClient.equals(r.fromAgent), 'the client received exactly what the agent sent').toBe(true);
      }),
      { numRuns: RUNS },
    );
    await sessionsDrained(proxy.proxy);
    expect(cases).toBeGreaterThanOrEqual(RUNS);
    expect(proxy.logs.filter((r) => r.msg === 'session ended' && r.outcome !== 'closed')).toEqual([]);
    console.info(`byte-exactness: ${cases} sessions, ${(bytes / 1048576).toFixed(1)} MiB relayed, all exact`);
  }, 600_000);
});
