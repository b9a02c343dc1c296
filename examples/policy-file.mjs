// An operator policy file (policy.json beside this file): production's rules, loopback opened for a local
// server, one more range denied. check() answers without connecting; connect() enforces the same verdicts.
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { SocketLayer } from 'sockguard';

const layer = new SocketLayer({ appId: 'examples', policy: fileURLToPath(new URL('./policy.json', import.meta.url)) });

console.log(await layer.check('10.0.0.1', 80)); // { allowed: false, rule: 'private', ... }
console.log(await layer.check('93.184.215.14', 443)); // { allowed: false, rule: 'blocked-vendor', ... }

const server = net.createServer((c) => c.pipe(c)).listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const { port } = server.address();
console.log(await layer.check('127.0.0.1', port)); // { allowed: true, ... }: the operator's allow entry

const socket = layer.connect(port, '127.0.0.1', () => socket.end('hello over loopback'));
socket.on('data', (d) => console.log('echo:', d.toString()));
socket.on('close', async () => {
  console.log(layer.usage());
  server.close();
  await layer.close();
});

const denied = layer.connect(80, '10.0.0.1');
denied.on('error', (err) => console.log('denied:', err.code, err.rule));
