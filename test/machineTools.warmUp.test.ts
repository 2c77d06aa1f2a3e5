/** The start-up warm-up follows the machine: it goes through every state a gpg session takes, and nothing it sends is rejected. */
import { describe, expect, it } from 'vitest';
import { sessionMachine } from '../machines/session.js';
import { warmUpSessionMachine } from '../src/machineTools/warmUp.js';

describe('warming the session machine at start', () => {
  it('drives throwaway actors through the paths of a gpg session, with no event rejected', () => {
    const { statesVisited, rejectedEvents } = warmUpSessionMachine(sessionMachine, 2);
    expect(rejectedEvents).toBe(0);
    // sendingToAgent is not among them: a session enters it only when the agent's socket is full.
    expect([...statesVisited].sort()).toEqual([
      'awaitingCommand.ready',
      'closed',
      'closing',
      'command.bufferingInquire.acknowledging',
      'command.bufferingInquire.answering',
      'command.sendingToClient',
      'command.waitingForAgent',
      'connecting.awaitingGreeting',
      'connecting.reaching.dialing',
    ]);
  });
});
