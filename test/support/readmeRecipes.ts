/**
 * Running the README's shell recipes as written (test/e2e/readmeRecipes.test.ts): a recipe is the fenced block
 * right after a `<!-- recipe: NAME -->` line. Blocks run in bash with a minimal environment; what must differ
 * from a user's machine is put in that environment (PATH, GNUPGHOME, TMPDIR, …), never into the block's text.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const MARKER = /^<!-- recipe: ([a-z0-9-]+) -->$/;

/** The names of every marked recipe, in order. */
export function recipeNames(markdown: string): string[] {
  return markdown.split('\n').flatMap((line) => MARKER.exec(line.trim())?.[1] ?? []);
}

/** The body of the one fenced `sh` block marked `<!-- recipe: NAME -->` (the marker on the line before it). */
export function recipe(markdown: string, name: string): string {
  const lines = markdown.split('\n');
  const at = lines.flatMap((line, i) => (MARKER.exec(line.trim())?.[1] === name ? [i] : []));
  if (at.length !== 1) throw new Error(`expected one block marked <!-- recipe: ${name} -->, found ${at.length}`);
  const open = at[0]! + 1;
  if (!/^```(sh|bash)\s*$/.test(lines[open] ?? '')) throw new Error(`the line after <!-- recipe: ${name} --> does not open a sh block`);
  const close = lines.indexOf('```', open + 1);
  if (close < 0) throw new Error(`the block marked ${name} is not closed`);
  return `${lines.slice(open + 1, close).join('\n')}\n`;
}

/** The fenced blocks (their info strings) between a `## ` heading and the next one, with the recipe marker before each. */
export function fencedBlocksInSection(markdown: string, heading: string): Array<{ info: string; marker: string | undefined }> {
  const lines = markdown.split('\n');
  const start = lines.indexOf(heading);
  if (start < 0) throw new Error(`no heading ${heading}`);
  const blocks: Array<{ info: string; marker: string | undefined }> = [];
  for (let i = start + 1; i < lines.length && !lines[i]!.startsWith('## '); i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    blocks.push({ info: open[1]!, marker: MARKER.exec(lines[i - 1]!.trim())?.[1] });
    i = lines.indexOf('```', i + 1);
  }
  return blocks;
}

/**
 * Stand-ins, as executables in `binDir`, for what the recipes call but a test cannot run for real:
 * - `assuan-proxy`: the CLI from source (what `npm install -g` would put on PATH);
 * - `ssh`: no sshd here. `ssh [-o OPT] HOST CMD…` runs CMD with `sh -c` in the "remote" (GNUPGHOME
 *   $STANDIN_REMOTE_GNUPGHOME, working directory $STANDIN_REMOTE_CWD); `ssh -fN … -R REMOTE:LOCAL HOST` starts a
 *   socket relay from REMOTE to LOCAL (sshd's end of the forward) and returns once REMOTE is bound, as `-f` with
 *   `ExitOnForwardFailure=yes` does; the relay's pid goes to $STANDIN_PIDS. Anything else is refused.
 * - `docker`: no Docker engine here. `docker run [--rm] --user U:G [-v SRC:DST[:ro]]… [-e K=V]… IMAGE CMD…` requires
 *   U:G to be this user's, maps every DST prefix in CMD and in the -e values back to its SRC, and runs CMD on the
 *   host with only PATH, HOME ($STANDIN_CONTAINER_HOME), TMPDIR, LC_ALL and the -e variables in its environment.
 */
export function writeStandIns(binDir: string): void {
  const require = createRequire(import.meta.url);
  const tsx = pathToFileURL(require.resolve('tsx')).href;
  const cli = path.resolve('src/cli.ts');
  const relay = path.join(path.dirname(new URL(import.meta.url).pathname), 'socketRelay.mjs');
  fs.mkdirSync(binDir, { recursive: true });
  const write = (name: string, text: string) => fs.writeFileSync(path.join(binDir, name), text, { mode: 0o755 });
  write('assuan-proxy', `#!/bin/sh\nexec ${q(process.execPath)} --import ${q(tsx)} ${q(cli)} "$@"\n`);
  write(
    'ssh',
    `#!/bin/bash
set -u
forward= background=0
while [ $# -gt 0 ]; do
  case $1 in
    -o) shift 2 ;;
    -R) forward=$2; shift 2 ;;
    -fN|-Nf) background=1; shift ;;
    -*) echo "ssh stand-in: unsupported option $1" >&2; exit 255 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "ssh stand-in: no host" >&2; exit 255; }
shift
if [ -n "$forward" ]; then
  [ "$background" = 1 ] && [ $# -eq 0 ] || { echo "ssh stand-in: -R only as ssh -fN ... -R ... HOST" >&2; exit 255; }
  remote=\${forward%%:*} near=\${forward#*:}
  [ -S "$near" ] || { echo "ssh stand-in: nothing listens on $near" >&2; exit 255; }
  [ -d "\${remote%/*}" ] || { echo "ssh stand-in: remote directory \${remote%/*} is missing" >&2; exit 255; }
  ${q(process.execPath)} ${q(relay)} "$remote" "$near" </dev/null >/dev/null 2>&1 &
  echo $! >> "$STANDIN_PIDS"
  until [ -S "$remote" ]; do kill -0 $! 2>/dev/null || { echo "ssh stand-in: forward failed" >&2; exit 255; }; sleep 0.05; done
  exit 0
fi
[ $# -ge 1 ] || { echo "ssh stand-in: no command" >&2; exit 255; }
cd "$STANDIN_REMOTE_CWD" && GNUPGHOME=$STANDIN_REMOTE_GNUPGHOME exec sh -c "$*"
`,
  );
  write(
    'docker',
    `#!/bin/bash
set -u
[ "\${1-}" = run ] || { echo "docker stand-in: only docker run" >&2; exit 125; }
shift
mounts=() envs=() user=
while [ $# -gt 0 ]; do
  case $1 in
    --rm|-i) shift ;;
    --user) user=$2; shift 2 ;;
    -v) mounts+=("$2"); shift 2 ;;
    -e) envs+=("$2"); shift 2 ;;
    -*) echo "docker stand-in: unsupported option $1" >&2; exit 125 ;;
    *) break ;;
  esac
done
[ "$user" = "$(id -u):$(id -g)" ] || { echo "docker stand-in: --user is '$user', not this user's $(id -u):$(id -g)" >&2; exit 125; }
for m in "\${mounts[@]}"; do [ -e "\${m%%:*}" ] || { echo "docker stand-in: mount source \${m%%:*} is missing" >&2; exit 125; }; done
shift
map() {
  local value=$1 m src dst
  for m in "\${mounts[@]}"; do
    src=\${m%%:*} dst=\${m#*:} dst=\${dst%:ro}
    case $value in "$dst"|"$dst"/*) printf '%s' "$src\${value#"$dst"}"; return ;; esac
  done
  printf '%s' "$value"
}
args=() vars=()
for a in "$@"; do args+=("$(map "$a")"); done
for e in "\${envs[@]}"; do vars+=("\${e%%=*}=$(map "\${e#*=}")"); done
exec env -i PATH="$PATH" HOME="$STANDIN_CONTAINER_HOME" TMPDIR="$TMPDIR" LC_ALL=C "\${vars[@]}" "\${args[@]}"
`,
  );
}

function q(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** Lines a test appends to a recipe: report shell variables, then stay up until released. */
export function reportVariables(names: string[]): string {
  return names.map((name) => `printf '@@var ${name}=%s\\n' "$${name}"\n`).join('');
}

/**
 * Runs with `set -e`; on the way out (normal or not) every background job still running (the proxy) gets SIGTERM,
 * and its exit status is printed as `@@exit STATUS`.
 */
export const STRICT_PROLOGUE = `set -e
trap 'rc=$?; set +e; pids=$(jobs -p); [ -z "$pids" ] || kill -TERM $pids; for p in $pids; do wait "$p"; echo "@@exit $?"; done; exit $rc' EXIT
`;

/** Says `@@ready`, then waits until the test releases the script (closes its stdin). */
export const HOLD = `echo @@ready\nread -r _ || true\n`;

export interface Shell {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
  /** Resolves with the first match in stdout, or rejects (with the output) if the script ends first. */
  stdoutMatch(pattern: RegExp): Promise<RegExpExecArray>;
  /** Closes the script's stdin (ends HOLD). */
  release(): void;
  /** The value of a variable the script reported with reportVariables. */
  variable(name: string): string;
  /** SIGKILL to the script's whole process group (what it started too). */
  kill(): void;
}

/** Runs `script` with bash in `cwd` with exactly `env`, in a process group of its own. */
export function runShell(script: string, cwd: string, env: NodeJS.ProcessEnv): Shell {
  const file = path.join(cwd, `.recipe-${process.hrtime.bigint()}.sh`);
  fs.writeFileSync(file, script);
  const child = spawn('bash', [file], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin!.on('error', () => {});
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const shell: Shell = {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    async stdoutMatch(pattern) {
      for (;;) {
        const match = pattern.exec(stdout);
        if (match) return match;
        const ended = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => child.stdout!.once('data', () => r(false)))]);
        if (ended && !pattern.exec(stdout)) throw new Error(`script ended without ${pattern}:\n--- stdout\n${stdout}\n--- stderr\n${stderr}`);
      }
    },
    release: () => child.stdin!.end(),
    variable(name) {
      const match = new RegExp(`^@@var ${name}=(.*)$`, 'm').exec(stdout);
      if (!match) throw new Error(`the script did not report ${name}:\n${stdout}\n${stderr}`);
      return match[1]!;
    },
    kill() {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    },
  };
  return shell;
}

/** Pids of running gpg-agent processes whose `--homedir` is `dir` or inside it. */
export function gpgAgentsUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'latin1').split('\0');
    } catch {
      continue;
    }
    if (path.basename(argv[0] ?? '') !== 'gpg-agent') continue;
    const home = argv[argv.indexOf('--homedir') + 1];
    if (argv.includes('--homedir') && home && (home === dir || home.startsWith(`${dir}/`))) pids.push(Number(entry));
  }
  return pids;
}

/** Whether process `pid` has a running child whose command name is `name`. */
export function hasChild(pid: number, name: string): boolean {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces, so split after its closing parenthesis.
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'latin1');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (comm === name && Number(ppid) === pid && state !== 'Z') return true;
    } catch {
      // Gone meanwhile.
    }
  }
  return false;
}

/** Polls `condition` until it holds (the test's timeout bounds the wait). */
export async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 25));
}

/** GitHub's anchors for the headings of a Markdown text (outside code fences). */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^```/.test(line)) fenced = !fenced;
    const heading = !fenced && /^#{1,6} (.*)$/.exec(line);
    if (!heading) continue;
    const base = heading[1]!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** Every Markdown link and image target in `markdown` (outside code fences and code spans). */
export function linkTargets(markdown: string): string[] {
  const targets: string[] = [];
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^```/.test(line)) {
      fenced = !fenced;
      continue;
    }
    if (fenced) continue;
    const text = line.replace(/`[^`]*`/g, '');
    for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) targets.push(match[1]!);
  }
  return targets;
}
