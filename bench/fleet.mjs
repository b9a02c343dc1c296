/**
 * Fleet store on vs off: connect rate and echo throughput of one layer with quotas kept in this process
 * (`off`) and the same quotas shared through a redis-server (`on`, the `store` option), as rates and as CPU
 * time per operation (steadier on a busy machine). Arms are interleaved
 * (off, on, off, on, ...) in fresh client processes, so drift on the machine hits both alike; the report is the
 * median of each arm and the ratio on / off, then the ratio on / off of each repetition and their median.
 *
 *   npm run build && node bench/fleet.mjs [--reps 5] [--seconds 2] [--store-rtt-ms 0]
 *
 * --store-rtt-ms N puts a relay on 127.0.0.1 between the `on` layer and redis-server that holds every chunk
 * N/2 ms each way, in order, so a store round trip costs about N ms more than loopback's fraction of a
 * millisecond: the lease batches of connects then have a round trip worth growing for. 0 (the default)
 * connects the layer to redis-server directly.
 *
 * Needs redis-server (/usr/bin/redis-server). Everything runs on 127.0.0.1; every process started here is
 * stopped on exit.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const REPS = opt('reps', 5);
const SECONDS = opt('seconds', 2);
const STORE_RTT_MS = opt('store-rtt-ms', 0);
if (!Number.isFinite(STORE_RTT_MS) || STORE_RTT_MS < 0) throw new Error('--store-rtt-ms takes a number of milliseconds, 0 or more');
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const REDIS = '/usr/bin/redis-server';

if (!existsSync(DIST)) throw new Error('dist/ is missing: npm run build');
if (!existsSync(REDIS)) throw new Error(`${REDIS} is missing: install the Debian package redis-server`);

const children = new Set();
const stopAll = () => {
  for (const c of children) c.kill('SIGKILL');
};
process.on('exit', stopAll);
process.on('SIGINT', () => process.exit(130));

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(cmd, argv, ready) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (ready(out)) resolve({ child, out });
    });
    child.on('exit', (code) => reject(new Error(`${cmd} exited ${code}`)));
  });
}

/**
 * A TCP relay on 127.0.0.1 to `port` that delivers each chunk `oneWayMs` after it arrived, in arrival order,
 * in both directions; a close is passed on after the data before it. No flow control: store traffic is small.
 */
function delayRelay(port, oneWayMs) {
  const sockets = new Set();
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ port, host: '127.0.0.1', noDelay: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    const relay = (from, to) => {
      const queue = []; // { due, chunk }, chunk null for the close
      let timer = null;
      const drain = () => {
        timer = null;
        const now = performance.now();
        while (queue.length > 0 && queue[0].due <= now) {
          const { chunk } = queue.shift();
          if (chunk === null) to.destroy();
          else if (!to.destroyed) to.write(chunk);
        }
        if (queue.length > 0) timer = setTimeout(drain, Math.max(1, Math.ceil(queue[0].due - now)));
      };
      const push = (chunk) => {
        queue.push({ due: performance.now() + oneWayMs, chunk });
        if (timer === null) timer = setTimeout(drain, Math.max(1, Math.ceil(oneWayMs)));
      };
      from.on('data', push);
      from.on('close', () => push(null));
    };
    relay(client, upstream);
    relay(upstream, client);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: server.address().port,
        close: () => {
          for (const s of sockets) s.destroy();
          server.close();
        },
      }),
    );
  });
}

/** Median round trip of `n` sequential PINGs to the redis at `port` (direct or through the relay), in ms. */
function pingRtt(port, n = 20) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    const rtts = [];
    let t0 = 0;
    let got = '';
    const ping = () => {
      got = '';
      t0 = performance.now();
      s.write('PING\r\n');
    };
    s.on('connect', ping);
    s.on('data', (d) => {
      got += d;
      if (!got.includes('\r\n')) return;
      rtts.push(performance.now() - t0);
      if (rtts.length < n) ping();
      else {
        s.destroy();
        resolve(median(rtts));
      }
    });
    s.on('error', reject);
  });
}

// The echo server: a separate process, so the client measured has the CPU it runs on to itself.
const ECHO = `
const net = require('node:net');
const s = net.createServer((c) => { c.on('error', () => {}); c.pipe(c); });
s.listen(0, '127.0.0.1', () => console.log(s.address().port));
`;

// One measurement in a fresh process: prints { value } (connects/s or MiB/s).
const CLIENT = `
const { SocketLayer } = await import(process.env.DIST);
const e = process.env;
const quotas = { perMinute: { creates: 6_400_000, connects: 6_400_000, sends: 1e12, receives: 1e12, bytesSent: 1e14, bytesReceived: 1e14 } };
const layer = new SocketLayer({
  appId: 'bench-' + e.ARM, policy: { version: 1, allow: [{ cidr: '127.0.0.0/8', openSpecialPurpose: true }] }, idleTimeoutMs: 0, quotas,
  ...(e.ARM === 'on' ? { store: e.STORE } : {}),
});
const port = Number(e.PORT);
const ms = Number(e.SECONDS) * 1000;
const once = () => new Promise((resolve, reject) => {
  const s = layer.connect(port, '127.0.0.1');
  s.on('connect', () => { s.destroy(); resolve(); });
  s.on('error', reject);
});
async function connectRate(window) {
  let n = 0;
  const cpu0 = process.cpuUsage();
  const end = Date.now() + window;
  const lanes = Array.from({ length: 8 }, async () => { while (Date.now() < end) { await once(); n++; } });
  await Promise.all(lanes);
  const cpu = process.cpuUsage(cpu0);
  return { value: n / (window / 1000), cpu: (cpu.user + cpu.system) / n };
}
async function echo(window) {
  const s = layer.connect(port, '127.0.0.1');
  await new Promise((r) => s.on('connect', r));
  const chunk = Buffer.alloc(64 * 1024, 7);
  let got = 0;
  let sent = 0;
  const inflight = 1024 * 1024;
  let stop = false;
  const pump = () => { while (!stop && sent - got < inflight) { s.write(chunk); sent += chunk.length; } };
  s.on('data', (d) => { got += d.length; pump(); });
  pump();
  const startGot = got;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, window));
  const cpu = process.cpuUsage(cpu0);
  const mib = (got - startGot) / 2 ** 20;
  const value = mib / ((Date.now() - t0) / 1000);
  stop = true;
  s.destroy();
  return { value, cpu: (cpu.user + cpu.system) / mib };
}
const run = e.SCENARIO === 'connect' ? connectRate : echo;
await run(300);
const result = await run(ms);
// The fleet meter counts no waits; its connect batch says how far the leases grew for the store's round trip.
const meter = layer.fleet?.meter;
if (meter) result.connects = { ...meter.batchBounds('connects'), batch: meter.batchOf('connects'), lease: meter.leaseOf('connects') };
await layer.close();
console.log(JSON.stringify(result));
`;

function measure(arm, scenario, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CLIENT], {
      env: { ...process.env, ...env, DIST, ARM: arm, SCENARIO: scenario, SECONDS: String(SECONDS) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.add(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      children.delete(child);
      if (code !== 0) return reject(new Error(`${arm}/${scenario} exited ${code}`));
      resolve(JSON.parse(out.trim().split('\n').pop()));
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const dir = mkdtempSync(join(tmpdir(), 'sockguard-bench-redis-'));
let relay;
try {
  const redisPort = await freePort();
  await start(REDIS, ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'notice'], (o) =>
    o.includes('Ready to accept connections'),
  );
  const echo = await start(process.execPath, ['-e', ECHO], (o) => /\d+\n/.test(o));
  if (STORE_RTT_MS > 0) relay = await delayRelay(redisPort, STORE_RTT_MS / 2);
  const storePort = relay ? relay.port : redisPort;
  const storeRtt = await pingRtt(storePort);
  const env = { STORE: `redis://127.0.0.1:${storePort}/0`, PORT: String(Number(/(\d+)\n/.exec(echo.out)[1])) };
  const results = { connect: { off: [], on: [] }, echo: { off: [], on: [] } };
  const cpu = { connect: { off: [], on: [] }, echo: { off: [], on: [] } };
  const connectLeases = [];
  for (let r = 0; r < REPS; r++) {
    for (const scenario of ['connect', 'echo']) {
      for (const arm of r % 2 === 0 ? ['off', 'on'] : ['on', 'off']) {
        const m = await measure(arm, scenario, env);
        results[scenario][arm].push(m.value);
        cpu[scenario][arm].push(m.cpu);
        if (scenario === 'connect' && m.connects) connectLeases.push(m.connects);
      }
    }
  }
  // Wall-clock rates move with whatever else the machine runs; CPU time per operation much less so.
  const rows = [
    ['connect rate (connects/s, 8 lanes)', 'connect', 'CPU µs per connect'],
    ['echo throughput (MiB/s, 1 MiB in flight)', 'echo', 'CPU µs per MiB echoed'],
  ].flatMap(([label, k, cpuLabel]) => {
    const off = median(results[k].off);
    const on = median(results[k].on);
    const coff = median(cpu[k].off);
    const con = median(cpu[k].on);
    return [
      `| ${label} | ${off.toFixed(0)} | ${on.toFixed(0)} | ${(on / off).toFixed(2)}x |`,
      `| ${cpuLabel} | ${coff.toFixed(0)} | ${con.toFixed(0)} | ${(con / coff).toFixed(2)}x |`,
    ];
  });
  const link = relay ? `through a relay adding ${STORE_RTT_MS} ms per round trip` : 'direct';
  console.log(`\n${REPS} interleaved repetitions of ${SECONDS} s, medians; store ${link} (PING round trip ${storeRtt.toFixed(2)} ms, median of 20)\n`);
  console.log('| scenario | store off | store on | on / off |\n|---|---|---|---|');
  for (const row of rows) console.log(row);
  // Side by side in one repetition, the two arms saw the same machine: the ratio of each pair is steadier.
  console.log('\nper repetition, store on / off:\n');
  for (const [label, k] of [
    ['connect rate', 'connect'],
    ['echo throughput', 'echo'],
  ]) {
    const ratios = results[k].on.map((v, r) => v / results[k].off[r]);
    console.log(`- ${label}: ${ratios.map((x) => `${x.toFixed(2)}x`).join(' ')}, median ${median(ratios).toFixed(2)}x`);
  }
  // The meter has no count of connects that waited for a lease; the batch each connect run ended with shows
  // whether the leases grew for the round trip (base = no growth, cap = limit / 64).
  if (connectLeases.length > 0) {
    const { base, cap } = connectLeases[0];
    console.log(
      `\nconnect lease batch (store on): bounds ${base}..${cap}; at the end of each repetition's window ${connectLeases.map((c) => c.batch).join(' ')}` +
        `, leases held then ${connectLeases.map((c) => c.lease).join(' ')}`,
    );
  }
  console.log(`\nraw: ${JSON.stringify({ storeRttMs: STORE_RTT_MS, storePingMs: storeRtt, results, cpu, connectLeases })}`);
} finally {
  relay?.close();
  stopAll();
  rmSync(dir, { recursive: true, force: true });
}

