/** Options checked and completed once, the same for the library and the command line. */
import { describe, expect, it } from 'vitest';
import { flagOf, parseCommandLine, UsageError } from '../src/commandLine.js';
import { InvalidOptionError, isProxyConfig, PROXY_DEFAULTS, resolveConfig, type ProxyConfig, type ProxyOptions } from '../src/config.js';
import { defaultListenPath, ProxyStartError } from '../src/listenSocket.js';
import { classifyClientLine } from '../src/protocol/classify.js';

/** Everything but the logger (each call without one makes its own silent logger). */
function comparable(config: ProxyConfig): Omit<ProxyConfig, 'logger'> {
  const { logger: _logger, ...rest } = config;
  return rest;
}

/** The message an option error carries, and that it is a start error naming the option. */
function failure(options: ProxyOptions, cli = false): { option: string; message: string } {
  try {
    resolveConfig(options, cli ? { optionName: flagOf } : {});
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect(err).toBeInstanceOf(ProxyStartError);
    return { option: (err as InvalidOptionError).option, message: (err as Error).message };
  }
  throw new Error(`accepted ${JSON.stringify(options)}`);
}

describe('resolveConfig', () => {
  it('fills in every default, builds no policy when nothing is restricted, and freezes the result', () => {
    const env = { XDG_RUNTIME_DIR: '/run/user/4242' };
    const config = resolveConfig({ env });
    expect(comparable(config)).toEqual({
      listenPath: defaultListenPath(env),
      upstream: undefined,
      // The library starts no agent unless asked (the CLI asks).
      launchAgent: false,
      onSessionEnd: undefined,
      timeouts: {
        connectMs: PROXY_DEFAULTS.connectTimeoutMs,
        greetingMs: PROXY_DEFAULTS.greetingTimeoutMs,
        idleMs: PROXY_DEFAULTS.idleTimeoutMs,
        inquiryMs: PROXY_DEFAULTS.inquiryTimeoutMs,
        responseMs: undefined,
        closeGraceMs: PROXY_DEFAULTS.closeGraceMs,
        consentMs: PROXY_DEFAULTS.confirmTimeoutMs,
      },
      drainTimeoutMs: PROXY_DEFAULTS.drainTimeoutMs,
      maxSessions: PROXY_DEFAULTS.maxSessions,
      maxBufferedClientBytes: PROXY_DEFAULTS.maxBufferedClientBytes,
      warmUpSessions: 300,
      spareConnection: false,
      restricted: false,
      policy: undefined,
      checkArguments: false,
      confirm: undefined,
      maxCrypto: undefined,
      inspect: undefined,
      traceTransitions: false,
      clock: undefined,
      env,
    });
    expect(config.listenPath).toBe('/run/user/4242/assuan-proxy/S.gpg-agent');
    // The CLI's default logger: info lines (before, the library's default logged nothing).
    expect(config.logger.level).toBe('info');
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.timeouts)).toBe(true);
  });

  it('takes the values given', () => {
    const config = resolveConfig({ listen: '/p/S', upstream: '/a/S', connectTimeoutMs: 1, responseTimeoutMs: 2 ** 31 - 1, maxSessions: 3, restricted: true, traceTransitions: true });
    expect([config.listenPath, config.upstream, config.timeouts.connectMs, config.timeouts.responseMs, config.maxSessions]).toEqual(['/p/S', '/a/S', 1, 2 ** 31 - 1, 3]);
    expect([config.restricted, config.traceTransitions]).toEqual([true, true]);
    // No warm-up at all is a choice (a proxy started by its first connection).
    expect(resolveConfig({ warmUpSessions: 0 }).warmUpSessions).toBe(0);
  });

  it('builds the command policy once, from restricted, allow and deny', () => {
    const config = resolveConfig({ deny: ['PKSIGN'] });
    expect(config.policy?.(Buffer.from('PKSIGN\n'), 'PKSIGN')).toBe('deny');
    expect(config.policy?.(Buffer.from('PKDECRYPT\n'), 'PKDECRYPT')).toBeUndefined();
    expect(resolveConfig({ restricted: true }).policy?.(Buffer.from('KILLAGENT\n'), 'KILLAGENT')).toBe('restricted');
  });

  it('a config given back is returned as it is: nothing is resolved twice', () => {
    const config = resolveConfig({ deny: ['PKSIGN'] });
    expect(resolveConfig(config)).toBe(config);
    expect(isProxyConfig(config)).toBe(true);
    // A copy is options again, not a config.
    expect(isProxyConfig({ ...config })).toBe(false);
  });

  it.each([
    [{ connectTimeoutMs: 0 }, 'connectTimeoutMs', "connectTimeoutMs takes a positive whole number of milliseconds, not '0'"],
    [{ idleTimeoutMs: 1.5 }, 'idleTimeoutMs', "idleTimeoutMs takes a positive whole number of milliseconds, not '1.5'"],
    [{ responseTimeoutMs: 2 ** 31 }, 'responseTimeoutMs', `responseTimeoutMs takes a positive whole number of milliseconds, not '${2 ** 31}'`],
    [{ drainTimeoutMs: Number.NaN }, 'drainTimeoutMs', "drainTimeoutMs takes a positive whole number of milliseconds, not 'NaN'"],
    [{ maxSessions: -1 }, 'maxSessions', "maxSessions takes a positive whole number, not '-1'"],
    [{ warmUpSessions: -1 }, 'warmUpSessions', "warmUpSessions takes a whole number of sessions from 0 to 10000, not '-1'"],
    [{ warmUpSessions: 10_001 }, 'warmUpSessions', "warmUpSessions takes a whole number of sessions from 0 to 10000, not '10001'"],
    [{ listen: '' }, 'listen', "listen takes a socket path, not ''"],
    [{ deny: ['PKSIGN', 'FROB'] }, 'deny', 'deny: unknown command FROB (known: '],
  ] as Array<[ProxyOptions, string, string]>)('refuses %j, naming the option', (options, option, message) => {
    const error = failure(options);
    expect(error.option).toBe(option);
    expect(error.message).toContain(message);
  });
});

describe('the command line goes through the same config', () => {
  it("with no flags, the CLI's config is the library's defaults", () => {
    const cli = parseCommandLine([]);
    expect(cli.help).toBe(false);
    // Except the one documented difference: with no --upstream, the CLI starts the agent if it is not running.
    expect(comparable(resolveConfig(cli.proxy, { optionName: flagOf }))).toEqual({ ...comparable(resolveConfig({})), launchAgent: true });
  });

  it('flags become options, and their values reach the config', () => {
    const { proxy } = parseCommandLine(['--listen', '/p/S', '--connect-timeout', '7000', '--max-sessions=3', '--deny', 'PKSIGN', '--deny', 'havekey', '--restricted', '--warm-up', '0']);
    const config = resolveConfig(proxy, { optionName: flagOf });
    expect([config.listenPath, config.timeouts.connectMs, config.maxSessions, config.restricted, config.warmUpSessions]).toEqual(['/p/S', 7000, 3, true, 0]);
    expect(config.policy?.(Buffer.from('HAVEKEY\n'), 'HAVEKEY')).toBe('deny');
  });

  it.each([
    [['--connect-timeout', '-5'], "--connect-timeout takes a positive whole number of milliseconds, not '-5'"],
    [['--max-sessions', '0'], "--max-sessions takes a positive whole number, not '0'"],
    [['--warm-up', '-1'], "--warm-up takes a whole number of sessions from 0 to 10000, not '-1'"],
    [['--deny', 'PKSIGN,FROB'], '--deny: unknown command FROB'],
    [['--keys', 'ABCD'], "--keys 'ABCD' is neither a keygrip (&, then 40 hex digits) nor a fingerprint (40 or 64 hex digits)"],
  ])('a value the config refuses is named by its flag: %j', (args, message) => {
    expect(failure(parseCommandLine(args).proxy, true).message).toContain(message);
  });

  it.each([
    [['--listen'], '--listen needs a value: --listen PATH'],
    [['--listen', '--upstream', '/a/S'], "--listen needs a value: --listen PATH (write --listen=--upstream if '--upstream' is meant as its value)"],
    [['--connect-timeout', '5s'], "--connect-timeout takes a positive whole number of milliseconds, not '5s'"],
    [['--connect-timeout='], "--connect-timeout takes a positive whole number of milliseconds, not ''"],
    [['--bogus'], "Unknown option '--bogus'"],
  ])('a command line that cannot be read is a usage error in our words: %j', (args, message) => {
    expect(() => parseCommandLine(args)).toThrow(UsageError);
    expect(() => parseCommandLine(args)).toThrow(message);
  });

  it('a value that starts with a dash can still be given with =', () => {
    expect(parseCommandLine(['--listen=-odd', '--upstream', '/a/S']).proxy).toMatchObject({ listen: '-odd', upstream: '/a/S' });
  });
});

describe('argument checks: --check-arguments, --allow-option, --preset', () => {
  const GRIP = 'A'.repeat(40);
  const judge = (config: ProxyConfig, text: string) => {
    const line = Buffer.from(text, 'latin1');
    return config.policy?.(line, classifyClientLine(line).verb) ?? 'forward';
  };
  const fromCli = (args: string[]) => resolveConfig(parseCommandLine(args).proxy, { optionName: flagOf });

  it('--check-arguments turns them on alone', () => {
    const config = fromCli(['--check-arguments']);
    expect(config.checkArguments).toBe(true);
    expect(judge(config, 'OPTION pinentry-mode=loopback\n')).toBe('arguments');
    expect(judge(config, 'SETHASH 8 00\n')).toBe('arguments');
    expect(judge(config, 'PKSIGN\n')).toBe('forward');
    expect(judge(config, 'KILLAGENT\n')).toBe('forward');
  });

  it.each([[['--deny', 'KILLAGENT']], [['--allow', 'SIGKEY,SETHASH,OPTION']], [['--keys', `&${GRIP}`]], [['--allow-option', 'display']]])(
    'any policy turns them on: %j',
    (args) => {
      const config = fromCli(args);
      expect(config.checkArguments).toBe(true);
      expect(judge(config, `SIGKEY ${GRIP}0\n`)).not.toBe('forward');
    },
  );

  it('--restricted alone does not: it answers as the extra socket does, argument errors included', () => {
    const config = fromCli(['--restricted']);
    expect(config.checkArguments).toBe(false);
    expect(judge(config, 'HAVEKEY 00\n')).toBe('forward');
    expect(judge(fromCli(['--restricted', '--check-arguments']), 'HAVEKEY 00\n')).toBe('arguments');
  });

  it('a library caller turns them on with checkArguments, and they are off with no policy at all', () => {
    expect(resolveConfig({ checkArguments: true }).policy?.(Buffer.from('SETHASH 8 00\n'), 'SETHASH')).toBe('arguments');
    expect(resolveConfig({ checkArguments: false }).policy).toBeUndefined();
    expect(resolveConfig({}).checkArguments).toBe(false);
  });

  it('--allow-option widens the OPTIONs allowed, repeatable and comma-separated', () => {
    const config = fromCli(['--allow-option', 'pinentry-mode=loopback', '--allow-option', 'display,ttyname']);
    expect(judge(config, 'OPTION pinentry-mode=loopback\n')).toBe('forward');
    expect(judge(config, 'OPTION display=:0\n')).toBe('forward');
    expect(judge(config, 'OPTION ttyname=/dev/pts/1\n')).toBe('forward');
    expect(judge(config, 'OPTION putenv=X=1\n')).toBe('environment');
    expect(resolveConfig({ allowOptions: ['display'] }).policy?.(Buffer.from('OPTION display=:0\n'), 'OPTION')).toBeUndefined();
  });

  it('--preset yubikey: card reads and key uses through SCD, no card changes', () => {
    for (const args of [['--preset', 'yubikey'], ['--preset', 'yubikey', '--upstream', 'agent'], ['--preset', 'yubikey', '--upstream', '/run/user/1/gnupg/S.gpg-agent']]) {
      const config = fromCli(args);
      expect(config.preset).toBe('yubikey');
      expect(judge(config, 'SCD PKSIGN OPENPGP.1\n')).toBe('forward');
      expect(judge(config, 'SCD PASSWD OPENPGP.1\n')).toBe('arguments');
      expect(judge(config, 'GENKEY\n')).toBe('arguments');
    }
  });

  it.each([
    [['--allow-option', 'displya'], "--allow-option: unknown option 'displya'"],
    [['--allow-option', 'display='], "--allow-option: 'display=': give a value"],
    [['--preset', 'nitrokey'], "--preset takes yubikey, not 'nitrokey'"],
    [['--preset', 'yubikey', '--upstream', 'agent-extra'], '--preset yubikey works through SCD, which only gpg-agent\'s standard socket takes: --upstream agent-extra cannot be used'],
    [['--preset', 'yubikey', '--upstream', 'dirmngr'], '--upstream dirmngr cannot be used'],
    [['--preset', 'yubikey', '--upstream', '/run/user/1/gnupg/S.gpg-agent.extra'], 'gpg-agent forbids on its extra and browser sockets: --upstream /run/user/1/gnupg/S.gpg-agent.extra is one'],
    [['--preset', 'yubikey', '--upstream', './S.gpg-agent.browser'], 'is one'],
    [['--preset', 'yubikey', '--restricted'], '--preset yubikey works through SCD, which --restricted forbids'],
    [['--preset', 'yubikey', '--keys', `&${GRIP}`], '--preset yubikey works through SCD, which --keys refuses'],
  ])('refused at start, named by its flag: %j', (args, message) => {
    const { option, message: text } = failure(parseCommandLine(args).proxy, true);
    expect(['allowOptions', 'preset']).toContain(option);
    expect(text).toContain(message);
  });

  it('--preset and --allow-option need a value', () => {
    expect(() => parseCommandLine(['--preset'])).toThrow('--preset needs a value: --preset NAME');
    expect(() => parseCommandLine(['--allow-option'])).toThrow('--allow-option needs a value: --allow-option OPTS');
  });
});
