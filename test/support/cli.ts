/** Runs the `assuan-proxy` CLI from source as a child process, the way a user runs it. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const CLI = path.resolve('src/cli.ts');

export interface RunningCli {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  exited: Promise<number | null>;
}

/** Runs the CLI from source (tsx) with the given args and environment. */
export function runCli(args: string[], env: NodeJS.ProcessEnv): RunningCli {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => stderr, stdout: () => stdout, exited };
}

/** Resolves with the first match of `pattern` in the CLI's stderr (or rejects with its output if it exits first). */
export async function stderrMatch(run: RunningCli, pattern: RegExp): Promise<RegExpExecArray> {
  for (;;) {
    const match = pattern.exec(run.stderr());
    if (match) return match;
    const exited = await Promise.race([run.exited.then(() => true), new Promise<boolean>((r) => run.child.stderr!.once('data', () => r(false)))]);
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
