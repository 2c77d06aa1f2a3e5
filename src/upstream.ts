/**
 * Finding the gpg-agent to relay to. With no explicit path we ask gpgconf, exactly as gpg does, so the proxy
 * follows GNUPGHOME and the per-user socket directory; and, where asked to, we let gpgconf start the agent if it
 * is not running.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ProxyStartError } from './listenSocket.js';

const run = promisify(execFile);

export async function resolveUpstream(explicitPath: string | undefined, env: NodeJS.ProcessEnv, options: { launch: boolean }): Promise<string> {
  if (explicitPath) return explicitPath;
  const socketPath = await agentSocketPath(env);
  if (options.launch) await launchAgent(env);
  return socketPath;
}

/** Starts gpg-agent in the GNUPGHOME of `env` if it is not running (gpgconf does nothing if it is). */
export async function launchAgent(env: NodeJS.ProcessEnv): Promise<void> {
  try {
    await run('gpgconf', ['--launch', 'gpg-agent'], { env, timeout: 10_000 });
  } catch (err) {
    throw new ProxyStartError(`could not start gpg-agent with 'gpgconf --launch gpg-agent': ${commandFailure(err)}`);
  }
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
