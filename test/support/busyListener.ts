/**
 * A Unix socket listener whose listen queue is full: a Python process listening with backlog 0 that accepts
 * nothing until told to (Node always accepts at once, so it cannot stand in). Connecting to it fails with
 * EAGAIN, as connecting to a gpg-agent flooded with clients does. When told to accept, it greets each
 * connection like an Assuan server and closes it at EOF.
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { makeTempDir } from './gnupg.js';

const PROGRAM = String.raw`
import socket, sys, threading
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(0)
print("listening", flush=True)
def serve(c):
    c.sendall(b"OK busy listener\n")
    while c.recv(4096):
        pass
    c.close()
for line in sys.stdin:
    if line.strip() == "accept":
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
`;

export interface BusyListener {
  socket: string;
  /** Fills the one-place queue so that the next connect fails with EAGAIN. */
  fillQueue(): Promise<net.Socket>;
  /** Starts accepting (and greeting) every queued and later connection. */
  startAccepting(): void;
  close(): void;
}

export async function startBusyListener(): Promise<BusyListener> {
  const dir = makeTempDir('busy.');
  const socket = path.join(dir, 'S.busy');
  const child = spawn('python3', ['-c', PROGRAM, socket], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', () => resolve());
  });
  const fillers: net.Socket[] = [];
  return {
    socket,
    async fillQueue() {
      const filler = net.connect({ path: socket });
      filler.on('error', () => {});
      await new Promise((r) => filler.once('connect', r));
      fillers.push(filler);
      return filler;
    },
    startAccepting: () => child.stdin.write('accept\n'),
    close() {
      for (const f of fillers) f.destroy();
      child.kill();
    },
  };
}
