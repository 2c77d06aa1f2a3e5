/**
 * How each machine is drawn for people (see diagramViews.ts): which composite states the lifecycle view collapses
 * into one box, which concerns get a detail view of their own. Names states by path; a name that no longer exists
 * fails `npm run diagrams` and the diagram tests, so this file follows the machines.
 */
import type { ViewSpec } from './diagramViews.js';

export const VIEW_SPECS: Record<string, ViewSpec> = {
  session: {
    // Left to right: its two clusters stacked, a drawing about 2:1 that fits a screen (the live view).
    lifecycle: { collapse: ['connecting', 'held', 'command.bufferingInquire'], direction: 'LR' },
    details: [
      { name: 'connecting', title: 'session: connecting to gpg-agent', focus: 'connecting' },
      { name: 'awaiting-command', title: 'session: awaiting a command', focus: 'awaitingCommand' },
      { name: 'command', title: 'session: a command in flight', focus: 'command', collapse: ['command.bufferingInquire'] },
      { name: 'inquire', title: "session: the client's answer to an INQUIRE", focus: 'command.bufferingInquire' },
      { name: 'held', title: 'session: a command held for the person (--confirm) or a crypto slot (--max-crypto)', focus: 'held' },
    ],
    failures: ['fatal'],
  },
  server: {
    lifecycle: {},
    failures: ['failed'],
  },
  link: {
    lifecycle: {},
    failures: ['failed'],
  },
};
