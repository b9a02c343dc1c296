// Shared by every Node client arm: argument parsing, timing and result output, so that the arms
// differ only in how they talk to the socket. The real-workload clients (bench/real/common.mjs) take theirs from here.
import { performance } from 'node:perf_hooks';

/** key=value arguments, the same set the C client takes. */
export function parseArgs(argv = process.argv.slice(2)) {
  const [scenario, ...rest] = argv;
  const o = {
    scenario,
    host: '127.0.0.1',
    port: 0,
    seconds: 3,
    conns: 1,
    window: 64,
    size: 64,
    chunk: 65536,
    inflight: 1,
    count: 10000,
    warmupBytes: 64 * 1024 * 1024,
    warmupSeconds: 0.5,
    warmupRtts: 2000,
    cork: 0,
    refill: 'each',
  };
  return readKeyValues(rest, o, (k, v) => (k === 'host' || k === 'policy' || k === 'refill' || k === 'dist' ? v : Number(v)));
}

/**
 * Sets `o[key]` to `value(key, text)` for every `key=text` word (other words are passed over), then checks that
 * `o.host` is an IPv4 loopback address. The socket and the real-workload clients differ only in `value`.
 */
export function readKeyValues(words, o, value) {
  for (const a of words) {
    const i = a.indexOf('=');
    if (i < 0) continue;
    const k = a.slice(0, i);
    o[k] = value(k, a.slice(i + 1));
  }
  if (!/^127\.\d+\.\d+\.\d+$/.test(o.host)) fail(new Error('host must be an IPv4 loopback address'));
  return o;
}

export const now = () => performance.now() / 1000;

/**
 * Client CPU time (user + system) spent since `mark` (a process.cpuUsage() value), in ns. Throughput
 * on a loaded 2-CPU machine swings with scheduling; CPU time per unit of work does much less.
 */
export const cpuNsSince = (mark) => {
  const d = process.cpuUsage(mark);
  return (d.user + d.system) * 1000;
};

let finished = false;

/** Prints the one JSON result line and exits; later calls are ignored. */
export function finish(result) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
}

export function fail(err) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify({ error: String(err?.stack ?? err) }) + '\n', () => process.exit(1));
}

/**
 * A window that opens after a warm-up and closes after `seconds`. `tick(count)` is called with
 * the running total of completed units; it returns true once the window has closed.
 */
export function rateWindow({ warmupSeconds, seconds }, onDone) {
  const start = now();
  let t0 = 0;
  let base = 0;
  let warm = false;
  let cpu = null;
  return (count) => {
    const t = now();
    if (!warm) {
      if (t - start >= warmupSeconds) {
        warm = true;
        t0 = t;
        base = count;
        cpu = process.cpuUsage();
      }
      return false;
    }
    if (t - t0 < seconds) return false;
    onDone(count - base, t - t0, cpuNsSince(cpu) / Math.max(1, count - base));
    return true;
  };
}

export function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

/** RTT samples in microseconds, bounded so a fast arm cannot grow memory without limit. */
export class Samples {
  constructor(cap = 4 << 20) {
    this.a = new Float64Array(cap);
    this.n = 0;
  }
  push(v) {
    if (this.n < this.a.length) this.a[this.n++] = v;
    return this.n === this.a.length;
  }
  summary() {
    const s = this.a.subarray(0, this.n).sort();
    return { rtts: this.n, p50: percentile(s, 0.5), p99: percentile(s, 0.99) };
  }
}

/** GC until the heap stops shrinking: single gc() calls leave weak/finalised objects behind. */
export async function settledMemory() {
  if (typeof globalThis.gc !== 'function') throw new Error('run with --expose-gc');
  let prev = Infinity;
  for (let i = 0; i < 10; i++) {
    globalThis.gc();
    await new Promise((r) => setTimeout(r, 20));
    const h = process.memoryUsage().heapUsed;
    if (prev - h < 4096) break;
    prev = h;
  }
  return process.memoryUsage();
}

/** Idle memory: opens `count` connected sockets, `inflight` handshakes at a time. */
export async function idleScenario(o, open) {
  const before = await settledMemory();
  const keep = new Array(o.count);
  let started = 0;
  let connected = 0;
  await new Promise((resolve, reject) => {
    const onConnect = () => {
      connected++;
      if (connected === o.count) resolve();
      else if (started < o.count) next();
    };
    const next = () => {
      const i = started++;
      keep[i] = open(onConnect, reject);
    };
    for (let i = 0; i < Math.min(o.inflight, o.count); i++) next();
  });
  const after = await settledMemory();
  const rss = after.rss - before.rss;
  const heap = after.heapUsed - before.heapUsed;
  return {
    keep,
    result: {
      scenario: 'idle',
      sockets: o.count,
      rssBytes: rss,
      rssPerSocket: rss / o.count,
      heapPerSocket: heap / o.count,
      externalPerSocket: (after.external - before.external) / o.count,
      value: rss / o.count,
      unit: 'B',
    },
  };
}

/** Fails the process if nothing completes for this long: a stalled arm must not hang the run. */
export function watchdog(ms, progress) {
  let last = -1;
  const t = setInterval(() => {
    const p = progress();
    if (p === last) fail(new Error(`no progress for ${ms} ms`));
    last = p;
  }, ms);
  t.unref();
}
