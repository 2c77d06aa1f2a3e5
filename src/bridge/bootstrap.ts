/**
 * How the client end gets to the far side with nothing installed there but Node: the agent end appends a `node`
 * command to the transport command, whose only argument of substance is a tiny loader given as a `data:` URL. The
 * loader reads the client end's code (the single-file build, sent right after on the transport's stdin), runs it
 * with the arguments sent beside it, and leaves the rest of stdin to it: the link.
 *
 * The loader's URL is percent-encoded down to letters, digits, `%` and `-_.~:/,=`, so it passes unchanged through a
 * remote shell (`ssh HOST cmd…` joins its words for `sh -c`) as well as through `kubectl exec`/`docker exec`, which
 * run the words directly.
 */
import { CODE_HEADER } from './handshake.js';

const LOADER = `
const { stdin } = process;
const header = ${JSON.stringify(`${CODE_HEADER} `)};
let held = Buffer.alloc(0);
const sizes = await new Promise((resolve, reject) => {
  const take = (chunk) => {
    held = Buffer.concat([held, chunk]);
    const end = held.indexOf(10);
    if (end < 0) return;
    const [code, args] = held.subarray(header.length, end).toString().split(' ').map(Number);
    if (held.length < end + 1 + code + args) return;
    stdin.off('data', take);
    stdin.pause();
    resolve({ start: end + 1, code, args });
  };
  stdin.on('data', take);
  stdin.once('end', () => reject(new Error('the agent end sent no code')));
});
const code = held.subarray(sizes.start, sizes.start + sizes.code);
const args = JSON.parse(held.subarray(sizes.start + sizes.code, sizes.start + sizes.code + sizes.args).toString());
const rest = held.subarray(sizes.start + sizes.code + sizes.args);
if (rest.length > 0) stdin.unshift(rest);
process.argv.splice(1, Infinity, 'assuan-proxy.mjs', ...args);
await import('data:text/javascript;base64,' + code.toString('base64'));
`;

/** The words to append to the transport command: they start the client end on the far side. */
export function clientEndCommand(node = 'node'): string[] {
  return [node, `--import=data:text/javascript,${shellSafeEncode(LOADER)}`, '--eval=0'];
}

function shellSafeEncode(text: string): string {
  return [...Buffer.from(text, 'utf8')]
    .map((byte) => {
      const c = String.fromCharCode(byte);
      return /[A-Za-z0-9\-_.~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    })
    .join('');
}
