/**
 * `npm run bench`: round-trip time of `GETINFO version` on one connection, directly to a throw-away gpg-agent,
 * through socat (the raw-relay baseline; Debian's package is installed when missing) and through the proxy (run
 * as its own process, as users run it), interleaved in rounds so machine drift hits all alike. Prints medians,
 * p99 and the ratios measured in this run.
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

/** socat on PATH, installed from Debian's packages when missing (and we may); undefined if unavailable. */
function socatBinary(): string | undefined {
  const find = () => {
    try {
      return execFileSync('sh', ['-c', 'command -v socat']).toString().trim() || undefined;
    } catch {
      return undefined;
    }
  };
  const found = find();
  if (found || process.getuid?.() !== 0) return found;
  process.stderr.write('bench: installing socat (the raw-relay baseline)\n');
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', 'socat'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch {
    return undefined;
  }
  return find();
}

async function waitForSocket(socketPath: string): Promise<void> {
  while (!fs.existsSync(socketPath)) await new Promise((r) => setTimeout(r, 10));
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
  let socat: ReturnType<typeof spawn> | undefined;
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
    const paths: Array<{ name: string; label: string; conn: Connection; samples: number[] }> = [
      { name: 'direct', label: 'direct to gpg-agent', conn: await Connection.open(agentSocket), samples: [] },
      { name: 'proxy', label: 'through assuan-proxy', conn: await Connection.open(listen), samples: [] },
    ];
    const socatPath = socatBinary();
    if (socatPath) {
      const socatSocket = path.join(listenDir, 'S.socat');
      socat = spawn(socatPath, [`UNIX-LISTEN:${socatSocket},fork`, `UNIX-CONNECT:${agentSocket}`], { stdio: 'ignore' });
      await waitForSocket(socatSocket);
      paths.push({ name: 'socat', label: 'through socat (raw relay)', conn: await Connection.open(socatSocket), samples: [] });
    } else {
      process.stderr.write('bench: socat unavailable; the raw-relay baseline is skipped\n');
    }
    // Warm up every path (JIT, caches) before measuring.
    for (let i = 0; i < 500; i++) for (const p of paths) await p.conn.roundTrip();
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round, so no path always runs first.
      for (let k = 0; k < paths.length; k++) {
        const p = paths[(round + k) % paths.length]!;
        for (let i = 0; i < PER_ROUND; i++) p.samples.push(await p.conn.roundTrip());
      }
    }
    for (const p of paths) p.conn.close();
    const stats = new Map(
      paths.map((p) => {
        const sorted = [...p.samples].sort((a, b) => a - b);
        return [p.name, { label: p.label, median: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), n: sorted.length }];
      }),
    );
    const fmt = (us: number) => `${us.toFixed(1)} µs`;
    const direct = stats.get('direct')!;
    const proxied = stats.get('proxy')!;
    const socatStats = stats.get('socat');
    const lines = [
      `GETINFO version round trip, one connection, ${ROUNDS} interleaved rounds × ${PER_ROUND} (${os.cpus().length} CPUs, Node ${process.version}, ${new Date().toISOString()})`,
      '| path | median | p99 | samples |',
      '| --- | --- | --- | --- |',
      ...[...stats.values()].map((s) => `| ${s.label} | ${fmt(s.median)} | ${fmt(s.p99)} | ${s.n} |`),
      '',
      `proxy/direct median ratio: ${(proxied.median / direct.median).toFixed(2)}; added per round trip (median): ${fmt(proxied.median - direct.median)}`,
    ];
    if (socatStats) {
      const proxyAdded = proxied.median - direct.median;
      const socatAdded = socatStats.median - direct.median;
      lines.push(`socat added (median): ${fmt(socatAdded)}; proxy added / socat added: ${(proxyAdded / socatAdded).toFixed(2)} (target ≤ 1.0)`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    socat?.kill('SIGTERM');
    proxy.kill('SIGTERM');
    execFileSync('gpgconf', ['--kill', 'gpg-agent'], { env });
    fs.rmSync(home, { recursive: true, force: true });
    fs.rmSync(listenDir, { recursive: true, force: true });
  }
}

await main();
