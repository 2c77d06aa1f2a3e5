/** The start-up warm-up follows the machine: it goes through every state a gpg session takes, and nothing it sends is rejected. */
import { describe, expect, it } from 'vitest';
import { sessionMachine } from '../machines/session.js';
import { warmUpSessionMachine } from '../src/machineTools/warmUp.js';

describe('warming the session machine at start', () => {
  it('drives throwaway actors through the paths of a gpg session, with no event rejected', () => {
    const { statesVisited, rejectedEvents } = warmUpSessionMachine(sessionMachine, 2);
    expect(rejectedEvents).toBe(0);
    expect([...statesVisited].sort()).toEqual([
      'bufferingInquire.acknowledging',
      'bufferingInquire.answering',
      'closed',
      'closing',
      'connecting.awaitingGreeting',
      'connecting.reaching.dialing',
      'ready',
      'sendingToAgent',
      'sendingToClient',
      'waitingForAgent',
    ]);
  });
});
