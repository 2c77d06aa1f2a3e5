/**
 * The connection dialed ahead of the next client, against a scripted agent: handed out only greeted and never
 * written to, replaced when taken, dropped and dialed again when the agent closes it or greets wrongly, and
 * closed for good at shutdown.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpareAgentConnection } from '../../src/session/spareConnection.js';
import { createScriptedAgent, type ScriptedAgent } from '../support/scriptedAgent.js';
import { until } from '../support/sessions.js';

let agent: ScriptedAgent;
let spare: SpareAgentConnection | undefined;
let logs: Array<{ msg: string; reason?: string; retryMs?: number }>;

function newSpare(): SpareAgentConnection {
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  spare = new SpareAgentConnection(agent.socket, 5_000, pino({ level: 'debug' }, destination));
  spare.start();
  return spare;
}

beforeEach(async () => {
  agent = await createScriptedAgent();
  logs = [];
});
afterEach(async () => {
  spare?.close();
  await agent.close();
});

/** Takes the spare once it is ready (it is ready as soon as the greeting has been read). */
async function taken(from: SpareAgentConnection) {
  let got: ReturnType<SpareAgentConnection['take']>;
  await until(() => (got = from.take()) !== undefined);
  return got!;
}

describe('the spare agent connection', () => {
  it('is handed out only once greeted, with the greeting the agent sent, and nothing written to it; a new one is dialed at once', async () => {
    const pool = newSpare();
    const first = await agent.nextConnection();
    expect(pool.take()).toBeUndefined();
    first.send('# a comment first\nOK Pleased to meet you\n');
    const got = await taken(pool);
    expect(got.received.toString('latin1')).toBe('# a comment first\nOK Pleased to meet you\n');
    expect(agent.journal.filter((e) => e.startsWith('recv'))).toEqual([]);
    // Taken whole: the same spare is not handed out twice, and its replacement is already on its way.
    expect(pool.take()).toBeUndefined();
    const second = await agent.nextConnection();
    second.send('OK second\n');
    expect((await taken(pool)).received.toString('latin1')).toBe('OK second\n');
    got.socket.destroy();
  });

  it('a greeting that is not OK is dropped, and another spare dialed', async () => {
    const pool = newSpare();
    (await agent.nextConnection()).send('ERR 67108865 General error\n');
    const next = await agent.nextConnection();
    expect(pool.take()).toBeUndefined();
    expect(logs).toContainEqual(expect.objectContaining({ msg: 'spare agent connection dropped', reason: 'not a plain greeting', retryMs: 100 }));
    next.send('OK\n');
    expect((await taken(pool)).received.toString('latin1')).toBe('OK\n');
  });

  it('an idle spare the agent closes (a restart) is dropped at once and dialed again', async () => {
    const pool = newSpare();
    const first = await agent.nextConnection();
    first.send('OK first\n');
    await until(() => pool.ready);
    first.end();
    const second = await agent.nextConnection();
    expect(logs).toContainEqual(expect.objectContaining({ reason: 'closed by the agent' }));
    second.send('OK second\n');
    expect((await taken(pool)).received.toString('latin1')).toBe('OK second\n');
  });

  it('an agent that is not there costs a dial at growing intervals, not a loop', async () => {
    await agent.close();
    newSpare();
    await until(() => logs.filter((r) => r.msg === 'spare agent connection dropped').length >= 3);
    expect(logs.slice(0, 3).map((r) => [r.reason, r.retryMs])).toEqual([
      ['ENOENT', 100],
      ['ENOENT', 200],
      ['ENOENT', 400],
    ]);
    agent = await createScriptedAgent();
  });

  it('closed for good: the spare held is closed, and none is dialed again', async () => {
    const pool = newSpare();
    const first = await agent.nextConnection();
    first.send('OK\n');
    await taken(pool).then((got) => got.socket.destroy());
    const second = await agent.nextConnection();
    pool.close();
    await second.closed;
    expect(pool.take()).toBeUndefined();
    expect(logs.filter((r) => r.msg === 'spare agent connection dropped')).toEqual([]);
  });
});
