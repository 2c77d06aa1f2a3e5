/**
 * `npm run bench`: round-trip time of `GETINFO version` on one connection, directly to a throw-away gpg-agent
 * and through the proxy (run as its own process, as users run it), interleaved in rounds so machine drift hits
 * both alike. Prints medians, p99 and the ratio measured in this run.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { LineFramer } from '../src/protocol/framer.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const PER_ROUND = Number(process.env.BENCH_PER_ROUND ?? 200);
const root = path.resolve(import.meta.dirname, '..');

class Connection {
  private readonly framer = new LineFramer();
  private waiting: ((line: string) => void) | undefined;
  private readonly queue: string[] = [];
  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.framer.push(chunk);
      for (let item = this.framer.next(); item; item = this.framer.next()) {
        if (item.kind !== 'line') continue;
        const line = item.bytes.toString('latin1');
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = undefined;
          w(line);
        } else this.queue.push(line);
      }
    });
  }
  static async open(socketPath: string): Promise<Connection> {
    const socket = net.connect({ path: socketPath });
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const conn = new Connection(socket);
    const greeting = await conn.line();
    if (!greeting.startsWith('OK')) throw new Error(`no greeting: ${greeting}`);
    return conn;
  }
  line(): Promise<string> {
    const next = this.queue.shift();
    if (next !== undefined) return Promise.resolve(next);
    return new Promise((resolve) => (this.waiting = resolve));
  }
  /** Microseconds for one GETINFO version round trip. */
  async roundTrip(): Promise<number> {
    const start = process.hrtime.bigint();
    this.socket.write('GETINFO version\n');
    if (!(await this.line()).startsWith('D ')) throw new Error('unexpected answer');
    if (!(await this.line()).startsWith('OK')) throw new Error('unexpected answer');
    return Number(process.hrtime.bigint() - start) / 1000;
  }
  close(): void {
    this.socket.destroy();
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function main(): Promise<void> {
  const home = fs.mkdtempSync('/tmp/gpgb.');
  fs.chmodSync(home, 0o700);
  const listenDir = fs.mkdtempSync('/tmp/apxb.');
  fs.chmodSync(listenDir, 0o700);
  const env = { ...process.env, GNUPGHOME: home };
  execFileSync('gpgconf', ['--launch', 'gpg-agent'], { env });
  const agentSocket = execFileSync('gpgconf', ['--list-dirs', 'agent-socket'], { env }).toString().trim();
  const listen = path.join(listenDir, 'S.gpg-agent');
  const proxy = spawn(process.execPath, [path.join(root, 'dist/src/cli.js'), '--listen', listen, '--upstream', agentSocket, '--log-level', 'warn', '--log-format', 'json'], {
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let err = '';
      proxy.stderr!.on('data', (c: Buffer) => {
        err += c.toString();
        if (err.includes('listening on')) resolve();
      });
      proxy.once('exit', () => reject(new Error(`proxy exited: ${err}`)));
    });
    const direct = await Connection.open(agentSocket);
    const proxied = await Connection.open(listen);
    // Warm up both paths (JIT, caches) before measuring.
    for (let i = 0; i < 500; i++) {
      await direct.roundTrip();
      await proxied.roundTrip();
    }
    const samples = { direct: [] as number[], proxy: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (['direct', 'proxy'] as const) : (['proxy', 'direct'] as const);
      for (const which of order) {
        const conn = which === 'direct' ? direct : proxied;
        for (let i = 0; i < PER_ROUND; i++) samples[which].push(await conn.roundTrip());
      }
    }
    direct.close();
    proxied.close();
    const stats = Object.fromEntries(
      Object.entries(samples).map(([k, v]) => {
        const sorted = [...v].sort((a, b) => a - b);
        return [k, { median: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), n: sorted.length }];
      }),
    ) as Record<'direct' | 'proxy', { median: number; p99: number; n: number }>;
    const fmt = (us: number) => `${us.toFixed(1)} µs`;
    const lines = [
      `GETINFO version round trip, one connection, ${ROUNDS} interleaved rounds × ${PER_ROUND} (${os.cpus().length} CPUs, Node ${process.version}, ${new Date().toISOString()})`,
      '| path | median | p99 | samples |',
      '| --- | --- | --- | --- |',
      `| direct to gpg-agent | ${fmt(stats.direct.median)} | ${fmt(stats.direct.p99)} | ${stats.direct.n} |`,
      `| through assuan-proxy | ${fmt(stats.proxy.median)} | ${fmt(stats.proxy.p99)} | ${stats.proxy.n} |`,
      '',
      `proxy/direct median ratio: ${(stats.proxy.median / stats.direct.median).toFixed(2)}; added per round trip (median): ${fmt(stats.proxy.median - stats.direct.median)}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    proxy.kill('SIGTERM');
    execFileSync('gpgconf', ['--kill', 'gpg-agent'], { env });
    fs.rmSync(home, { recursive: true, force: true });
    fs.rmSync(listenDir, { recursive: true, force: true });
  }
}

await main();
