/**
 * A model of gpg-agent's reader, for property tests: a Unix socket server that reads client lines exactly as
 * libassuan does (a command loop, inquiries that take data and one that takes none, `#`/empty lines skipped,
 * EOF handling) and answers from a fixed table, so that the same bytes always get the same answer. It records
 * every line its command loop ran as a command: what a policy must have allowed.
 *
 * Commands: NOP, OPTION → OK; GETINFO → D + OK; KEYINFO → S + OK; PKDECRYPT / PKSIGN → a data INQUIRE (CIPHERTEXT /
 * PASSPHRASE) answered `D <bytes>` + OK after END, ERR 277 after CAN, ERR 274 after any other line; with the
 * argument `--fail` they end at once with ERR, before any INQUIRE (an early end); GET_PASSPHRASE → INQUIRE
 * PINENTRY_LAUNCHED (no data: any line but #/empty ends it, and the command carries on) then OK; stray D / END →
 * ERR 69; CANCEL → ERR 69; anything else → ERR 275.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { LineFramer } from '../../src/protocol/framer.js';
import { makeTempDir } from './gnupg.js';

export interface ModelAgent {
  socket: string;
  /** Lines (without LF) the command loop ran, over all connections, in order. */
  executed: string[];
  close(): Promise<void>;
}

type Reader =
  | { mode: 'commands' }
  | { mode: 'inquiry'; takesData: boolean; verb: string; data: number };

const LF = '\n';

export async function startModelAgent(): Promise<ModelAgent> {
  const dir = makeTempDir('magt.');
  const socket = path.join(dir, 'S.model');
  const executed: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    serve(sock, executed);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    executed,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function serve(sock: net.Socket, executed: string[]): void {
  const framer = new LineFramer(1 << 16);
  let reader: Reader = { mode: 'commands' };
  const send = (...lines: string[]) => {
    if (!sock.writableEnded && !sock.destroyed) sock.write(Buffer.from(lines.map((l) => l + LF).join(''), 'latin1'));
  };
  const finishInquiry = (outcome: 'end' | 'cancel' | 'unexpected' | 'eof' | 'incomplete') => {
    if (reader.mode !== 'inquiry') return;
    const { takesData, data } = reader;
    reader = { mode: 'commands' };
    if (!takesData) return send('OK'); // the no-data inquiry's error is ignored: the command carries on
    if (outcome === 'end') return send(`D ${data}`, 'OK');
    if (outcome === 'cancel') return send('ERR 67109141 IPC call has been cancelled <GPG Agent>');
    if (outcome === 'unexpected') return send('ERR 67109138 Unexpected IPC command <GPG Agent>');
    if (outcome === 'incomplete') return send('ERR 67109126 Incomplete line passed to IPC <GPG Agent>');
    return send('ERR 67125247 End of file <GPG Agent>');
  };
  const runCommand = (line: string) => {
    executed.push(line);
    const [word = '', ...rest] = line.split(/[ \t]/);
    const verb = word.toUpperCase();
    const failEarly = rest.includes('--fail');
    switch (verb) {
      case 'NOP':
      case 'OPTION':
        return send('OK');
      case 'GETINFO':
        return send('D model', 'OK');
      case 'KEYINFO':
        return send('S KEYINFO x', 'OK');
      case 'PKDECRYPT':
      case 'PKSIGN':
        if (failEarly) return send('ERR 67108881 No secret key <GPG Agent>');
        reader = { mode: 'inquiry', takesData: true, verb, data: 0 };
        return send(verb === 'PKDECRYPT' ? 'INQUIRE CIPHERTEXT' : 'INQUIRE PASSPHRASE');
      case 'GET_PASSPHRASE':
        reader = { mode: 'inquiry', takesData: false, verb, data: 0 };
        return send('INQUIRE PINENTRY_LAUNCHED 1 curses 1.2 -');
      case 'D':
      case 'END':
      case 'CANCEL':
        return send('ERR 67108933 Not implemented <GPG Agent>');
      default:
        return send('ERR 67109139 Unknown IPC command <GPG Agent>');
    }
  };
  const takeLine = (line: string) => {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '' || line.startsWith('#')) return;
    if (reader.mode === 'commands') return runCommand(line);
    const upper = line.slice(0, 3).toUpperCase();
    if (upper === 'END' && (line.length === 3 || line[3] === ' ')) return finishInquiry('end');
    if (upper === 'CAN') return finishInquiry('cancel');
    if ((line[0] === 'D' || line[0] === 'd') && line[1] === ' ' && reader.takesData) {
      reader.data += line.length - 2;
      return;
    }
    finishInquiry('unexpected');
  };
  sock.on('data', (chunk: Buffer) => {
    framer.push(chunk);
    for (let item = framer.next(); item; item = framer.next()) {
      if (item.kind === 'line') takeLine(item.bytes.toString('latin1').slice(0, -1));
    }
  });
  sock.on('end', () => {
    // libassuan's read fails: inside an inquiry the command ends with an ERR; then the connection is closed.
    if (reader.mode === 'inquiry') finishInquiry(framer.midLine ? 'incomplete' : 'eof');
    sock.end();
  });
  send('OK Pleased to meet you');
}
