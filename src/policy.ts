/**
 * Which lines a session may send to the agent as commands. With no policy (the default) every line is relayed
 * and this costs nothing. `--restricted` applies gpg-agent's own extra-socket rules (README "Restricted mode") in
 * the proxy, as a second layer under the agent's own (the session asks the agent to run the connection
 * restricted); `--allow` and `--deny` narrow it further by verb, `--keys` by the keys a line names, and the argument
 * checks (src/argumentChecks.ts: keygrips, SETHASH, OPTION, `--preset`) by what a line's arguments say. The verb of
 * a stray `D`, `END` or `CAN` line is checked like any other: outside an INQUIRE the agent reads them as commands.
 * Verdicts are computed from the line's first words only; nothing of the line is kept.
 */
import type { PolicyRule } from '../machines/session.js';
import { createArgumentCheck, setsPinentryEnvironment, type ArgumentCheckOptions } from './argumentChecks.js';
import type { KeyAllowList } from './keyAllowList.js';
import { isRawCardAccess } from './consent/consentRequest.js';
import { COMMAND_VERBS, contentLength, type CommandVerb } from './protocol/classify.js';

export interface PolicyOptions {
  /** Enforce gpg-agent's extra-socket restrictions. */
  restricted?: boolean;
  /** Only these verbs reach the agent (plus BYE, NOP and RESET, which carry nothing). */
  allow?: readonly string[];
  /** These verbs never reach the agent. */
  deny?: readonly string[];
  /** Only these keys may be named (src/keyAllowList.ts). */
  keys?: KeyAllowList;
  /**
   * Check arguments (src/argumentChecks.ts); refusals carry the rule `arguments`. The caller decides when: the
   * proxy's config turns them on with any policy option, or with `--check-arguments` alone.
   */
  arguments?: ArgumentCheckOptions;
  /** Refuse `SCD APDU` (raw card commands): set with `--confirm`, which cannot ask about them. */
  refuseRawCardAccess?: boolean;
}

/** The rule that forbids this line as a command, or undefined when it may reach the agent. */
export type CommandPolicy = (line: Buffer, verb: CommandVerb) => PolicyRule | undefined;

/** Commands that work on gpg-agent's extra socket; all others are Forbidden there. */
const RESTRICTED_ALLOWED: ReadonlySet<CommandVerb> = new Set<CommandVerb>([
  'NOP', 'BYE', 'RESET', 'HELP', 'CANCEL', 'AUTH', 'END', 'ISTRUSTED', 'HAVEKEY', 'SIGKEY', 'SETKEY', 'SETHASH',
  'PKSIGN', 'PKDECRYPT', 'SETKEYDESC', 'INPUT', 'OUTPUT', 'GETINFO', 'OPTION',
]);
/** GETINFO subcommands the extra socket answers. */
const RESTRICTED_GETINFO: ReadonlySet<string> = new Set(['version', 'cmd_has_option', 's2k_count', 'restricted']);
/** The one OPTION the extra socket accepts. */
const RESTRICTED_OPTION = 'agent-awareness';
/** Always allowed with --allow: they carry no data and a client cannot end a session cleanly without BYE. */
const HOUSEKEEPING: readonly CommandVerb[] = ['BYE', 'NOP', 'RESET'];

const KNOWN_VERBS: ReadonlySet<string> = new Set(COMMAND_VERBS);

type VerbOption = 'allow' | 'deny';

export class PolicyError extends Error {
  constructor(
    /** The option whose value is wrong. */
    readonly option: VerbOption,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Checks verb names given by a user (case-insensitive); throws a PolicyError naming any unknown one. `name` is
 * how the message names the option (the CLI's flag by default).
 */
export function parseVerbs(names: readonly string[], option: VerbOption, name = `--${option}`): CommandVerb[] {
  const verbs = names.flatMap((n) => n.split(',')).map((n) => n.trim().toUpperCase()).filter((n) => n !== '');
  const unknown = verbs.filter((v) => !KNOWN_VERBS.has(v));
  if (unknown.length > 0) throw new PolicyError(option, `${name}: unknown command ${unknown.join(', ')} (known: ${COMMAND_VERBS.join(' ')})`);
  return verbs as CommandVerb[];
}

/** The policy for these options, or undefined when every command is relayed. `names`: how errors name the options. */
export function createCommandPolicy(options: PolicyOptions, names: Partial<Record<VerbOption, string>> = {}): CommandPolicy | undefined {
  const restricted = options.restricted ?? false;
  const allow = options.allow ? new Set<CommandVerb>([...parseVerbs(options.allow, 'allow', names.allow), ...HOUSEKEEPING]) : undefined;
  const deny = new Set<CommandVerb>(options.deny ? parseVerbs(options.deny, 'deny', names.deny) : []);
  const { keys } = options;
  const argumentsPass = options.arguments ? createArgumentCheck(options.arguments) : undefined;
  if (!restricted && !allow && deny.size === 0 && !keys && !argumentsPass && !options.refuseRawCardAccess) return undefined;

  return (line, verb) => {
    if (deny.has(verb)) return 'deny';
    if (allow && !allow.has(verb)) return 'allow';
    if (keys && !keys.allows(line, verb)) return 'keys';
    if (restricted) {
      const rule = restrictedRule(line, verb);
      if (rule) return rule;
    }
    // A raw card command would be a key use no prompt can name: with --confirm it is refused.
    if (options.refuseRawCardAccess && isRawCardAccess(line)) return 'confirm';
    if (argumentsPass && !argumentsPass(line, verb)) return verb === 'OPTION' && setsPinentryEnvironment(line) ? 'environment' : 'arguments';
    return undefined;
  };
}

/** gpg-agent's extra-socket rules by verb, GETINFO subcommand and OPTION name. */
function restrictedRule(line: Buffer, verb: CommandVerb): PolicyRule | undefined {
  if (!RESTRICTED_ALLOWED.has(verb)) return 'restricted';
  if (verb === 'GETINFO') return RESTRICTED_GETINFO.has(argumentWord(line, 'GETINFO'.length)) ? undefined : 'restricted';
  if (verb === 'OPTION') {
    // libassuan accepts `OPTION name=value`, `OPTION name value` and a leading `--` on the name.
    let name = argumentWord(line, 'OPTION'.length);
    if (name.startsWith('--')) name = name.slice(2);
    const eq = name.indexOf('=');
    if (eq !== -1) name = name.slice(0, eq);
    return name === RESTRICTED_OPTION ? undefined : 'restricted';
  }
  return undefined;
}

const MAX_ARGUMENT_WORD = 32;

/** The first word after the verb (up to a space, tab or NUL), at most 32 bytes; '' when there is none. */
function argumentWord(line: Buffer, verbLength: number): string {
  const n = contentLength(line);
  let start = verbLength;
  while (start < n && (line[start] === 0x20 || line[start] === 0x09)) start++;
  let end = start;
  while (end < n && end - start <= MAX_ARGUMENT_WORD && line[end] !== 0x20 && line[end] !== 0x09 && line[end] !== 0) end++;
  return line.toString('latin1', start, end);
}
