/** Runs the `assuan-proxy` CLI from source as a child process, the way a user runs it. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const CLI = path.resolve('src/cli.ts');

export interface RunningCli {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  exited: Promise<number | null>;
}

/**
 * Runs the CLI from source (tsx) with the given args and environment. `stderrFd` replaces the stderr pipe with
 * a descriptor of the test's (then `stderr()` stays empty); `command` runs that executable instead (an installed
 * `assuan-proxy`, found on the PATH of `env`).
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv, options: { stderrFd?: number; command?: string } = {}): RunningCli {
  const [file, fileArgs] = options.command ? [options.command, args] : [process.execPath, ['--import', 'tsx', CLI, ...args]];
  const child = spawn(file, fileArgs, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', options.stderrFd ?? 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => stderr, stdout: () => stdout, exited };
}

/** Resolves with the first match of `pattern` in the CLI's stderr (or rejects with its output if it exits first). */
export function stderrMatch(run: RunningCli, pattern: RegExp): Promise<RegExpExecArray> {
  return outputMatch(run, 'stderr', pattern);
}

/** Resolves with the first match of `pattern` in the CLI's stdout (its log), or rejects if it exits first. */
export function stdoutMatch(run: RunningCli, pattern: RegExp): Promise<RegExpExecArray> {
  return outputMatch(run, 'stdout', pattern);
}

async function outputMatch(run: RunningCli, which: 'stdout' | 'stderr', pattern: RegExp): Promise<RegExpExecArray> {
  for (;;) {
    const match = pattern.exec(run[which]());
    if (match) return match;
    const exited = await Promise.race([run.exited.then(() => true), new Promise<boolean>((r) => run.child[which]!.once('data', () => r(false)))]);
    if (exited) throw new Error(`assuan-proxy exited: ${run.stderr()}`);
  }
}

/** Resolves with the listen path once the CLI has printed it. */
export async function listening(run: RunningCli): Promise<string> {
  return (await stderrMatch(run, /listening on (\S+)/))[1]!;
}

/** SIGTERM, and the exit code. */
export async function stopCli(run: RunningCli): Promise<number | null> {
  if (run.child.exitCode === null) run.child.kill('SIGTERM');
  return run.exited;
}

/**
 * The write end of a pipe whose reader is already closed (what `… | head -1` leaves once head has exited):
 * every write to it fails with EPIPE. A FIFO in `dir` is opened for reading (non-blocking, so no writer is
 * needed yet), then for writing, then its reader is closed. The caller closes the returned descriptor.
 */
export function brokenPipe(dir: string): number {
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const writer = fs.openSync(fifo, fs.constants.O_WRONLY);
  fs.closeSync(reader);
  return writer;
}
