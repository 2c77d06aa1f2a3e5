// A stand-in for a transport such as `ssh -T host cmd`: runs the command given after its own options with piped
// stdio and relays its stdin, stdout and stderr, as ssh does over the network. Killing this process ends the
// command's stdin (the far side sees the link end) without killing the command itself.
//   --noise TEXT   printed on stdout first, as a motd or kubectl's warnings would be
import { spawn } from 'node:child_process';

const args = process.argv.slice(2);
let noise = '';
while (args[0]?.startsWith('--')) {
  const flag = args.shift();
  if (flag === '--noise') noise = args.shift() ?? '';
}
if (noise) process.stdout.write(noise);
const child = spawn(args[0], args.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
process.stdin.pipe(child.stdin);
child.stdout.pipe(process.stdout);
child.stderr.pipe(process.stderr);
child.stdin.on('error', () => {});
process.stdout.on('error', () => {});
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal ? 128 : 1);
});
