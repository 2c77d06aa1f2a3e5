/**
 * A throw-away OpenSSH server on 127.0.0.1 for the bridge's ssh test: its own host key, one authorized key made
 * here, no passwords, no PAM. Needs Debian's openssh-server and root (sshd's privilege separation); where either
 * is missing, `startSshd` says why and the test is skipped with that reason.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { makeTempDir } from './gnupg.js';

const SSHD = '/usr/sbin/sshd';

export interface Sshd {
  /** The words that start `ssh -T` to this server as this user; a remote command may follow. */
  ssh: string[];
  stop(): void;
}

/** Why no sshd can run here, or undefined if one can. */
export function sshdUnavailable(): string | undefined {
  if (!fs.existsSync(SSHD)) return `no ${SSHD} (Debian's openssh-server is not installed)`;
  if (process.getuid?.() !== 0) return 'sshd needs root here (privilege separation); the tests do not run as root';
  return undefined;
}

export async function startSshd(): Promise<Sshd> {
  const dir = makeTempDir('sshd.');
  const port = await freePort();
  const user = os.userInfo().username;
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'id')]);
  fs.copyFileSync(path.join(dir, 'id.pub'), path.join(dir, 'authorized_keys'));
  fs.writeFileSync(
    path.join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_key')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      `AllowUsers ${user}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      // What users meet: a login banner before the command runs (printed on stderr by ssh) and a motd-like line.
      'PrintMotd no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const child = spawn(SSHD, ['-D', '-e', '-f', path.join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errors = '';
  child.stderr.on('data', (c: Buffer) => (errors += c.toString()));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sshd exited: ${errors}`);
    if (await accepts(port)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    ssh: [
      'ssh', '-T', '-p', String(port), '-i', path.join(dir, 'id'),
      '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
      `${user}@127.0.0.1`,
    ],
    stop() {
      child.kill('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect({ host: '127.0.0.1', port });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
