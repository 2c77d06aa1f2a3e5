/** The doctor's pieces that need no GnuPG: option files, listings, its Assuan client, its output and usage. */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { doctorMain, formatFinding } from '../src/doctor.js';
import { AssuanConnection, AssuanError, DialError, percentDecode, printable } from '../src/protocol/assuanClient.js';
import { keygripsOfKeyinfo, keygripsOfListing, setsOption } from '../src/doctor/gnupgFiles.js';
import { makeTempDir } from './support/gnupg.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('setsOption (gpg.conf as gpg reads it)', () => {
  it.each([
    ['no-autostart\n', true],
    ['   \tno-autostart\n', true],
    ['keyserver hkps://keys.example.org\nno-autostart', true],
    ['no-autostart\r\n', true],
    ['# no-autostart\n', false],
    ['   # no-autostart\n', false],
    ['no-autostartx\n', false],
    ['autostart\n', false],
    ['', false],
    ['default-key no-autostart\n', false],
  ])('%j: %s', (text, expected) => {
    expect(setsOption(text, 'no-autostart')).toBe(expected);
  });
});

describe('keygrip extraction', () => {
  it('takes the grp: records of a colon listing, primary keys and subkeys', () => {
    const listing = [
      'tru::1:1796286363:0:3:1:5',
      'pub:u:255:22:FB25E04A2DD89D0A:1796286363:::u:::scESC:::::ed25519:::0:',
      'fpr:::::::::394A526B0B3BD41C8DF72955FB25E04A2DD89D0A:',
      'grp:::::::::1AD338A597E180D078FE958885FDE03B16406C96:',
      'uid:u::::1796286363::ABC::T <t@example.org>::::::::::0:',
      'sub:u:255:18:7BC60776EDE411C5:1796286363::::::e:::::cv25519::',
      'fpr:::::::::0044649111D476CAB0B529877BC60776EDE411C5:',
      'grp:::::::::c5641b312f14d1b7cfe9039a098e7338e727f1a5:',
      '',
    ].join('\n');
    expect([...keygripsOfListing(listing)]).toEqual(['1AD338A597E180D078FE958885FDE03B16406C96', 'C5641B312F14D1B7CFE9039A098E7338E727F1A5']);
  });

  it("takes the keygrips of KEYINFO --list's status lines and nothing else", () => {
    expect(
      keygripsOfKeyinfo(['KEYINFO 1AD338A597E180D078FE958885FDE03B16406C96 D - - - C - - -', 'PROGRESS x', 'KEYINFO nonsense D', 'KEYINFO C5641B312F14D1B7CFE9039A098E7338E727F1A5 T D2760001240102010006 OPENPGP.1 - - - - -']),
    ).toEqual(['1AD338A597E180D078FE958885FDE03B16406C96', 'C5641B312F14D1B7CFE9039A098E7338E727F1A5']);
  });
});

describe('percentDecode', () => {
  it('decodes %XX escapes into bytes and leaves everything else', () => {
    expect(percentDecode(Buffer.from('a%25b%0A%0d%ffz', 'latin1'))).toEqual(Buffer.from([0x61, 0x25, 0x62, 0x0a, 0x0d, 0xff, 0x7a]));
    expect(percentDecode(Buffer.from('100% and %zz and %4', 'latin1')).toString('latin1')).toBe('100% and %zz and %4');
  });
});

describe('printable', () => {
  it("shows what a server sent with control characters escaped, so it cannot drive the user's terminal", () => {
    expect(printable('/tmp/a b/S.gpg-agent')).toBe('/tmp/a b/S.gpg-agent');
    expect(printable('x\x1b[2Jy\nz\x9b')).toBe('x\\x1b[2Jy\\x0az\\x9b');
  });
});

describe("the doctor's Assuan client", () => {
  const servers: net.Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  /** A server on a fresh socket that runs `script` for each connection. */
  async function serve(script: (socket: net.Socket) => void): Promise<string> {
    const dir = makeTempDir('dra.');
    dirs.push(dir);
    const socketPath = path.join(dir, 'S');
    const server = net.createServer(script);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    return socketPath;
  }

  /** Answers each command line with `answers[command]`, written in pieces to exercise the framing. */
  function scripted(answers: Record<string, string>, greeting = 'OK hello\n') {
    return (socket: net.Socket) => {
      socket.write(greeting);
      let pending = '';
      socket.on('data', (chunk: Buffer) => {
        pending += chunk.toString('latin1');
        for (let lf = pending.indexOf('\n'); lf !== -1; lf = pending.indexOf('\n')) {
          const line = pending.slice(0, lf);
          pending = pending.slice(lf + 1);
          const answer = answers[line];
          if (answer === undefined) continue;
          const bytes = Buffer.from(answer, 'latin1');
          socket.write(bytes.subarray(0, 3));
          setImmediate(() => socket.write(bytes.subarray(3)));
        }
      });
      socket.on('error', () => {});
    };
  }

  it('collects percent-decoded D payloads, S lines, skips comments, and reads OK and ERR (with the error code)', async () => {
    const socketPath = await serve(
      scripted({
        'GETINFO socket_name': '# a comment\nD /tmp/a%25b/S.gpg-agent\nOK\n',
        'KEYINFO --list': 'S KEYINFO AAAA D\nS KEYINFO BBBB D\nOK done\n',
        'GETINFO restricted': 'ERR 67109115 Forbidden <GPG Agent>\n',
      }),
    );
    const { connection, greeting } = await AssuanConnection.open(socketPath, {});
    try {
      expect(greeting).toBe('OK hello');
      const name = await connection.request('GETINFO socket_name');
      expect(name).toMatchObject({ ok: true, status: [] });
      expect(name.data.toString()).toBe('/tmp/a%b/S.gpg-agent');
      expect(await connection.request('KEYINFO --list')).toMatchObject({ ok: true, status: ['KEYINFO AAAA D', 'KEYINFO BBBB D'] });
      expect(await connection.request('GETINFO restricted')).toMatchObject({ ok: false, error: { code: 251, text: 'Forbidden <GPG Agent>' } });
    } finally {
      connection.close();
    }
  });

  it('cancels an INQUIRE: nothing it asks needs one', async () => {
    const socketPath = await serve(scripted({ 'HAVEKEY x': 'INQUIRE WHAT\n', CAN: 'ERR 83886179 Operation cancelled\n' }));
    const { connection } = await AssuanConnection.open(socketPath, {});
    try {
      expect(await connection.request('HAVEKEY x')).toMatchObject({ ok: false, error: { code: 99 } });
    } finally {
      connection.close();
    }
  });

  it('tells nobody listening (DialError) from a server that does not greet with OK (AssuanError), and times out on silence', async () => {
    const dir = makeTempDir('drb.');
    dirs.push(dir);
    await expect(AssuanConnection.open(path.join(dir, 'none'), {})).rejects.toBeInstanceOf(DialError);
    const refusing = await serve(scripted({}, 'ERR 1 go away\n'));
    await expect(AssuanConnection.open(refusing, {})).rejects.toThrow('the greeting was "ERR 1 go away", not OK');
    const silent = await serve(() => {});
    const started = Date.now();
    await expect(AssuanConnection.open(silent, {}, 200)).rejects.toThrow(AssuanError);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('follows a %Assuan% redirect file, as GnuPG clients do', async () => {
    const socketPath = await serve(scripted({}));
    const redirect = path.join(path.dirname(socketPath), 'redirect');
    fs.writeFileSync(redirect, `%Assuan%\nsocket=${socketPath}\n`);
    const { connection, greeting } = await AssuanConnection.open(redirect, {});
    connection.close();
    expect(greeting).toBe('OK hello');
  });
});

describe('doctor output and usage', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('prints one line per finding: "ok: …", or "problem: … — fix: …"', () => {
    expect(formatFinding({ check: 'x', ok: true, message: 'fine' })).toBe('ok: fine\n');
    expect(formatFinding({ check: 'x', ok: false, message: 'broken', fix: 'mend it' })).toBe('problem: broken — fix: mend it\n');
    expect(formatFinding({ check: 'x', ok: false, message: 'broken' })).toBe('problem: broken\n');
  });

  it.each([
    [['--bogus'], "Unknown option '--bogus'"],
    [['--listen'], "Option '--listen <value>' argument missing"],
    [['extra'], "Unexpected argument 'extra'"],
    [['--upstream', 'frob'], "--upstream takes agent, agent-extra, dirmngr, keyboxd, scdaemon, or a path (with a '/', e.g. ./S.gpg-agent); 'frob' is none of these"],
  ])('rejects %j with exit 2, the message and the usage', async (argv, message) => {
    let stderr = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => ((stderr += String(chunk)), true));
    expect(await doctorMain(argv)).toBe(2);
    expect(stderr).toContain(message);
    expect(stderr).toContain('Usage: assuan-proxy doctor [--listen PATH] [--upstream NAME|PATH] [--json]');
  });

  it.each([['--help'], ['-h']])('%s prints the usage and exits 0', async (flag) => {
    let stdout = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => ((stdout += String(chunk)), true));
    expect(await doctorMain([flag])).toBe(0);
    expect(stdout).toContain('Usage: assuan-proxy doctor');
    expect(stdout).toContain('--json');
  });
});
