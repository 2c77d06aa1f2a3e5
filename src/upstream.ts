/**
 * Finding the gpg-agent to relay to. With no explicit path we ask gpgconf, exactly as gpg does, so the proxy
 * follows GNUPGHOME and the per-user socket directory; and, where asked to, we start the agent if it is not
 * running.
 */
import { execFile } from 'node:child_process';
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

/**
 * Starts gpg-agent in the GNUPGHOME of `env` if nothing answers at its socket. gpg-agent itself (`--daemon`
 * returns once its sockets listen), not `gpgconf --launch`: that goes through gpg-connect-agent, which GnuPG 2.2.40
 * was seen to leave running forever, busy, when the agent it started was slow to come up (its diagnostics went into
 * the agent's socket, and it sent each ERR it got back as a command).
 */
export async function launchAgent(env: NodeJS.ProcessEnv): Promise<void> {
  const socketPath = await agentSocketPath(env);
  if (await greets(socketPath)) return;
  try {
    await run('gpg-agent', ['--daemon'], { env, timeout: 10_000 });
  } catch (err) {
    // Another start may have won the race: what matters is an agent that answers.
    if (await greets(socketPath)) return;
    throw new ProxyStartError(`could not start gpg-agent with 'gpg-agent --daemon': ${commandFailure(err, 'gpg-agent')}`);
  }
}

/** Whether an Assuan server answers at `socketPath` with an OK greeting (within 5 s). */
export function greets(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect({ path: socketPath });
    let text = '';
    const done = (answer: boolean) => {
      probe.destroy();
      resolve(answer);
    };
    probe.setTimeout(5_000, () => done(false));
    probe.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (text.includes('\n')) done(text.startsWith('OK'));
    });
    probe.on('end', () => done(false));
    probe.once('error', () => done(false));
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

function commandFailure(err: unknown, command = 'gpgconf'): string {
  const e = err as NodeJS.ErrnoException & { stderr?: string };
  if (e.code === 'ENOENT') return `${command} is not installed`;
  return (e.stderr?.trim() || e.message).split('\n')[0] ?? String(err);
}
