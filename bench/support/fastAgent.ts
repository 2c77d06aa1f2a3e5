/**
 * A minimal, fast Assuan server standing in for gpg-agent, so that the proxy's own cost is not hidden behind the
 * agent's. Run as its own process: `node --import tsx bench/support/fastAgent.ts SOCKET`; prints `ready` when
 * listening.
 *
 * It speaks just enough of what gpg-agent speaks:
 * - the greeting `OK Pleased to meet you`;
 * - `GETINFO version` → `D 2.2.40`, `OK`;
 * - `GETINFO bench-stream N` → N D lines of exactly 1000 bytes (binary payload, escaped as gpg-agent escapes), `OK`;
 * - `PKDECRYPT` → `INQUIRE CIPHERTEXT`; after the client's D lines and `END`, `OK`;
 * - `BYE` → `OK closing connection` and a close; any other line → `OK`.
 */
import fs from 'node:fs';
import net from 'node:net';
import { LineFramer } from '../../src/protocol/framer.js';

const socketPath = process.argv[2];
if (!socketPath) throw new Error('usage: fastAgent.ts SOCKET');

const GREETING = Buffer.from('OK Pleased to meet you\n');
const VERSION_ANSWER = Buffer.from('D 2.2.40\nOK\n');
const OK = Buffer.from('OK\n');
const BYE = Buffer.from('OK closing connection\n');
const INQUIRE = Buffer.from('INQUIRE CIPHERTEXT\n');
const GETINFO_VERSION = Buffer.from('GETINFO version');
const STREAM_PREFIX = Buffer.from('GETINFO bench-stream ');
const PKDECRYPT = Buffer.from('PKDECRYPT');
const BYE_VERB = Buffer.from('BYE');
const END = Buffer.from('END');
export const STREAM_LINE_BYTES = 1000;

/** 64 D lines of exactly 1000 bytes each: every byte value but LF, CR and '%' raw, those three escaped. */
const STREAM_BLOCK = (() => {
  const lines: Buffer[] = [];
  let value = 0;
  for (let i = 0; i < 64; i++) {
    const line = Buffer.alloc(STREAM_LINE_BYTES);
    line.write('D ', 0, 'latin1');
    let at = 2;
    while (at < STREAM_LINE_BYTES - 1) {
      const byte = value++ & 0xff;
      const escaped = byte === 0x0a || byte === 0x0d || byte === 0x25;
      if (escaped) {
        if (at + 3 > STREAM_LINE_BYTES - 1) break;
        line.write(`%${byte.toString(16).toUpperCase().padStart(2, '0')}`, at, 'latin1');
        at += 3;
      } else line[at++] = byte;
    }
    line.fill(0x41, at, STREAM_LINE_BYTES - 1); // pad to the exact size with 'A'
    line[STREAM_LINE_BYTES - 1] = 0x0a;
    lines.push(line);
  }
  return Buffer.concat(lines);
})();
const BLOCK_LINES = STREAM_BLOCK.length / STREAM_LINE_BYTES;

function startsWith(line: Buffer, prefix: Buffer): boolean {
  return line.length >= prefix.length && line.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

/** Content of a line without its LF (and a CR before it). */
function content(line: Buffer): Buffer {
  let end = line.length - 1;
  if (end > 0 && line[end - 1] === 0x0d) end--;
  return line.subarray(0, end);
}

function serve(socket: net.Socket): void {
  const framer = new LineFramer();
  let inInquire = false;
  let streaming = false;
  socket.write(GREETING);
  const stream = (count: number) => {
    streaming = true;
    let left = count;
    const pump = () => {
      while (left > 0) {
        const lines = Math.min(left, BLOCK_LINES);
        left -= lines;
        const more = socket.write(lines === BLOCK_LINES ? STREAM_BLOCK : STREAM_BLOCK.subarray(0, lines * STREAM_LINE_BYTES));
        if (!more) return void socket.once('drain', pump);
      }
      socket.write(OK);
      streaming = false;
      handle();
    };
    pump();
  };
  const handle = () => {
    // Lines behind a streamed answer wait in the framer until it is complete.
    while (!streaming) {
      const item = framer.next();
      if (!item) break;
      if (item.kind !== 'line') {
        socket.write('ERR 67109888 Line too long\n');
        continue;
      }
      const line = content(item.bytes);
      if (inInquire) {
        if (line.equals(END)) {
          inInquire = false;
          socket.write(OK);
        }
        continue; // D lines of the inquire answer
      }
      if (line.equals(GETINFO_VERSION)) socket.write(VERSION_ANSWER);
      else if (startsWith(line, STREAM_PREFIX)) stream(Number(line.subarray(STREAM_PREFIX.length).toString('latin1')));
      else if (line.equals(PKDECRYPT)) {
        inInquire = true;
        socket.write(INQUIRE);
      } else if (line.equals(BYE_VERB)) {
        socket.end(BYE);
        return;
      } else socket.write(OK);
    }
  };
  socket.on('data', (chunk: Buffer) => {
    framer.push(chunk);
    if (!streaming) handle();
  });
  socket.on('error', () => socket.destroy());
}

fs.rmSync(socketPath, { force: true });
const server = net.createServer(serve);
server.listen({ path: socketPath, backlog: 4096 }, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
