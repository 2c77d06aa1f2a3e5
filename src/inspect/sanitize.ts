/**
 * What may leave the process towards an inspector. Events and context are already free of payload by design
 * (they carry verbs, kinds and byte counts); these functions enforce it, so a field added later cannot leak by
 * accident: numbers, booleans and null pass, strings pass only under the names below (whose values are our own
 * fixed vocabularies or our own messages), and anything else is dropped.
 */
const STRING_FIELDS: ReadonlySet<string> = new Set([
  'type', // event type
  'sessionId',
  'command', // verb of the last command (fixed vocabulary; UNKNOWN otherwise)
  'verb',
  'kind',
  'keyword', // status or INQUIRE keyword (fixed vocabulary)
  'inquire',
  'owedAnswer',
  'code', // errno name, e.g. ECONNREFUSED
  'reason',
  'startFailure', // the server's own message about its listen path
  'refusedBy', // the policy rule that refused a line: deny, allow, keys or restricted
]);

const MAX_DEPTH = 4;

/**
 * The size of an answer to an INQUIRE can be a secret's size (a passphrase, a PIN, key data). While a session
 * has an INQUIRE open (its context's `inquire` is not empty), the client's events leave without their `bytes`
 * field. The session runtime already leaves it out for secret inquiries; this holds whatever it does. The
 * check is made when the actor reports the event, before the inspector library defers anything.
 */
export function withoutInquirySizes<T extends { type: string; actorRef?: unknown; snapshot?: unknown; event?: unknown }>(inspection: T): T {
  if (inspection.type !== '@xstate.event' && inspection.type !== '@xstate.snapshot') return inspection;
  const event = inspection.event as { type?: unknown; bytes?: unknown } | undefined;
  if (typeof event?.type !== 'string' || !event.type.startsWith('CLIENT.') || !('bytes' in event)) return inspection;
  const current = (inspection.actorRef as { getSnapshot?: () => unknown } | undefined)?.getSnapshot?.();
  if (!inquiryOpen(inspection.snapshot) && !inquiryOpen(current)) return inspection;
  const { bytes: _hidden, ...rest } = event;
  return { ...inspection, event: rest };
}

function inquiryOpen(snapshot: unknown): boolean {
  const inquire = (snapshot as { context?: { inquire?: unknown } } | undefined)?.context?.inquire;
  return typeof inquire === 'string' && inquire !== '';
}

export function sanitizeRecord(value: unknown, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof value !== 'object' || value === null || depth > MAX_DEPTH) return out;
  for (const [key, field] of Object.entries(value)) {
    if (typeof field === 'number' || typeof field === 'boolean' || field === null) out[key] = field;
    else if (typeof field === 'string' && STRING_FIELDS.has(key)) out[key] = field;
    else if (typeof field === 'object' && !Array.isArray(field) && !Buffer.isBuffer(field) && !ArrayBuffer.isView(field)) {
      out[key] = sanitizeRecord(field, depth + 1);
    }
  }
  return out;
}

/** An event as an inspector may see it: its type and the allowed scalar fields. */
export function sanitizeEvent<T extends { type: string }>(event: T): T {
  return { ...sanitizeRecord(event), type: event.type } as T;
}

export function sanitizeContext<T>(context: T): T {
  return sanitizeRecord(context) as T;
}
