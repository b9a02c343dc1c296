// A worker thread with its own layer: each thread runs its own native loop, and each layer has its own ledger,
// so the worker's traffic is billed to its app and not to the main thread's.
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SocketLayer } from 'sockguard';

const policy = fileURLToPath(new URL('./policy.json', import.meta.url));

if (isMainThread) {
  const server = net.createServer((c) => c.pipe(c)).listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const worker = new Worker(new URL(import.meta.url), { workerData: { port: server.address().port } });
  worker.on('message', (usage) => console.log('worker usage:', usage));
  worker.on('error', (err) => {
    console.error(err);
    process.exitCode = 1;
  });
  worker.on('exit', () => server.close());
} else {
  const layer = new SocketLayer({ appId: 'worker', policy });
  const socket = layer.connect(workerData.port, '127.0.0.1', () => socket.end('ping from a worker'));
  socket.on('data', (d) => console.log('worker received:', d.toString()));
  socket.on('close', async () => {
    parentPort.postMessage(layer.usage());
    await layer.close();
  });
}
