/**
 * Throw-away GnuPG homes for tests: a real gpg-agent in a fresh GNUPGHOME, keys generated on the spot, and
 * "client" homes whose agent socket is the proxy's. Everything is removed (and the agent killed) on cleanup.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { launchAgent } from '../../src/upstream/daemons.js';

const execFileAsync = promisify(execFile);
const PINENTRY_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'pinentry.py');
const SCDAEMON_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'scdaemon.py');

export interface RunResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs a GnuPG tool with GNUPGHOME set; never throws on a non-zero exit. */
export function runTool(tool: string, home: string, args: string[], input?: Buffer | string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, args, { env: { ...process.env, GNUPGHOME: home, LC_ALL: 'C' }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

/** Runs and expects success, with the tool's stderr in the error. */
export async function mustRun(tool: string, home: string, args: string[], input?: Buffer | string): Promise<Buffer> {
  const result = await runTool(tool, home, args, input);
  if (result.code !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

export async function gpgconfDir(home: string, what: string): Promise<string> {
  const { stdout } = await execFileAsync('gpgconf', ['--list-dirs', what], { env: { ...process.env, GNUPGHOME: home } });
  return stdout.trim().replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

export function makeTempDir(prefix: string): string {
  // Short paths: a Unix socket path holds at most 107 bytes, and the agent's sockets live in its home here.
  const dir = fs.mkdtempSync(path.join('/tmp', prefix));
  fs.chmodSync(dir, 0o700);
  return dir;
}

/** Temp dirs made for one test file, removed together in its afterAll. */
export function tempDirs(): { make(prefix: string): string; adopt(dir: string): void; removeAll(): void } {
  const dirs: string[] = [];
  return {
    adopt(dir) {
      dirs.push(dir);
    },
    make(prefix) {
      const dir = makeTempDir(prefix);
      dirs.push(dir);
      return dir;
    },
    removeAll() {
      for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface AgentHome {
  home: string;
  socket: string;
  /** Starts the agent (again). */
  launch(): Promise<void>;
  pid(): Promise<number>;
  cleanup(): Promise<void>;
}

/** A pinentry the agent runs (see test/support/pinentry.py): what it was sent, and how it answers GETPIN. */
export interface ScriptedPinentry {
  /** Every line the agent sent it, percent escapes decoded, over every run so far. */
  lines(): string[];
  /** What GETPIN answers from now on: this passphrase, or `cancel` (as a person pressing Cancel). */
  answer(passphrase: string | { cancel: true }): void;
  /** How CONFIRM is answered from now on: OK, the Cancel button, the No button, or never (no one is there). */
  confirm(verdict: 'ok' | 'cancel' | 'notok' | 'never'): void;
  /** Pids of this pinentry's processes running now. */
  running(): number[];
  /** What it was shown at each CONFIRM since line `from` of lines(): the SETDESC before it, line breaks kept. */
  promptsSince(from: number): string[];
}

/**
 * A home with a running gpg-agent whose pinentry is test/support/pinentry.py; with `scdaemon`, its card daemon is
 * test/support/scdaemon.py, so that `SCD LEARN` gets an INQUIRE passed through from it.
 */
export async function createAgentHome(options: { pinentryPassphrase?: string; scdaemon?: boolean; agentConf?: string } = {}): Promise<AgentHome & { pinentry: ScriptedPinentry }> {
  const home = makeTempDir('gpgh.');
  const pinentryDir = path.join(home, 'pinentry');
  fs.mkdirSync(pinentryDir, { mode: 0o700 });
  const answerFile = path.join(pinentryDir, 'answer');
  const logFile = path.join(pinentryDir, 'log');
  fs.writeFileSync(answerFile, options.pinentryPassphrase ?? 'cancel');
  fs.writeFileSync(path.join(pinentryDir, 'pinentry.py'), fs.readFileSync(PINENTRY_SCRIPT), { mode: 0o700 });
  fs.writeFileSync(
    path.join(home, 'gpg-agent.conf'),
    `allow-loopback-pinentry\nallow-preset-passphrase\npinentry-program ${path.join(pinentryDir, 'pinentry.py')}\n` +
      (options.scdaemon ? `scdaemon-program ${SCDAEMON_SCRIPT}\n` : '') +
      (options.agentConf ?? ''),
  );
  const pinentry: ScriptedPinentry = {
    lines: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l !== '') : []),
    answer: (passphrase) => fs.writeFileSync(answerFile, typeof passphrase === 'string' ? `=${passphrase}` : 'cancel'),
    confirm: (verdict) => fs.writeFileSync(path.join(pinentryDir, 'confirm'), verdict),
    promptsSince(from) {
      // The log holds lines decoded: a description's %0A breaks it over several lines, up to the next command.
      const prompts: string[] = [];
      let description: string[] | undefined;
      for (const line of pinentry.lines().slice(from)) {
        if (line.startsWith('SETDESC ')) description = [line.slice('SETDESC '.length)];
        else if (line === 'CONFIRM') prompts.push((description ?? []).join('\n'));
        else if (/^[A-Z_]+( |$)/.test(line)) description = description && [...description];
        else description?.push(line);
      }
      return prompts;
    },
    running: () =>
      fs
        .readdirSync('/proc')
        .filter((entry) => /^\d+$/.test(entry))
        .filter((pid) => {
          try {
            return fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(path.join(pinentryDir, 'pinentry.py'));
          } catch {
            return false;
          }
        })
        .map(Number),
  };
  if (options.pinentryPassphrase !== undefined) pinentry.answer(options.pinentryPassphrase);
  const env = { ...process.env, GNUPGHOME: home };
  // As the proxy starts it (src/upstream.ts): `gpgconf --launch`, bounded, its process group killed past the bound.
  const launch = () => launchAgent(env);
  await launch();
  const socket = await gpgconfDir(home, 'agent-socket');
  return {
    home,
    socket,
    pinentry,
    launch,
    async pid() {
      const out = await mustRun('gpg-connect-agent', home, ['GETINFO pid', '/bye']);
      return Number(/^D (\d+)/m.exec(out.toString())?.[1]);
    },
    async cleanup() {
      await execFileAsync('gpgconf', ['--kill', 'gpg-agent'], { env }).catch(() => {});
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Every keygrip of a key in `home`: its primary's, then its subkeys'. */
export async function keygripsOf(home: string, fingerprint: string): Promise<string[]> {
  const listing = (await mustRun('gpg', home, ['--batch', '--with-colons', '--with-keygrip', '-k', fingerprint])).toString();
  return listing
    .split('\n')
    .filter((line) => line.startsWith('grp:'))
    .map((line) => line.split(':')[9]!);
}

export interface KeyInfo {
  fingerprint: string;
  keygrip: string;
}

/** Generates a key with quick-gen-key; an empty passphrase makes an unprotected key. */
export async function generateKey(home: string, userId: string, algo: string, passphrase: string): Promise<KeyInfo> {
  await mustRun('gpg', home, ['--batch', '--pinentry-mode', 'loopback', '--passphrase', passphrase, '--quick-gen-key', userId, algo, 'default', 'never']);
  const listing = (await mustRun('gpg', home, ['--batch', '--with-colons', '--with-keygrip', '-K', userId])).toString();
  const fingerprint = /^fpr:+([0-9A-F]+):/m.exec(listing)?.[1];
  const keygrip = /^grp:+([0-9A-F]+):/m.exec(listing)?.[1];
  if (!fingerprint || !keygrip) throw new Error(`no key listed for ${userId}`);
  return { fingerprint, keygrip };
}

/**
 * A home for gpg itself whose agent socket path is `socketPath`'s location: holds a copy of the public keyring
 * and trust db of `from`, and `no-autostart`, so that gpg talks only to whatever listens there.
 */
export async function createClientHome(from: string): Promise<{ home: string; socket: string; cleanup(): void }> {
  const home = makeTempDir('gpgc.');
  for (const file of ['pubring.kbx', 'trustdb.gpg']) {
    if (fs.existsSync(path.join(from, file))) fs.copyFileSync(path.join(from, file), path.join(home, file));
  }
  fs.writeFileSync(path.join(home, 'gpg.conf'), 'no-autostart\n');
  const socket = await gpgconfDir(home, 'agent-socket');
  fs.mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
  return { home, socket, cleanup: () => fs.rmSync(home, { recursive: true, force: true }) };
}
