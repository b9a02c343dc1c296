// fetch through the layer: layer.dispatcher() is an undici Dispatcher (install the `undici` package next to
// sockguard) whose connections are the layer's.
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { SocketLayer } from 'sockguard';

const layer = new SocketLayer({ appId: 'examples', policy: fileURLToPath(new URL('./policy.json', import.meta.url)) });
const dispatcher = layer.dispatcher();

const server = http.createServer((req, res) => res.end(JSON.stringify({ path: req.url }))).listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const { port } = server.address();

const res = await fetch(`http://127.0.0.1:${port}/hello`, { dispatcher });
console.log(res.status, await res.json());

try {
  await fetch('http://10.0.0.1/', { dispatcher });
} catch (err) {
  console.log('denied:', err.cause?.code, err.cause?.rule); // EACCES private, before anything is sent
}

await dispatcher.close();
server.close();
await layer.close();
