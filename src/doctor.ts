/**
 * `assuan-proxy doctor`: what to run when gpg through the proxy fails. Each check looks at one thing gpg needs
 * here and says, in one line, whether it is right and if not what to do. It only reads files and asks read-only
 * questions (GETINFO, KEYINFO --list); it never starts an agent nor writes to a GnuPG home.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { AssuanError, DialError, GPG_ERR_FORBIDDEN, printable, withAssuan } from './protocol/assuanClient.js';
import { inspectClientSocket, statOrUndefined, type ClientSocket, type Route } from './doctor/clientSocket.js';
import { keygripsOfKeyinfo, keygripsOfListing, setsOption } from './doctor/gnupgFiles.js';
import { defaultListenPath } from './listenSocket.js';
import {
  checkUpstreamSpec,
  daemonSocketPath,
  gpgconfDir,
  isUpstreamName,
  listenNameFor,
  resolveUpstream,
  UPSTREAM_FORMS,
  upstreamGreets,
  type UpstreamTarget,
} from './upstream/daemons.js';

const run = promisify(execFile);

export interface Finding {
  /** A short stable id: gnupghome, client-socket, no-autostart, upstream, public-keys. */
  check: string;
  ok: boolean;
  /** One line, in plain words. */
  message: string;
  /** What to do about a problem: commands to run, where possible. */
  fix?: string;
}

export interface DoctorOptions {
  env: NodeJS.ProcessEnv;
  /** The proxy's socket (default: where the proxy listens by default). */
  listen?: string;
  /** The daemon the proxy relays to, as `--upstream` takes it (default: agent). */
  upstream?: string;
}

/** Bounds every conversation with a daemon and every gpg run: a wedged one makes the doctor slow, never stuck. */
const ASSUAN_TIMEOUT_MS = 5_000;
const GPG_TIMEOUT_MS = 30_000;

export async function runDoctor(options: DoctorOptions): Promise<Finding[]> {
  const { env } = options;
  const listenPath = path.resolve(options.listen ?? defaultListenPath(env, listenNameFor(options.upstream)));
  const home = await settle(gpgconfDir('homedir', env));
  // Where gpg's clients look for the daemon the proxy stands in for: the agent's socket, or dirmngr's, …
  const clientPath = await settle(clientSocketPath(options.upstream, env));
  const upstream = await settle(resolveUpstream(options.upstream, env, { launch: false }));
  const upstreamAnswers = upstream.ok && (await upstreamGreets(upstream.value).catch(() => false));
  const context: Context = { env, options, listenPath, home, clientPath, upstream, upstreamAnswers };
  return [
    await guarded('gnupghome', () => checkHome(context)),
    await guarded('client-socket', () => checkClientSocket(context)),
    await guarded('no-autostart', () => checkNoAutostart(context)),
    await guarded('upstream', () => checkUpstream(context)),
    await guarded('public-keys', () => checkPublicKeys(context)),
  ];
}

/** A daemon's socket where its clients look for it here; for the agent (and a path given) gpg's agent socket. */
function clientSocketPath(upstream: string | undefined, env: NodeJS.ProcessEnv): Promise<string> {
  if (upstream !== undefined && isUpstreamName(upstream) && upstream !== 'agent' && upstream !== 'agent-extra') return daemonSocketPath(upstream, env);
  return gpgconfDir('agent-socket', env);
}

/** A word for a POSIX shell: single-quoted unless it is plainly safe (a fix is meant to be pasted). */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: string };

interface Context {
  env: NodeJS.ProcessEnv;
  options: DoctorOptions;
  listenPath: string;
  /** The directory gpg uses here (`gpgconf --list-dirs homedir`). */
  home: Settled<string>;
  /** The socket gpg connects to here (`gpgconf --list-dirs agent-socket`). */
  clientPath: Settled<string>;
  upstream: Settled<UpstreamTarget>;
  upstreamAnswers: boolean;
}

async function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  try {
    return { ok: true, value: await promise };
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
}

/** A check that fails unexpectedly is a finding too: one broken check must not hide the others. */
async function guarded(check: string, body: () => Promise<Omit<Finding, 'check'>> | Omit<Finding, 'check'>): Promise<Finding> {
  try {
    return { check, ...(await body()) };
  } catch (err) {
    return { check, ok: false, message: `could not check: ${(err as Error).message}` };
  }
}

type Outcome = Omit<Finding, 'check'>;

// 1. The GnuPG home

function checkHome({ home }: Context): Outcome {
  if (!home.ok) return { ok: false, message: `cannot tell which directory gpg uses here: ${home.error}`, fix: 'install GnuPG 2.2 or later' };
  const dir = home.value;
  let stats: fs.Stats;
  try {
    stats = fs.statSync(dir);
  } catch {
    return {
      ok: false,
      message: `gpg's home directory ${dir} does not exist: no gpg-agent can start for it ('gpgconf --launch gpg-agent' says only "error running gpg-connect-agent")`,
      fix: `create it: mkdir -m 700 ${shellQuote(dir)}`,
    };
  }
  if (!stats.isDirectory()) return { ok: false, message: `gpg's home ${dir} is not a directory`, fix: `move it away, then: mkdir -m 700 ${shellQuote(dir)}` };
  const uid = process.getuid?.();
  if (uid !== undefined && stats.uid !== uid) {
    return { ok: false, message: `gpg's home directory ${dir} belongs to uid ${stats.uid}, not to you (uid ${uid})`, fix: `use a home of your own: export GNUPGHOME=$(mktemp -d)` };
  }
  const mode = (stats.mode & 0o777).toString(8);
  if ((stats.mode & 0o022) !== 0) {
    return { ok: false, message: `gpg's home directory ${dir} is writable by others (mode ${mode}): they could change its keyring and configuration`, fix: `chmod 700 ${shellQuote(dir)}` };
  }
  return { ok: true, message: `gpg's home directory ${dir} exists and only you can write to it (mode ${mode})` };
}

// 2. What is at the agent socket gpg uses here

async function checkClientSocket(context: Context): Promise<Outcome> {
  const { clientPath, listenPath, env } = context;
  if (!clientPath.ok) return { ok: false, message: `cannot tell which agent socket gpg uses here: ${clientPath.error}`, fix: 'install GnuPG 2.2 or later' };
  const socket = clientPath.value;
  const found = await inspectClientSocket(socket, listenPath, env);
  const where = `${socket}${routeWords(found)}`;
  const at = `gpg's agent socket ${where}`;
  const startProxyHere = startProxyCommand(context, socket);
  // A running proxy elsewhere can be linked to; else the proxy itself must listen at the path.
  const linkOrStart = async (before: { remove?: boolean; makeDirectory?: boolean }): Promise<string> => {
    const rm = before.remove ? `rm ${shellQuote(socket)} && ` : '';
    if (listenPath !== socket && (await proxyAnswers(listenPath, env))) {
      const mkdir = before.makeDirectory ? `mkdir -p -m 700 ${shellQuote(path.dirname(socket))} && ` : '';
      return `point it at the running proxy: ${rm}${mkdir}ln -s ${shellQuote(listenPath)} ${shellQuote(socket)}`;
    }
    // The proxy creates its socket's directory itself.
    return `start the proxy there: ${rm}${startProxyHere}`;
  };
  switch (found.kind) {
    case 'nothing': {
      const missing = found.directoryMissing ? ` (not even its directory ${path.dirname(socket)})` : '';
      return {
        ok: false,
        message: `nothing is at gpg's agent socket ${socket}${missing}: gpg here finds no agent`,
        fix: await linkOrStart({ makeDirectory: found.directoryMissing }),
      };
    }
    case 'notSocket':
      return { ok: false, message: `${at} is ${found.description}, not a socket gpg can use`, fix: await linkOrStart({ remove: true }) };
    case 'dangling':
      if (leadsTo(socket, found.route, listenPath)) {
        return { ok: false, message: `${at} leads to the proxy's socket path, but nothing is there: the proxy is not running`, fix: `start it: ${startProxyCommand(context, listenPath)}` };
      }
      return { ok: false, message: `${at} leads nowhere: nothing is at its target`, fix: await linkOrStart({ remove: true }) };
    case 'stale':
      if (found.isProxy) {
        return { ok: false, message: `${at} is the proxy's socket ${listenPath}, but nothing answers there: the proxy is not running`, fix: `start it: ${startProxyCommand(context, listenPath)}` };
      }
      return { ok: false, message: `${at} is a stale socket: nothing answers there (what listened has ended)`, fix: await linkOrStart({ remove: true }) };
    case 'live':
      return liveSocketOutcome(found, where, listenPath, startProxyHere, linkOrStart);
  }
}

async function liveSocketOutcome(
  found: Extract<ClientSocket, { kind: 'live' }>,
  where: string,
  listenPath: string,
  startProxyHere: string,
  linkOrStart: (before: { remove?: boolean }) => Promise<string>,
): Promise<Outcome> {
  const { answer } = found;
  const at = `gpg's agent socket ${where}`;
  if (found.isProxy) {
    if (answer.who === 'silent') {
      return {
        ok: false,
        message: `${at} is the proxy's socket ${listenPath}, but the proxy refuses sessions: ${answer.reason}`,
        fix: "the proxy greets only once its upstream answers: see the upstream line; else the proxy's log",
      };
    }
    return { ok: true, message: `gpg here uses the proxy: its agent socket ${where} is the proxy's socket ${listenPath}` };
  }
  switch (answer.who) {
    case 'agent':
      return {
        ok: false,
        message: `${at} is a gpg-agent's own socket: gpg here talks to that agent directly, not through the proxy`,
        fix:
          found.route.how === 'direct'
            ? `use a client home whose agent socket is the proxy (README: a client home); or, if this home is meant to be one, stop its agent (gpgconf --kill gpg-agent), put no-autostart in gpg.conf, then ${startProxyHere}`
            : await linkOrStart({ remove: true }),
      };
    case 'relay': {
      const to = answer.restricted ? 'a restricted connection to gpg-agent (an extra socket, forwarded)' : `gpg-agent at ${answer.socketName}`;
      return {
        ok: true,
        message: `gpg here reaches ${to} through its agent socket ${where}, a relay that is not the proxy's socket ${listenPath} (an ssh forward, or a proxy with another --listen: give that to doctor with --listen)`,
      };
    }
    case 'unknown':
      return { ok: false, message: `${at} answers as an Assuan server, but not as gpg-agent or a relay of one`, fix: `stop what listens there, then ${startProxyHere}` };
    case 'silent':
      return { ok: false, message: `something listens at ${at}, but it is no Assuan server: ${answer.reason}`, fix: `stop what listens there, then ${startProxyHere}` };
  }
}

/** Whether the symlink or redirect at `socket` names `listenPath`. */
function leadsTo(socket: string, route: Route, listenPath: string): boolean {
  return route.how !== 'direct' && path.resolve(path.dirname(socket), route.target) === listenPath;
}

function routeWords(found: ClientSocket): string {
  const route: Route | undefined = 'route' in found ? found.route : undefined;
  if (route?.how === 'symlink') return ` (a symlink to ${printable(route.target)})`;
  if (route?.how === 'redirect') return ` (a %Assuan% redirect to ${printable(route.target)})`;
  return '';
}

/**
 * The command that starts a proxy at `listen` in front of the upstream. Run in a client home's environment
 * without --upstream, the proxy would take the client home's own socket path as its upstream: name the agent.
 */
function startProxyCommand({ upstream, clientPath, env }: Context, listen: string): string {
  const upstreamPath = upstream.ok ? upstream.value.path : undefined;
  const distinct = upstreamPath !== undefined && clientPath.ok && !sameFile(upstreamPath, clientPath.value);
  if (distinct) return `assuan-proxy --listen ${shellQuote(listen)} --upstream ${shellQuote(upstreamPath)}`;
  const note = env.GNUPGHOME ? ` (without this GNUPGHOME, so that it finds your agent, or with --upstream and your agent's socket)` : '';
  return `assuan-proxy --listen ${shellQuote(listen)}${note}`;
}

function sameFile(a: string, b: string): boolean {
  if (path.resolve(a) === path.resolve(b)) return true;
  const [sa, sb] = [statOrUndefined(a), statOrUndefined(b)];
  return sa !== undefined && sb !== undefined && sa.dev === sb.dev && sa.ino === sb.ino;
}

async function proxyAnswers(listenPath: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    await withAssuan(listenPath, env, async () => undefined, ASSUAN_TIMEOUT_MS);
    return true;
  } catch {
    return false;
  }
}

// 3. no-autostart

/** The option files of the clients that start an agent when none answers (gpg-connect-agent reads none). */
const AUTOSTARTING_CLIENTS = [
  { file: 'gpg.conf', always: true },
  { file: 'gpgsm.conf', always: false },
] as const;

function checkNoAutostart({ home }: Context): Outcome {
  if (!home.ok) return { ok: false, message: `cannot find gpg.conf: ${home.error}` };
  const dir = home.value;
  const why = 'when nothing answers at the agent socket (the proxy is down), gpg starts an empty gpg-agent of its own on the proxy\'s path';
  if (!fs.existsSync(dir)) {
    return { ok: false, message: `no gpg.conf with no-autostart: ${dir} does not exist; ${why}`, fix: `mkdir -m 700 ${shellQuote(dir)} && echo no-autostart > ${shellQuote(path.join(dir, 'gpg.conf'))}` };
  }
  const lacking: string[] = [];
  const checked: string[] = [];
  for (const { file, always } of AUTOSTARTING_CLIENTS) {
    const conf = path.join(dir, file);
    let text: string;
    try {
      text = fs.readFileSync(conf, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (always) lacking.push(file);
      continue;
    }
    checked.push(file);
    if (!setsOption(text, 'no-autostart')) lacking.push(file);
  }
  if (lacking.length > 0) {
    return {
      ok: false,
      message: `${lacking.join(' and ')} in ${dir} ${lacking.length > 1 ? 'lack' : 'lacks'} no-autostart: ${why}`,
      fix: lacking.map((file) => `echo no-autostart >> ${shellQuote(path.join(dir, file))}`).join('; '),
    };
  }
  return { ok: true, message: `${checked.join(' and ')} in ${dir} ${checked.length > 1 ? 'have' : 'has'} no-autostart: with the proxy down, gpg fails rather than start an agent of its own` };
}

// 4. The upstream

/**
 * What to do when nothing answers upstream. `gpgconf --launch` only for a daemon found by name, and never when its
 * socket is gpg's own agent socket here (run in a client home): that would put a private agent on the proxy's path.
 */
function upstreamFix(target: UpstreamTarget, options: DoctorOptions, clientPath: Settled<string>): string {
  const byName = options.upstream === undefined || isUpstreamName(options.upstream);
  if (clientPath.ok && sameFile(target.path, clientPath.value)) {
    // Both may be meant: this host's agent, or (a client home) the proxy standing in for one elsewhere.
    return (
      `if this is the agent's host: gpgconf --launch ${target.daemon}; if the proxy is to stand in here for a ${target.daemon} elsewhere, ` +
      `do not start one here (it would take the proxy's path): give doctor and the proxy its socket with --upstream`
    );
  }
  if (byName && target.daemon !== 'scdaemon') return `start it: gpgconf --launch ${target.daemon}`;
  return `start the ${target.daemon} whose socket that is, or give the proxy and doctor its socket with --upstream PATH`;
}

async function checkUpstream({ upstream, upstreamAnswers, clientPath, env, options }: Context): Promise<Outcome> {
  if (!upstream.ok) return { ok: false, message: `cannot tell which daemon the proxy relays to: ${upstream.error}`, fix: 'pass --upstream with its socket path' };
  const target = upstream.value;
  if (!upstreamAnswers) {
    return {
      ok: false,
      message: `nothing answers as ${target.daemon} at ${target.path}: the proxy has nothing to relay to`,
      fix: upstreamFix(target, options, clientPath),
    };
  }
  const viaClientSocket = clientPath.ok && sameFile(target.path, clientPath.value) ? ' (gpg\'s agent socket here)' : '';
  let what = target.daemon;
  try {
    what = await withAssuan(
      target.path,
      env,
      async (connection) => {
        const version = await connection.request('GETINFO version');
        const name = await connection.request('GETINFO socket_name');
        const socketName = name.data.toString('utf8');
        const relayed = name.ok && !sameFile(socketName, target.path) ? `, through a relay to ${printable(socketName)}` : '';
        // A version is digits and dots: anything else is not shown.
        const number = version.ok ? /^[0-9][0-9A-Za-z.+-]{0,30}$/.exec(version.data.toString('latin1'))?.[0] : undefined;
        return `${target.daemon}${number ? ` ${number}` : ''}${relayed}`;
      },
      ASSUAN_TIMEOUT_MS,
    );
  } catch {
    // It greeted: what it is stays the daemon we expected.
  }
  return { ok: true, message: `the upstream ${target.path}${viaClientSocket} answers: ${what}` };
}

// 5. Public keys for the agent's secret keys

async function checkPublicKeys({ upstream, upstreamAnswers, home, env }: Context): Promise<Outcome> {
  if (!upstream.ok || !upstreamAnswers) return { ok: false, message: 'not checked: no upstream answers to list the secret keys it holds' };
  const target = upstream.value;
  if (target.daemon !== 'gpg-agent') return { ok: true, message: `not checked: the upstream is ${target.daemon}, which holds no secret keys` };
  let reply;
  try {
    reply = await withAssuan(target.path, env, (connection) => connection.request('KEYINFO --list'), ASSUAN_TIMEOUT_MS);
  } catch (err) {
    if (err instanceof DialError || err instanceof AssuanError) return { ok: false, message: `not checked: gpg-agent at ${target.path} stopped answering (${err.message})` };
    throw err;
  }
  if (!reply.ok) {
    if (reply.error?.code === GPG_ERR_FORBIDDEN) {
      return { ok: true, message: `not checked: gpg-agent lists no keys on a restricted connection (its extra socket, or a proxy with --restricted); gpg -K here shows which public keys have secret keys` };
    }
    return { ok: false, message: `not checked: gpg-agent would not list its keys: ${printable(reply.error?.text ?? 'no reason given')}` };
  }
  const secret = keygripsOfKeyinfo(reply.status);
  if (secret.length === 0) {
    return { ok: false, message: `gpg-agent at ${target.path} holds no secret keys: gpg here will say "No secret key"`, fix: 'create or import a key where the agent runs (gpg --quick-gen-key, gpg --import)' };
  }
  const listing = await publicKeygrips(home, env);
  if ('error' in listing) return { ok: false, message: `not checked: gpg could not list the public keys here: ${listing.error}` };
  const missing = secret.filter((grip) => !listing.grips.has(grip));
  if (missing.length > 0) {
    const names = missing.map((grip) => `'&${grip}'`).join(' ');
    return {
      ok: false,
      message: `gpg-agent holds ${missing.length} secret ${missing.length > 1 ? 'keys' : 'key'} with no public key here (keygrip ${missing.join(', ')}): gpg here cannot use ${missing.length > 1 ? 'them' : 'it'} and says "No secret key"`,
      fix: `export on the agent's host: gpg --export ${names} > keys.gpg; import here: gpg --import keys.gpg ('&' names a key by its keygrip)`,
    };
  }
  return { ok: true, message: `every secret key gpg-agent holds (${secret.length}) has its public key here` };
}

/** The keygrips of the public keys in gpg's keyring here; an absent home has none (and gpg would create it). */
async function publicKeygrips(home: Settled<string>, env: NodeJS.ProcessEnv): Promise<{ grips: Set<string> } | { error: string }> {
  if (home.ok && !fs.existsSync(home.value)) return { grips: new Set() };
  // gpg would create an empty pubring.kbx: the doctor changes nothing. (Under keyboxd, GnuPG >= 2.3, there is none.)
  const keyrings = ['pubring.kbx', 'pubring.gpg', 'common.conf'];
  if (home.ok && !keyrings.some((file) => fs.existsSync(path.join(home.value, file)))) return { grips: new Set() };
  try {
    // --trust-model always: a listing needs no trust computation, and gpg would otherwise create trustdb.gpg.
    const { stdout } = await run('gpg', ['--batch', '--no-autostart', '--trust-model', 'always', '--with-colons', '--with-keygrip', '--list-keys'], {
      env,
      timeout: GPG_TIMEOUT_MS,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { grips: keygripsOfListing(stdout) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') return { error: 'gpg is not installed' };
    return { error: (e.stderr?.trim() || e.message).split('\n')[0] ?? String(err) };
  }
}

// The command

export const DOCTOR_USAGE = `Usage: assuan-proxy doctor [--listen PATH] [--upstream NAME|PATH] [--json]

Says, one line per check, why gpg through the proxy fails here (run it where gpg
runs, with the same GNUPGHOME): gpg's home directory, what is at the agent
socket gpg uses, no-autostart in gpg.conf and gpgsm.conf, whether the upstream
answers and what it is, and whether every secret key the agent holds has its
public key here. It starts nothing and changes nothing.

Options:
  --listen PATH            the proxy's socket (default: the proxy's default path)
  --upstream NAME|PATH     the daemon the proxy relays to: ${UPSTREAM_FORMS}
                           (default: agent)
  --json                   print the findings as JSON
  -h, --help               show this help

Exit status: 0 when every check passes, 1 when one finds a problem, 2 on a usage error.
`;

export async function doctorMain(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { listen: { type: 'string' }, upstream: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    return usageError((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(DOCTOR_USAGE);
    return 0;
  }
  if (values.upstream !== undefined) {
    const problem = checkUpstreamSpec(values.upstream);
    if (problem) return usageError(`--upstream ${problem}`);
  }
  const findings = await runDoctor({
    env: process.env,
    ...(values.listen !== undefined ? { listen: values.listen } : {}),
    ...(values.upstream !== undefined ? { upstream: values.upstream } : {}),
  });
  process.stdout.write(values.json ? `${JSON.stringify(findings, null, 2)}\n` : findings.map(formatFinding).join(''));
  return findings.every((finding) => finding.ok) ? 0 : 1;
}

/** One line: "ok: …" or "problem: … — fix: …". */
export function formatFinding(finding: Finding): string {
  if (finding.ok) return `ok: ${finding.message}\n`;
  return `problem: ${finding.message}${finding.fix ? ` — fix: ${finding.fix}` : ''}\n`;
}

function usageError(message: string): number {
  process.stderr.write(`assuan-proxy doctor: ${message}\n\n${DOCTOR_USAGE}`);
  return 2;
}
