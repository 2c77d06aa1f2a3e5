/** The audit file's writer (0600, append, rotation followed, refusals of unsafe files) and its summary. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditLog, type AuditRecord } from '../src/audit/auditLog.js';
import { formatSummary, summarize } from '../src/audit/summary.js';
import { ProxyStartError } from '../src/listenSocket.js';
import { tempDirs } from './support/gnupg.js';

const temp = tempDirs();
afterAll(() => temp.removeAll());
const silent = pino({ level: 'silent' });
const record = (verb: string, extra: Partial<AuditRecord> = {}): AuditRecord => ({ time: new Date().toISOString(), session: '1', verb, decision: 'relayed', ...extra });
const lines = (file: string) => fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');

describe('AuditLog', () => {
  it('creates the file 0600 (in a 0700 directory it makes) and appends whole lines in order', async () => {
    const file = path.join(temp.make('aud.'), 'state', 'audit.jsonl');
    const log = AuditLog.open(file, silent);
    for (let i = 0; i < 50; i++) void log.write(record('PKSIGN', { ms: i }));
    await log.flushed();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(lines(file).map((l) => (JSON.parse(l) as AuditRecord).ms)).toEqual([...Array(50).keys()]);
  });

  it('a FIFO put at the path is not waited on (the shutdown waits for the records), and a record that could not be completed is skipped, not the ones after it', async () => {
    const file = path.join(temp.make('aud.'), 'audit.jsonl');
    const log = AuditLog.open(file, silent);
    fs.renameSync(file, `${file}.1`);
    execFileSync('mkfifo', ['-m', '600', file]);
    void log.write(record('PKSIGN', { ms: 1 }));
    // Without O_NONBLOCK the open would wait for a reader for ever, and so would this.
    await log.flushed();
    fs.rmSync(file);
    void log.write(Promise.reject(new Error('lookup failed')));
    void log.write(Promise.resolve(record('PKDECRYPT', { ms: 2 })));
    await log.flushed();
    expect(lines(file).map((l) => (JSON.parse(l) as AuditRecord).verb)).toEqual(['PKDECRYPT']);
  });

  it('follows a rotation: after the file is renamed away, the next record starts a new file', async () => {
    const file = path.join(temp.make('aud.'), 'audit.jsonl');
    const log = AuditLog.open(file, silent);
    await log.write(record('PKSIGN'));
    fs.renameSync(file, `${file}.1`);
    await log.write(record('PKDECRYPT'));
    expect(lines(`${file}.1`).map((l) => (JSON.parse(l) as AuditRecord).verb)).toEqual(['PKSIGN']);
    expect(lines(file).map((l) => (JSON.parse(l) as AuditRecord).verb)).toEqual(['PKDECRYPT']);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it('writes nothing into a file that is no longer safe (another file, writable by others, put in its place)', async () => {
    const dir = temp.make('aud.');
    const file = path.join(dir, 'audit.jsonl');
    const log = AuditLog.open(file, silent);
    await log.write(record('PKSIGN'));
    fs.renameSync(file, `${file}.1`);
    fs.writeFileSync(file, '');
    fs.chmodSync(file, 0o666);
    await log.write(record('PKDECRYPT'));
    expect(fs.readFileSync(file, 'utf8')).toBe('');
    expect(lines(`${file}.1`)).toHaveLength(1);
  });

  it('refuses a directory others may write to', () => {
    const dir = temp.make('aud.');
    fs.chmodSync(dir, 0o777);
    expect(() => AuditLog.open(path.join(dir, 'audit.jsonl'), silent)).toThrow(/directory .* has mode 777/);
  });

  it('refuses a file others may write to, and a symlink', () => {
    const dir = temp.make('aud.');
    const open = path.join(dir, 'open.jsonl');
    fs.writeFileSync(open, '', { mode: 0o666 });
    fs.chmodSync(open, 0o666);
    expect(() => AuditLog.open(open, silent)).toThrow(ProxyStartError);
    expect(() => AuditLog.open(open, silent)).toThrow(/mode 666: others could rewrite the record/);
    const link = path.join(dir, 'link.jsonl');
    fs.symlinkSync(path.join(dir, 'elsewhere'), link);
    expect(() => AuditLog.open(link, silent)).toThrow(/cannot open the audit file .*ELOOP/);
  });
});

describe('audit summary', () => {
  it('a long user ID is shortened, not a reason to skip the record', () => {
    const grip = 'D'.repeat(40);
    const summary = summarize(`${JSON.stringify(record('PKSIGN', { keygrip: grip, userId: '\u{1F511}'.repeat(320) }))}\n`);
    expect(summary.records).toBe(1);
    expect([...summary.byKey[grip]!.userId!]).toHaveLength(200);
  });


  it('counts uses per key and per caller, failures and refusals, and skips lines that are not records', () => {
    const grip = 'A'.repeat(40);
    const text = [
      JSON.stringify(record('PKSIGN', { keygrip: grip, result: 'ok', time: '2026-01-01T00:00:00.000Z' })),
      JSON.stringify(record('PKSIGN', { keygrip: grip, result: 'err', code: 99, time: '2026-01-02T00:00:00.000Z', link: 'link' })),
      JSON.stringify(record('SIGKEY', { keygrip: 'B'.repeat(40), decision: 'refused', rule: 'keys' })),
      'not json',
      JSON.stringify({ ...record('PKSIGN'), verb: 'PKSIGN\u001b[31m' }),
      JSON.stringify({ ...record('PKSIGN'), keygrip: 'x'.repeat(40) }),
    ].join('\n');
    const summary = summarize(text);
    expect(summary.records).toBe(3);
    expect(summary.skipped).toBe(3);
    expect(summary.byKey[grip]).toEqual({ uses: { PKSIGN: 2 }, failed: 1, refused: 0, last: '2026-01-02T00:00:00.000Z' });
    expect(summary.byCaller.local).toMatchObject({ uses: { PKSIGN: 1 }, refused: 1 });
    expect(summary.byCaller.link).toMatchObject({ uses: { PKSIGN: 1 }, failed: 1 });
    expect(summary.refusals).toEqual({ keys: 1 });
    // Names from the file are only names: no prototype is reached.
    const polluted = summarize([JSON.stringify(record('PKSIGN', { link: '__proto__' })), JSON.stringify(record('PKSIGN', { link: 'constructor', decision: 'refused', rule: 'keys' }))].join('\n'));
    expect(Object.keys(polluted.byCaller).sort()).toEqual(['__proto__', 'constructor']);
    expect(({} as Record<string, unknown>).refused).toBeUndefined();
    const printed = formatSummary(summary);
    expect(printed).toContain(`  ${grip}: PKSIGN 2; 1 failed at the agent, 0 refused by policy; last 2026-01-02T00:00:00.000Z`);
    expect(printed).not.toContain('\u001b');
  });
});

describe('SessionAudit follows the agent\'s state for the connection', () => {
  const GRIP_A = 'A'.repeat(40);
  const GRIP_B = 'B'.repeat(40);
  const fakeLog = () => {
    const written: AuditRecord[] = [];
    return { written, log: { write: (r: AuditRecord) => (written.push(r), Promise.resolve()) } as unknown as AuditLog };
  };
  const line = (text: string) => Buffer.from(`${text}\n`, 'latin1');

  it('records a PKSIGN with the key the agent accepted and the hash set, past a line refused inside its INQUIRE', async () => {
    const { SessionAudit } = await import('../src/audit/sessionAudit.js');
    const { written, log } = fakeLog();
    const audit = new SessionAudit(log, '7', undefined);
    audit.commandBegins('SIGKEY', line(`SIGKEY ${GRIP_A}`));
    audit.commandEnds('ok', 'ok', undefined);
    // An ERR leaves the previous selection, as the agent does.
    audit.commandBegins('SIGKEY', line(`SIGKEY ${GRIP_B}`));
    audit.commandEnds('err', 'err', 67108881);
    audit.commandBegins('SETHASH', line(`SETHASH --hash=sha256 ${'00'.repeat(32)}`));
    audit.commandEnds('ok', 'ok', undefined);
    audit.commandBegins('PKSIGN', line('PKSIGN'));
    audit.refused('KEYINFO', 'deny', 'inquire', line('KEYINFO --list'));
    audit.commandEnds('ok', 'ok', undefined);
    expect(written.map(({ time: _t, ms: _m, ...r }) => r)).toEqual([
      { session: '7', verb: 'KEYINFO', decision: 'refused', rule: 'deny', during: 'inquire' },
      { session: '7', verb: 'PKSIGN', keygrip: GRIP_A, hash: 'sha256', decision: 'relayed', result: 'ok' },
    ]);
    // RESET clears the selection: a PKSIGN after it names no key.
    audit.commandBegins('RESET', line('RESET'));
    audit.commandEnds('ok', 'ok', undefined);
    audit.commandBegins('PKSIGN', line('PKSIGN'));
    audit.commandEnds('err', 'err', 67108881);
    expect(written.at(-1)).toMatchObject({ verb: 'PKSIGN', decision: 'relayed', result: 'err', code: 67108881 });
    expect(written.at(-1)).not.toHaveProperty('keygrip');
    // Commands that touch no key leave no record.
    audit.commandBegins('GETINFO', line('GETINFO version'));
    audit.commandEnds('ok', 'ok', undefined);
    expect(written).toHaveLength(3);
  });
});

describe('SessionAudit against a client that tries to make it lie', () => {
  const GRIP_A = 'A'.repeat(40);
  const GRIP_B = 'B'.repeat(40);
  const line = (text: string) => Buffer.from(`${text}\n`, 'latin1');
  async function session() {
    const { SessionAudit } = await import('../src/audit/sessionAudit.js');
    const written: AuditRecord[] = [];
    const log = { write: (r: AuditRecord) => (written.push(r), Promise.resolve()) } as unknown as AuditLog;
    return { audit: new SessionAudit(log, '9', undefined), written };
  }

  it('the hash is the one the agent accepted, read as the agent reads it', async () => {
    const { audit, written } = await session();
    const sign = () => {
      audit.commandBegins('PKSIGN', line('PKSIGN'));
      audit.commandEnds('ok', 'ok', undefined);
      return written.at(-1)!.hash;
    };
    audit.commandBegins('SETHASH', line(`SETHASH --hash=sha1 ${'00'.repeat(20)}`));
    audit.commandEnds('ok', 'ok', undefined);
    expect(sign()).toBe('sha1');
    // The agent matches names exactly: SHA256 is an ERR there, and what holds after an ERR is not claimed.
    audit.commandBegins('SETHASH', line(`SETHASH --hash=SHA256 ${'00'.repeat(32)}`));
    audit.commandEnds('err', 'err', 67109128);
    expect(sign()).toBeUndefined();
    audit.commandBegins('SETHASH', line(`SETHASH 08 ${'00'.repeat(32)}`));
    audit.commandEnds('ok', 'ok', undefined);
    expect(sign()).toBe('sha256');
  });

  it('a key use whose answer the proxy replaced (a line refused inside its INQUIRE) is still recorded', async () => {
    const { audit, written } = await session();
    audit.commandBegins('SIGKEY', line(`SIGKEY ${GRIP_A}`));
    audit.commandEnds('ok', 'ok', undefined);
    audit.commandBegins('PKSIGN', line('PKSIGN'));
    audit.refused('LEARN', 'keys', 'inquire', undefined);
    audit.commandEnds('refused', 'ok', undefined);
    expect(written.at(-1)).toMatchObject({ verb: 'PKSIGN', keygrip: GRIP_A, result: 'ok', replaced: true });
  });

  it('a refusal names a key only when the line names one; a flood is counted, not written line by line', async () => {
    const { audit, written } = await session();
    audit.commandBegins('HAVEKEY', line(`HAVEKEY ${GRIP_A} ${GRIP_B}`));
    audit.refused('HAVEKEY', 'keys', 'command', line(`HAVEKEY ${GRIP_A} ${GRIP_B}`));
    expect(written[0]).not.toHaveProperty('keygrip');
    for (let i = 0; i < 99; i++) audit.refused('UNKNOWN', 'keys', 'command', line('X'));
    expect(written).toHaveLength(20);
    audit.sessionEnds();
    expect(written.at(-1)).toMatchObject({ verb: 'ANY', decision: 'refused', rule: 'many', count: 80 });
  });
});
