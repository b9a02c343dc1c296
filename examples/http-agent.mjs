// node:http through the layer: layer.httpAgent() is a keep-alive http.Agent whose connections are the layer's
// sockets, so every request is vetted, metered and reclaimed.
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { SocketLayer } from 'sockguard';

const layer = new SocketLayer({ appId: 'examples', policy: fileURLToPath(new URL('./policy.json', import.meta.url)) });
const agent = layer.httpAgent({ keepAlive: true });

const server = http.createServer((req, res) => res.end(`hello ${req.url}`)).listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const { port } = server.address();

function get(path) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(`${res.statusCode} ${body}`));
      })
      .on('error', reject);
  });
}

console.log(await get('/one'));
console.log(await get('/two')); // the same connection, kept alive
console.log(layer.usage());

agent.destroy();
server.close();
await layer.close();
