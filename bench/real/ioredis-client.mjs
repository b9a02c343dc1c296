// ioredis workloads against redis-server.
//   node ioredis-client.mjs <pipeline|large> arm=net|sockguard host=H port=P ...
// pipeline: batches of `pairs` SET+GET pairs (64 B values), sent in pipelines of `perPipeline` pairs, one
// pipeline in flight; large: batches of `gets` sequential GETs of one `valueBytes` value (set once before).
// `sockguard` injects the socket through ioredis's `Connector` option: a connector that returns a sockguard
// Duplex where ioredis's StandaloneConnector returns net.createConnection().
import { createRequire } from 'node:module';
import { fail, finish, guard, layerFor, parseArgs, runBatches, tcpConnect, watchdog } from './common.mjs';

guard();
const require = createRequire(import.meta.url);
const { default: Redis, AbstractConnector } = require('ioredis');
const o = { pairs: 20000, perPipeline: 1000, valueBytes: 1 << 20, gets: 64, ...parseArgs() };
const layer = await layerFor(o);

/** StandaloneConnector's contract: resolve with the stream on the next tick, remember its first error. */
class SockguardConnector extends AbstractConnector {
  constructor(options) {
    super(options.disconnectTimeout);
    this.options = options;
  }

  connect() {
    this.connecting = true;
    return new Promise((resolve, reject) => {
      process.nextTick(() => {
        if (!this.connecting) {
          reject(new Error('Connection is closed.'));
          return;
        }
        try {
          this.stream = tcpConnect(layer, { host: this.options.host, port: this.options.port });
        } catch (err) {
          reject(err);
          return;
        }
        this.stream.once('error', (err) => { this.firstError = err; });
        resolve(this.stream);
      });
    });
  }
}

const redis = new Redis({
  host: o.host,
  port: o.port,
  lazyConnect: true,
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
  ...(layer ? { Connector: SockguardConnector } : {}),
});
redis.on('error', fail);
await redis.connect();

let done = 0;
watchdog(10000, () => done);
const value = 'v'.repeat(64);

async function pipelineBatch() {
  for (let base = 0; base < o.pairs; base += o.perPipeline) {
    const p = redis.pipeline();
    for (let i = base; i < base + o.perPipeline; i++) p.set(`k${i}`, value).get(`k${i}`);
    const replies = await p.exec();
    if (replies.length !== 2 * o.perPipeline || replies[1][1] !== value) throw new Error('bad pipeline reply');
    done += replies.length;
  }
  return 2 * o.pairs;
}

await redis.set('bench:large', Buffer.alloc(o.valueBytes, 0x61));
async function largeBatch() {
  for (let i = 0; i < o.gets; i++) {
    const v = await redis.getBuffer('bench:large');
    if (v.length !== o.valueBytes) throw new Error('short value');
    done++;
  }
  return o.gets;
}

const batch = { pipeline: pipelineBatch, large: largeBatch }[o.workload];
if (!batch) fail(new Error(`unknown workload ${o.workload}`));
const r = await runBatches(o, batch, { unit: o.workload === 'pipeline' ? 'cmd/s' : 'GET/s' });
finish(r);
