/**
 * The size of an answer to an INQUIRE never reaches an inspector: a real actor streamed by `streamToInspector`
 * to a WebSocket endpoint of the test's, over a real loopback socket.
 */
import { once } from 'node:events';
import type net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { assign, createActor, setup } from 'xstate';
import { streamToInspector } from '../../src/inspect/stately.js';

type LineEvent =
  | { type: 'AGENT.INQUIRE'; keyword: string; bytes: number }
  | { type: 'CLIENT.COMMAND' | 'CLIENT.DATA' | 'CLIENT.END'; verb: string; bytes: number };

/** The session machine's shape where it matters here: `inquire` holds the open INQUIRE's keyword, '' when none. */
const inquiring = setup({ types: { context: {} as { inquire: string }, events: {} as LineEvent } }).createMachine({
  id: 'session',
  context: { inquire: '' },
  on: {
    'AGENT.INQUIRE': { actions: assign({ inquire: ({ event }) => event.keyword }) },
    'CLIENT.END': { actions: assign({ inquire: '' }) },
  },
});

let endpoint: WebSocketServer | undefined;
afterEach(async () => {
  for (const client of endpoint?.clients ?? []) client.terminate();
  await new Promise((r) => endpoint?.close(r));
});

interface Message {
  type: string;
  event?: { type: string; verb?: string; bytes?: number };
}

describe('inspector stream: sizes of INQUIRE answers', () => {
  it('client events carry no bytes while an INQUIRE is open, and keep them otherwise', async () => {
    endpoint = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(endpoint, 'listening');
    const received: Message[] = [];
    let sawBye: () => void;
    const bye = new Promise<void>((r) => (sawBye = r));
    endpoint.on('connection', (ws) =>
      ws.on('message', (data) => {
        const message = JSON.parse(data.toString()) as Message;
        received.push(message);
        if (message.type === '@xstate.snapshot' && message.event?.verb === 'BYE') sawBye();
      }),
    );
    const stream = streamToInspector(`ws://127.0.0.1:${(endpoint.address() as net.AddressInfo).port}`);
    const actor = createActor(inquiring, { inspect: stream.inspect }).start();
    actor.send({ type: 'CLIENT.COMMAND', verb: 'PKSIGN', bytes: 7 });
    actor.send({ type: 'AGENT.INQUIRE', keyword: 'PASSPHRASE', bytes: 19 });
    actor.send({ type: 'CLIENT.DATA', verb: 'D', bytes: 21 });
    actor.send({ type: 'CLIENT.END', verb: 'END', bytes: 4 });
    actor.send({ type: 'CLIENT.COMMAND', verb: 'BYE', bytes: 4 });
    await bye;
    stream.stop();

    const clientEvents = received.filter((m) => m.event?.type.startsWith('CLIENT.')).map((m) => `${m.type} ${m.event!.verb} ${m.event!.bytes}`);
    // Before the fix the D line's size (the passphrase's) went out with it: '... D 21'.
    expect(clientEvents).toEqual([
      '@xstate.event PKSIGN 7',
      '@xstate.snapshot PKSIGN 7',
      '@xstate.event D undefined',
      '@xstate.snapshot D undefined',
      '@xstate.event END undefined',
      '@xstate.snapshot END 4',
      '@xstate.event BYE 4',
      '@xstate.snapshot BYE 4',
    ]);
  });
});
