/**
 * Finding the gpg-agent to relay to. With no explicit path we ask gpgconf, exactly as gpg does, so the proxy
 * follows GNUPGHOME and the per-user socket directory; and, where asked to, we let gpgconf start the agent if it
 * is not running.
 */
import { execFile, spawn } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { ProxyStartError } from './listenSocket.js';

const run = promisify(execFile);

export async function resolveUpstream(explicitPath: string | undefined, env: NodeJS.ProcessEnv, options: { launch: boolean }): Promise<string> {
  if (explicitPath) return explicitPath;
  const socketPath = await agentSocketPath(env);
  if (options.launch) await launchAgent(env);
  return socketPath;
}

/** How long `gpgconf --launch gpg-agent` may take before we stop waiting for it. */
const LAUNCH_TIMEOUT_MS = 15_000;

/**
 * Starts gpg-agent in the GNUPGHOME of `env` if it is not running (gpgconf does nothing if it is). Bounded: GnuPG
 * 2.2.40's gpg-connect-agent, which gpgconf runs, was seen (strace) to spin forever when the agent it started was
 * slow to come up, writing its diagnostics into the agent's socket and each ERR back as a command. Past the bound
 * its whole process group is killed, and an agent that answers is all that counts.
 */
export async function launchAgent(env: NodeJS.ProcessEnv): Promise<void> {
  let failure: string | undefined;
  try {
    await runBounded('gpgconf', ['--launch', 'gpg-agent'], env, LAUNCH_TIMEOUT_MS);
    return;
  } catch (err) {
    failure = commandFailure(err);
  }
  const socketPath = await agentSocketPath(env);
  if (await greets(socketPath)) return;
  throw new ProxyStartError(`could not start gpg-agent with 'gpgconf --launch gpg-agent': ${failure}`);
}

/** Runs a command in a process group of its own; past `timeoutMs` the whole group is killed and this rejects. */
function runBounded(command: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2_000)));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone already
      }
      reject(Object.assign(new Error(`${command} did not finish within ${timeoutMs / 1000} s`), { stderr: '' }));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(Object.assign(new Error(`${command} exited with code ${code}`), { stderr }));
    });
  });
}

/** Whether an Assuan server answers at `socketPath` with an OK greeting. */
export async function greets(socketPath: string): Promise<boolean> {
  return (await greetingAt(socketPath))?.startsWith('OK') ?? false;
}

/** The first line a server at `socketPath` sends (within 2 s; '' if none), or undefined if nobody listens there. */
export function greetingAt(socketPath: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const probe = net.connect({ path: socketPath });
    let text = '';
    const done = (value: string | undefined) => {
      probe.destroy();
      resolve(value);
    };
    probe.setTimeout(2_000, () => done(text));
    probe.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('\n')) done(text);
    });
    probe.on('end', () => done(text));
    probe.once('error', () => done(undefined));
  });
}

/** One of gpg-agent's sockets, as gpgconf names it for the GNUPGHOME of `env`. */
export async function agentSocketPath(env: NodeJS.ProcessEnv = process.env, which: 'agent-socket' | 'agent-extra-socket' = 'agent-socket'): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await run('gpgconf', ['--list-dirs', which], { env, timeout: 10_000 }));
  } catch (err) {
    throw new ProxyStartError(`cannot find gpg-agent's socket with 'gpgconf --list-dirs ${which}': ${commandFailure(err)}; install GnuPG or pass --upstream PATH`);
  }
  const line = stdout.split('\n')[0]?.trim();
  if (!line) throw new ProxyStartError(`'gpgconf --list-dirs ${which}' printed nothing; pass --upstream PATH`);
  return unescapeGpgconf(line);
}

/** gpgconf percent-escapes some characters of the paths it prints (e.g. `:` as %3a). */
function unescapeGpgconf(text: string): string {
  return text.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

function commandFailure(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { stderr?: string };
  if (e.code === 'ENOENT') return 'gpgconf is not installed';
  return (e.stderr?.trim() || e.message).split('\n')[0] ?? String(err);
}
