// Stand-in for sshd's end of `ssh -R REMOTE:LOCAL` (see readmeRecipes.ts): listens on the Unix socket REMOTE and
// relays each connection to LOCAL, both ways, half-closes included. Usage: node socketRelay.mjs REMOTE LOCAL
import net from 'node:net';

const [remote, local] = process.argv.slice(2);
const open = new Set();
const server = net.createServer({ allowHalfOpen: true }, (client) => {
  const upstream = net.connect({ path: local, allowHalfOpen: true });
  for (const socket of [client, upstream]) {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
  }
  const fail = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', fail);
  upstream.on('error', fail);
  client.pipe(upstream);
  upstream.pipe(client);
});
server.listen(remote);
const stop = () => {
  for (const socket of open) socket.destroy();
  server.close(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
