/**
 * ConsentDesk: one prompt at a time in arrival order, decision windows, withdrawal. The prompt is a fake whose
 * verdicts the test hands out, the clock a number the test moves: nothing waits on real time. `settle()` runs
 * every pending promise callback (the desk uses no timers), so "not shown yet" is a fact, not a guess.
 */
import { describe, expect, it } from 'vitest';
import { ConsentDesk, type ConsentDecision, type ShowPrompt } from '../../src/consent/consentDesk.js';
import type { PromptVerdict } from '../../src/consent/agentPrompt.js';
import type { ConsentOperation, ConsentRequest } from '../../src/consent/consentRequest.js';

const GRIP_A = 'A'.repeat(40);
const GRIP_B = 'B'.repeat(40);

/** Every queued promise callback has run: setImmediate fires after the microtask queue is empty. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Shown {
  request: ConsentRequest;
  signal: AbortSignal;
  answer(verdict: PromptVerdict): void;
  fail(error: unknown): void;
}

function fakePrompts(): { show: ShowPrompt; shown: Shown[] } {
  const shown: Shown[] = [];
  const show: ShowPrompt = (request, signal) =>
    new Promise<PromptVerdict>((resolve, reject) => {
      shown.push({ request, signal, answer: resolve, fail: reject });
    });
  return { show, shown };
}

function fakeClock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

let sessions = 0;
function req(over: { operation?: ConsentOperation; keygrip?: string | undefined; caller?: string; id?: string } = {}): ConsentRequest {
  return {
    operation: over.operation ?? 'sign',
    sessionId: over.id ?? String(++sessions),
    keygrip: 'keygrip' in over ? over.keygrip : GRIP_A,
    userId: undefined,
    hash: undefined,
    caller: { key: over.caller ?? 'gpg/1000', text: over.caller ?? 'gpg (uid 1000)' },
    at: new Date(0),
  };
}

/** A request's decisions, in the order `decided` was called. */
function recorder() {
  const decisions: ConsentDecision[] = [];
  return { decisions, decided: (d: ConsentDecision) => void decisions.push(d) };
}

function setup(windows: Partial<Record<ConsentOperation, number>> = {}) {
  const prompts = fakePrompts();
  const clock = fakeClock();
  const desk = new ConsentDesk(prompts.show, windows, clock.now);
  /** Asks for `request`; its decisions are recorded. */
  const ask = (request: ConsentRequest) => {
    const r = recorder();
    const withdraw = desk.request(request, r.decided);
    return { request, decisions: r.decisions, withdraw };
  };
  return { desk, shown: prompts.shown, clock, ask };
}

describe('one prompt at a time, in arrival order', () => {
  it('a second request waits until the first is decided, then is shown', async () => {
    const { shown, ask, desk } = setup();
    const first = ask(req({ id: 'first' }));
    const second = ask(req({ id: 'second', keygrip: GRIP_B }));
    await settle();
    expect(shown.map((s) => s.request.sessionId)).toEqual(['first']);
    expect(desk.pending.map((r) => r.sessionId)).toEqual(['first', 'second']);
    shown[0]!.answer('approved');
    await settle();
    expect(first.decisions).toEqual([{ approved: true, by: 'prompt' }]);
    expect(second.decisions).toEqual([]);
    expect(shown.map((s) => s.request.sessionId)).toEqual(['first', 'second']);
    expect(desk.pending.map((r) => r.sessionId)).toEqual(['second']);
    shown[1]!.answer('refused');
    await settle();
    expect(second.decisions).toEqual([{ approved: false, verdict: 'refused' }]);
    expect(desk.pending).toEqual([]);
  });

  it('keeps arrival order across many requests, whatever the verdicts', async () => {
    const { shown, ask } = setup();
    const verdicts: PromptVerdict[] = ['refused', 'approved', 'timedOut', 'unavailable', 'approved', 'refused'];
    const asked = verdicts.map((_, i) => ask(req({ id: `s${i}`, caller: `caller${i}` })));
    for (let i = 0; i < verdicts.length; i++) {
      await settle();
      expect(shown).toHaveLength(i + 1);
      expect(shown[i]!.request.sessionId).toBe(`s${i}`);
      // Nothing later has been decided meanwhile.
      for (const later of asked.slice(i)) expect(later.decisions).toEqual([]);
      shown[i]!.answer(verdicts[i]!);
    }
    await settle();
    expect(shown).toHaveLength(verdicts.length);
    asked.forEach((a, i) => expect(a.decisions).toEqual([verdicts[i] === 'approved' ? { approved: true, by: 'prompt' } : { approved: false, verdict: verdicts[i] }]));
  });

  it('a request made while no prompt is up is shown at once', async () => {
    const { shown, ask } = setup();
    ask(req());
    // show() is called synchronously by request(), before any callback runs.
    expect(shown).toHaveLength(1);
  });

  it('decided is called once only', async () => {
    const { shown, ask } = setup();
    const a = ask(req());
    await settle();
    shown[0]!.answer('approved');
    shown[0]!.answer('refused');
    await settle();
    expect(a.decisions).toEqual([{ approved: true, by: 'prompt' }]);
  });

  it('a request made from inside a decided callback still waits its turn: never two prompts up at once', async () => {
    // queue: A (shown), B, C (same use as A: the window covers it), D. When A is approved, C is decided by the
    // window while the queue is walked; its session asks again at once (E) from inside that callback.
    const { shown, desk } = setup({ sign: 300 });
    const order: string[] = [];
    const decide = (name: string, then?: () => void) => (d: ConsentDecision) => {
      order.push(`${name}:${d.approved ? d.by : d.verdict}`);
      then?.();
    };
    desk.request(req({ id: 'A', caller: 'x' }), decide('A'));
    desk.request(req({ id: 'B', caller: 'y' }), decide('B'));
    desk.request(req({ id: 'C', caller: 'x' }), decide('C', () => desk.request(req({ id: 'E', caller: 'z' }), decide('E'))));
    desk.request(req({ id: 'D', caller: 'w' }), decide('D'));
    await settle();
    expect(shown.map((s) => s.request.sessionId)).toEqual(['A']);
    shown[0]!.answer('approved');
    await settle();
    // B is up; C was granted by the window; D and E wait behind B, in that order.
    expect(order).toEqual(['A:prompt']);
    expect(shown.map((s) => s.request.sessionId)).toEqual(['A', 'B']);
    expect(desk.pending.map((r) => r.sessionId)).toEqual(['B', 'C', 'D']);
    shown[1]!.answer('refused');
    await settle();
    expect(order).toEqual(['A:prompt', 'B:refused', 'C:window']);
    expect(shown.map((s) => s.request.sessionId)).toEqual(['A', 'B', 'D']);
    expect(desk.pending.map((r) => r.sessionId)).toEqual(['D', 'E']);
    shown[2]!.answer('refused');
    await settle();
    expect(shown.map((s) => s.request.sessionId)).toEqual(['A', 'B', 'D', 'E']);
    shown[3]!.answer('approved');
    await settle();
    expect(order).toEqual(['A:prompt', 'B:refused', 'C:window', 'D:refused', 'E:prompt']);
  });

  it('a window-granted request whose callback asks again right away: the new request is not shown over the next one', async () => {
    const { shown, desk } = setup({ sign: 300 });
    const events: string[] = [];
    desk.request(req({ id: 'A', caller: 'x' }), () => events.push('A'));
    // B: covered by A's window once A is approved; its callback asks anew (F) at once.
    desk.request(req({ id: 'B', caller: 'x' }), () => {
      events.push('B');
      desk.request(req({ id: 'F', caller: 'f' }), () => events.push('F'));
    });
    desk.request(req({ id: 'C', caller: 'c' }), () => events.push('C'));
    await settle();
    shown[0]!.answer('approved');
    await settle();
    expect(events).toEqual(['A', 'B']);
    // Exactly one prompt is up (C, the older), not C and F together.
    const unanswered = shown.filter((s) => s.request.sessionId !== 'A');
    expect(unanswered.map((s) => s.request.sessionId)).toEqual(['C']);
    expect(desk.pending.map((r) => r.sessionId)).toEqual(['C', 'F']);
    unanswered[0]!.answer('refused');
    await settle();
    expect(shown.map((s) => s.request.sessionId)).toEqual(['A', 'C', 'F']);
  });

  it('a prompt that fails (rejects) is a refusal as unavailable, and the prompts after it are still shown', async () => {
    const { shown, ask } = setup();
    const a = ask(req({ id: 'A' }));
    const b = ask(req({ id: 'B' }));
    await settle();
    shown[0]!.fail(new Error('socket gone'));
    await settle();
    expect(a.decisions).toEqual([{ approved: false, verdict: 'unavailable' }]);
    expect(shown.map((s) => s.request.sessionId)).toEqual(['A', 'B']);
    shown[1]!.answer('approved');
    await settle();
    expect(b.decisions).toEqual([{ approved: true, by: 'prompt' }]);
  });
  it('a prompt that throws at once is a refusal as unavailable, and the next request is shown', async () => {
    let calls = 0;
    const decisions: ConsentDecision[] = [];
    const desk = new ConsentDesk(
      () => {
        calls++;
        if (calls === 1) throw new Error('no socket');
        return Promise.resolve('approved');
      },
      {},
      () => 0,
    );
    desk.request(req(), (d) => decisions.push(d));
    desk.request(req(), (d) => decisions.push(d));
    await settle();
    expect(calls).toBe(2);
    expect(decisions).toEqual([
      { approved: false, verdict: 'unavailable' },
      { approved: true, by: 'prompt' },
    ]);
  });
});

describe('decision windows', () => {
  it('an approved sign covers the same caller, key and operation until its seconds pass, counted from the approval', async () => {
    const { shown, ask, clock } = setup({ sign: 300 });
    ask(req());
    await settle();
    clock.advance(5_000); // the person took 5 s
    shown[0]!.answer('approved');
    await settle();
    clock.advance(299_999);
    const within = ask(req());
    expect(within.decisions).toEqual([{ approved: true, by: 'window' }]);
    expect(shown).toHaveLength(1);
    clock.advance(1); // exactly 300 s after the approval: closed
    const after = ask(req());
    await settle();
    expect(after.decisions).toEqual([]);
    expect(shown).toHaveLength(2);
  });

  it('an approval of a use whose key is not known opens no window: the next such use is asked again', async () => {
    const { shown, ask } = setup({ sign: 300 });
    ask(req({ keygrip: undefined }));
    await settle();
    shown[0]!.answer('approved');
    await settle();
    const again = ask(req({ keygrip: undefined }));
    await settle();
    expect(again.decisions).toEqual([]);
    expect(shown).toHaveLength(2);
  });

  it('a card key opens a window only as the plain reference approved, compared exactly', async () => {
    const { shown, ask } = setup({ auth: 300 });
    const card = (cardKey: string) => ({ ...req({ operation: 'auth', keygrip: undefined }), cardKey });
    ask(card('OPENPGP.3'));
    await settle();
    shown[0]!.answer('approved');
    await settle();
    expect(ask(card('OPENPGP.3')).decisions).toEqual([{ approved: true, by: 'window' }]);
    expect(ask(card('OPENPGP.1')).decisions).toEqual([]);
    await settle();
    shown[1]!.answer('refused');
    await settle();
    // The forms the prompt cannot show as they are (a keygrip prefix with a suffix, …) are asked every time.
    ask(card('not a plain key reference'));
    await settle();
    shown[2]!.answer('approved');
    await settle();
    expect(ask(card('not a plain key reference')).decisions).toEqual([]);
  });

  it('a window never covers another key, another caller, another operation, or a request with no key', async () => {
    const { shown, ask } = setup({ sign: 300, decrypt: 300, auth: 300 });
    const first = ask(req());
    await settle();
    shown[0]!.answer('approved');
    await settle();
    expect(first.decisions).toEqual([{ approved: true, by: 'prompt' }]);
    const others = [req({ keygrip: GRIP_B }), req({ caller: 'ssh (uid 1000)' }), req({ operation: 'decrypt' }), req({ operation: 'auth' }), req({ keygrip: undefined }), req({ keygrip: GRIP_A.toLowerCase() })];
    for (const [i, other] of others.entries()) {
      const asked = ask(other);
      await settle();
      expect(asked.decisions, `request ${i}`).toEqual([]);
      expect(shown, `request ${i}`).toHaveLength(i + 2);
      shown[i + 1]!.answer('refused');
      await settle();
      expect(asked.decisions).toEqual([{ approved: false, verdict: 'refused' }]);
    }
    // The approved use itself is still covered.
    expect(ask(req()).decisions).toEqual([{ approved: true, by: 'window' }]);
  });

  it('the caller key, not its text, groups requests', async () => {
    const { shown, desk } = setup({ sign: 300 });
    const base = req();
    desk.request({ ...base, caller: { key: 'K', text: 'same text' } }, () => {});
    await settle();
    shown[0]!.answer('approved');
    await settle();
    const decisions: ConsentDecision[] = [];
    desk.request({ ...base, caller: { key: 'K', text: 'other text' } }, (d) => decisions.push(d));
    desk.request({ ...base, caller: { key: 'L', text: 'same text' } }, (d) => decisions.push(d));
    await settle();
    expect(decisions).toEqual([{ approved: true, by: 'window' }]);
    expect(shown).toHaveLength(2);
  });

  it('window 0 (and no window given) asks every time', async () => {
    for (const windows of [{ sign: 0 }, {}]) {
      const { shown, ask } = setup(windows);
      for (let i = 0; i < 3; i++) {
        const asked = ask(req());
        await settle();
        expect(shown).toHaveLength(i + 1);
        shown[i]!.answer('approved');
        await settle();
        expect(asked.decisions).toEqual([{ approved: true, by: 'prompt' }]);
      }
    }
  });

  it("one operation's window does not open another's", async () => {
    const { shown, ask } = setup({ decrypt: 300 });
    ask(req({ operation: 'sign' }));
    await settle();
    shown[0]!.answer('approved');
    await settle();
    // sign has no window: asked again.
    ask(req({ operation: 'sign' }));
    await settle();
    expect(shown).toHaveLength(2);
  });

  it('a request queued behind an approval of the same use is granted by its window without a prompt', async () => {
    const { shown, ask, desk } = setup({ decrypt: 60 });
    const first = ask(req({ operation: 'decrypt', id: 'first' }));
    const same = ask(req({ operation: 'decrypt', id: 'same' }));
    const otherKey = ask(req({ operation: 'decrypt', keygrip: GRIP_B, id: 'otherKey' }));
    await settle();
    expect(desk.pending.map((r) => r.sessionId)).toEqual(['first', 'same', 'otherKey']);
    shown[0]!.answer('approved');
    await settle();
    expect(first.decisions).toEqual([{ approved: true, by: 'prompt' }]);
    expect(same.decisions).toEqual([{ approved: true, by: 'window' }]);
    expect(otherKey.decisions).toEqual([]);
    expect(shown.map((s) => s.request.sessionId)).toEqual(['first', 'otherKey']);
  });

  it.each([
    [9_999, true],
    [10_000, false],
  ])('a request queued behind another prompt: the window counts when its turn comes (%i ms later: granted %s)', async (waited, granted) => {
    const { shown, ask, clock } = setup({ sign: 10 });
    ask(req({ id: 'a' }));
    const blocker = ask(req({ id: 'blocker', keygrip: GRIP_B }));
    const late = ask(req({ id: 'late' }));
    await settle();
    shown[0]!.answer('approved');
    await settle();
    // a's window opened now; late waits behind blocker.
    expect(shown.map((s) => s.request.sessionId)).toEqual(['a', 'blocker']);
    expect(late.decisions).toEqual([]);
    clock.advance(waited);
    shown[1]!.answer('refused');
    await settle();
    expect(blocker.decisions).toEqual([{ approved: false, verdict: 'refused' }]);
    if (granted) {
      expect(late.decisions).toEqual([{ approved: true, by: 'window' }]);
      expect(shown).toHaveLength(2);
    } else {
      expect(late.decisions).toEqual([]);
      expect(shown.map((s) => s.request.sessionId)).toEqual(['a', 'blocker', 'late']);
    }
  });

  it.each<Exclude<PromptVerdict, 'approved'>>(['refused', 'timedOut', 'unavailable'])('%s passes through as not approved, and opens no window', async (verdict) => {
    const { shown, ask } = setup({ sign: 300 });
    const first = ask(req());
    const queued = ask(req());
    await settle();
    shown[0]!.answer(verdict);
    await settle();
    expect(first.decisions).toEqual([{ approved: false, verdict }]);
    // The same use queued behind it is asked, not granted.
    expect(queued.decisions).toEqual([]);
    expect(shown).toHaveLength(2);
    shown[1]!.answer(verdict);
    await settle();
    expect(queued.decisions).toEqual([{ approved: false, verdict }]);
    const again = ask(req());
    await settle();
    expect(again.decisions).toEqual([]);
    expect(shown).toHaveLength(3);
  });
});

describe('withdrawal', () => {
  it('a queued request withdrawn is never shown and never decided', async () => {
    const { shown, ask, desk } = setup();
    const first = ask(req({ id: 'first' }));
    const gone = ask(req({ id: 'gone' }));
    const third = ask(req({ id: 'third' }));
    await settle();
    gone.withdraw();
    expect(desk.pending.map((r) => r.sessionId)).toEqual(['first', 'third']);
    shown[0]!.answer('approved');
    await settle();
    expect(shown.map((s) => s.request.sessionId)).toEqual(['first', 'third']);
    shown[1]!.answer('approved');
    await settle();
    expect(first.decisions).toHaveLength(1);
    expect(third.decisions).toHaveLength(1);
    expect(gone.decisions).toEqual([]);
    // Withdrawing again, or after all is over, changes nothing.
    gone.withdraw();
    first.withdraw();
    expect(desk.pending).toEqual([]);
  });

  it('a queued request withdrawn is not granted by a window either', async () => {
    const { shown, ask } = setup({ sign: 300 });
    ask(req({ id: 'first' }));
    const gone = ask(req({ id: 'gone' }));
    await settle();
    gone.withdraw();
    shown[0]!.answer('approved');
    await settle();
    expect(gone.decisions).toEqual([]);
  });

  it('a prompt withdrawn while up: its signal aborts, decided is never called, the next is shown only once it is down', async () => {
    const { shown, ask, desk } = setup({ sign: 300 });
    const up = ask(req({ id: 'up' }));
    const next = ask(req({ id: 'next', keygrip: GRIP_B }));
    await settle();
    expect(shown[0]!.signal.aborted).toBe(false);
    up.withdraw();
    expect(shown[0]!.signal.aborted).toBe(true);
    await settle();
    // The withdrawn prompt has not come down yet: nothing shown over it.
    expect(shown).toHaveLength(1);
    expect(next.decisions).toEqual([]);
    // It comes down (promptThroughAgent answers timedOut once aborted); even an approval that raced the withdrawal
    // is not taken: no decision, no window.
    shown[0]!.answer('approved');
    await settle();
    expect(up.decisions).toEqual([]);
    expect(shown.map((s) => s.request.sessionId)).toEqual(['up', 'next']);
    expect(shown[1]!.signal.aborted).toBe(false);
    shown[1]!.answer('refused');
    await settle();
    expect(next.decisions).toEqual([{ approved: false, verdict: 'refused' }]);
    // No window was opened by the withdrawn approval.
    ask(req({ id: 'again' }));
    await settle();
    expect(shown.map((s) => s.request.sessionId)).toEqual(['up', 'next', 'again']);
    expect(desk.pending.map((r) => r.sessionId)).toEqual(['again']);
  });

  it('withdrawing a decided request does not abort a later prompt', async () => {
    const { shown, ask } = setup();
    const a = ask(req({ id: 'a' }));
    await settle();
    shown[0]!.answer('refused');
    await settle();
    ask(req({ id: 'b' }));
    await settle();
    a.withdraw();
    expect(shown[1]!.signal.aborted).toBe(false);
  });

  it('a request granted by a window at once returns a harmless withdraw', async () => {
    const { shown, ask } = setup({ auth: 30 });
    ask(req({ operation: 'auth' }));
    await settle();
    shown[0]!.answer('approved');
    await settle();
    const granted = ask(req({ operation: 'auth' }));
    expect(granted.decisions).toEqual([{ approved: true, by: 'window' }]);
    expect(() => granted.withdraw()).not.toThrow();
  });
});
