/**
 * Faults at scale and against the real agent: gpg-agent SIGKILLed while a session is in each state with an
 * upstream (then restarted, the proxy untouched); 1,000 sessions of mixed faults after which file descriptors and
 * live actors are back to where they started; SIGTERM to the CLI with 50 commands in flight.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InspectionEvent } from 'xstate';
import { transitionRecorder } from '../../src/machineTools/trace.js';
import { RawClient } from '../support/assuanClient.js';
import { runCli, stderrMatch, stopCli } from '../support/cli.js';
import { createAgentHome, makeTempDir, type AgentHome } from '../support/gnupg.js';
import { sessionsDrained, startTestProxy, type TestProxy } from '../support/proxy.js';
import { createScriptedAgent, type ScriptedAgent } from '../support/scriptedAgent.js';
import { greetedSession, until, whileStopped } from '../support/sessions.js';

// Which of these the proxy sees first depends on timing: its read of the EOF, a reset, or its write of a line the
// client sent just as the agent died (EPIPE).
const AGENT_GONE = /^ERR 67125247 End of file <assuan-proxy> - gpg-agent closed the connection( before its greeting)? \((EOF|ECONNRESET|EPIPE)\)$/;

describe('gpg-agent SIGKILLed while a session is in each state with an upstream', () => {
  let agent: AgentHome;
  let proxy: TestProxy;
  const taken: string[] = [];

  beforeAll(async () => {
    agent = await createAgentHome();
    proxy = await startTestProxy({ upstream: agent.socket, inspect: transitionRecorder(({ key }) => taken.push(key)) });
  });
  afterAll(async () => {
    await proxy?.close();
    await agent?.cleanup();
  });

  const state = () => proxy.proxy.sessions()[0]?.state;
  async function greeted(): Promise<RawClient> {
    const client = await RawClient.connect(proxy.socket);
    expect(await client.readLine()).toMatch(/^OK Pleased/);
    return client;
  }

  const CASES: Array<[string, (pid: number) => Promise<RawClient>]> = [
    [
      'connecting.awaitingGreeting (the agent stopped before it greets)',
      async (pid) => {
        process.kill(pid, 'SIGSTOP');
        const before = taken.filter((k) => k === 'session.connecting.reaching.dialing|AGENT_CONNECTED').length;
        const client = await RawClient.connect(proxy.socket);
        await until(() => taken.filter((k) => k === 'session.connecting.reaching.dialing|AGENT_CONNECTED').length > before);
        return client;
      },
    ],
    ['ready', async () => greeted()],
    [
      'bufferingCommand',
      async () => {
        const client = await greeted();
        client.write('GETINF');
        await until(() => state() === 'bufferingCommand');
        return client;
      },
    ],
    [
      'waitingForAgent (the agent stopped with the request unread)',
      async (pid) => {
        const client = await greeted();
        process.kill(pid, 'SIGSTOP');
        client.write('GETINFO version\n');
        await until(() => state() === 'waitingForAgent');
        return client;
      },
    ],
    [
      'bufferingInquire',
      async () => {
        const client = await greeted();
        expect((await client.request('KEYWRAP_KEY --import')).at(-1)).toBe('OK');
        expect(await client.request('IMPORT_KEY')).toEqual(['INQUIRE KEYDATA']);
        client.write('D 0123\n');
        return client;
      },
    ],
  ];

  it.each(CASES)('%s: the client gets one ERR and a close; after a restart new sessions work', async (_, enter) => {
    const pid = await agent.pid();
    const client = await enter(pid);
    process.kill(pid, 'SIGKILL');
    const rest = await client.rest();
    // Before the greeting the client has had no line yet: the ERR takes the greeting's place.
    expect(rest.filter((l) => !l.startsWith('OK Pleased'))).toEqual([expect.stringMatching(AGENT_GONE)]);
    await client.closed;
    await sessionsDrained(proxy.proxy);
    await until(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    await agent.launch();
    const after = await greeted();
    expect(await after.request('GETINFO version')).toEqual([expect.stringMatching(/^D 2\./), 'OK']);
    after.destroy();
    await sessionsDrained(proxy.proxy);
  });
});

describe('1,000 sessions of mixed faults', () => {
  let scripted: ScriptedAgent;
  let proxy: TestProxy;
  let liveActors = 0;

  beforeAll(async () => {
    scripted = await createScriptedAgent();
    proxy = await startTestProxy({
      upstream: scripted.socket,
      closeGraceMs: 200,
      inspect: (event: InspectionEvent) => {
        if (!(event.actorRef as { id?: string }).id?.startsWith('session-')) return;
        if (event.type === '@xstate.actor') liveActors++;
        if (event.type === '@xstate.snapshot' && (event.snapshot as { status: string }).status === 'done') liveActors--;
      },
    });
  });
  afterAll(async () => {
    await proxy?.close();
    await scripted?.close();
  });

  const openDescriptors = () => fs.readdirSync('/proc/self/fd').length;

  /** One session each; every fault the proxy must survive, in turn. */
  const FAULTS: Array<[string, () => Promise<void>]> = [
    ['a normal command, then BYE', async () => {
      const { client, upstream } = await greetedSession(proxy.socket, scripted);
      client.write('NOP\nBYE\n');
      await upstream.readLine();
      upstream.send('OK\n');
      await upstream.readLine();
      upstream.send('OK closing connection\n');
      upstream.end();
      await client.rest();
    }],
    ['the client vanishing while idle', async () => {
      const { client, upstream } = await greetedSession(proxy.socket, scripted);
      client.destroy();
      await upstream.closed;
    }],
    ['the client vanishing mid-command', async () => {
      const { client, upstream } = await greetedSession(proxy.socket, scripted);
      client.write('PKSIGN\n');
      await upstream.readLine();
      client.destroy();
      await upstream.closed;
    }],
    ['the client vanishing mid-INQUIRE', async () => {
      const { client, upstream } = await greetedSession(proxy.socket, scripted);
      client.write('PKDECRYPT\n');
      await upstream.readLine();
      upstream.send('INQUIRE CIPHERTEXT\n');
      await client.readLine();
      client.write('D 12');
      client.destroy();
      await upstream.closed;
    }],
    ['the agent resetting mid-command', async () => {
      const { client, upstream } = await greetedSession(proxy.socket, scripted);
      client.write('PKSIGN\n');
      await upstream.readLine();
      upstream.destroy();
      await client.rest();
    }],
    ['the agent closing before its greeting', async () => {
      const client = await RawClient.connect(proxy.socket);
      const upstream = await scripted.nextConnection();
      upstream.end();
      await client.rest();
    }],
    ['the agent answering garbage', async () => {
      const { client, upstream } = await greetedSession(proxy.socket, scripted);
      client.write('NOP\n');
      await upstream.readLine();
      upstream.send('garbage\n');
      await client.rest();
    }],
    ['an over-long line, then EOF', async () => {
      const { client, upstream } = await greetedSession(proxy.socket, scripted);
      client.write(`NOP ${'x'.repeat(1100)}\n`);
      await client.response();
      client.socket.end();
      await upstream.closed;
      await client.closed;
    }],
    ['a malformed escape in an INQUIRE, then a reset', async () => {
      const { client, upstream } = await greetedSession(proxy.socket, scripted);
      client.write('PKDECRYPT\n');
      await upstream.readLine();
      upstream.send('INQUIRE CIPHERTEXT\n');
      await client.readLine();
      client.write('D 5%\nEND\n');
      expect(await upstream.readLine()).toBe('CAN');
      upstream.destroy();
      await client.rest();
    }],
    ['EOF in the middle of a line', async () => {
      const { client, upstream } = await greetedSession(proxy.socket, scripted);
      client.write('GETIN');
      client.socket.end();
      await upstream.closed;
      await client.closed;
    }],
  ];

  it('leave no file descriptor and no live actor behind', async () => {
    // Warm up once, so that lazily created handles (timers, the logger) are in the baseline.
    for (const [, run] of FAULTS) await run();
    await sessionsDrained(proxy.proxy);
    const baseline = openDescriptors();
    expect(liveActors).toBe(0);

    for (let i = 0; i < 1000; i++) await FAULTS[i % FAULTS.length]![1]();
    await sessionsDrained(proxy.proxy);
    await until(() => openDescriptors() <= baseline);
    expect(openDescriptors()).toBe(baseline);
    expect(liveActors).toBe(0);
    expect(proxy.proxy.sessionCount).toBe(0);
    const ended = proxy.logs.filter((r) => r.msg === 'session ended');
    expect(ended.length).toBe(1000 + FAULTS.length);
    console.info(`1,000 mixed-fault sessions: ${ended.filter((r) => r.outcome === 'failed').length} ended failed, the rest closed; fds ${baseline} → ${openDescriptors()}`);
  });
});

describe('SIGTERM with 50 commands in flight', () => {
  let agent: AgentHome;
  beforeAll(async () => {
    agent = await createAgentHome();
  });
  afterAll(async () => {
    await agent?.cleanup();
  });

  it('every in-flight command gets its whole answer before its session closes; the CLI exits 0', async () => {
    const dir = makeTempDir('term.');
    const run = runCli(['--listen', `${dir}/S.gpg-agent`, '--upstream', agent.socket, '--trace-transitions', '--log-format', 'json'], {});
    try {
      const socket = (await stderrMatch(run, /listening on (\S+)/))[1]!;
      const clients = await Promise.all(Array.from({ length: 50 }, () => RawClient.connect(socket)));
      for (const client of clients) expect(await client.readLine()).toMatch(/^OK Pleased/);
      const inFlight = () => (run.stdout().match(/"to":"command.waitingForAgent"/g) ?? []).length;
      await whileStopped(await agent.pid(), async () => {
        for (const client of clients) client.write('GETINFO version\n');
        await until(() => inFlight() >= 50);
        run.child.kill('SIGTERM');
        await until(() => run.stdout().includes('shutting down'));
      });
      const answers = await Promise.all(clients.map((client) => client.rest()));
      for (const lines of answers) expect(lines).toEqual([expect.stringMatching(/^D 2\./), 'OK']);
      expect(await run.exited).toBe(0);
      expect(fs.existsSync(`${dir}/S.gpg-agent`)).toBe(false);
    } finally {
      await stopCli(run);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
