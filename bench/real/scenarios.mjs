// Real-workload scenarios: a real client library (or Node's TLS) against a real server, through `net` and
// through sockguard. The driver (bench/run.mjs) runs them with the same discipline as the socket scenarios.
//
// peer: the server (tls and http: a fresh Node server process per trial; redis and postgres: one server per
// scenario and repetition, shared by that repetition's arms, since they take a while to start).
// client: the file under bench/real/ that runs `workload`; every arm runs the same file with arm=<id>.

const rate = (label, cpuLabel) => [
  { key: 'value', label, better: 'higher', format: 'rate' },
  { key: 'cpuNsPerUnit', label: cpuLabel, better: 'lower', format: 'ns' },
];
const bytes = (cpuLabel) => [
  { key: 'value', label: 'B/s', better: 'higher', format: 'bytes' },
  { key: 'cpuNsPerUnit', label: cpuLabel, better: 'lower', format: 'ns' },
];
// Every arm at least as fast as `net` (docs/performance.md#targets); client-bound pipelining ≥ 1.3×;
// server-bound workloads at parity, where the client's saving shows as CPU per operation (≤ 0.8×).
const atLeast = (x) => [{ metric: 'value', vs: 'net', op: '>=', x }];
const serverBound = [...atLeast(1.0), { metric: 'cpuNsPerUnit', vs: 'net', op: '<=', x: 0.8 }];

const TLS_ARMS = ['net', 'sockguard', 'sockguard-js'];
const TLS_LABELS = { net: 'Node TLS over net', sockguard: 'sockguard native TLS', 'sockguard-js': 'Node TLS over sockguard Duplex' };
const LIB_ARMS = ['net', 'sockguard'];

export const REAL_SCENARIOS = [
  {
    id: 'tls-upload', title: 'TLS upload, 64 KiB writes', peer: 'tls', serverMode: 'sink',
    client: 'tls-client.mjs', workload: 'upload', args: { chunk: 65536 },
    arms: TLS_ARMS, armLabels: TLS_LABELS, metrics: bytes('client CPU per 64 KiB'), targets: atLeast(1.0),
  },
  {
    id: 'tls-download', title: 'TLS download, server writes 64 KiB', peer: 'tls', serverMode: 'source',
    client: 'tls-client.mjs', workload: 'download', args: {},
    arms: TLS_ARMS, armLabels: TLS_LABELS, metrics: bytes('client CPU per 64 KiB'), targets: atLeast(1.0),
  },
  {
    id: 'tls-echo', title: 'TLS pipelined echo 64 B, window 64', peer: 'tls', serverMode: 'echo',
    client: 'tls-client.mjs', workload: 'echo', args: { window: 64, size: 64 }, quick: true,
    arms: TLS_ARMS, armLabels: TLS_LABELS, metrics: rate('msg/s', 'client CPU per message'), targets: atLeast(1.0),
  },
  {
    id: 'undici-pipeline', title: 'undici request(), pipelining 10, 1 connection', peer: 'http',
    client: 'undici-client.mjs', workload: 'pipeline', args: { requests: 3000, pipelining: 10 }, quick: true,
    arms: LIB_ARMS, metrics: rate('req/s', 'client CPU per request'), targets: atLeast(1.3),
  },
  {
    id: 'undici-fetch', title: 'undici fetch(), keep-alive, 1 in flight', peer: 'http',
    client: 'undici-client.mjs', workload: 'fetch', args: { requests: 1000 },
    arms: LIB_ARMS, metrics: rate('req/s', 'client CPU per request'), targets: atLeast(1.0),
  },
  {
    id: 'ioredis-pipeline', title: 'ioredis SET+GET pipelines (1,000 pairs each)', peer: 'redis',
    client: 'ioredis-client.mjs', workload: 'pipeline', args: { pairs: 20000, perPipeline: 1000 }, quick: true,
    arms: LIB_ARMS, metrics: rate('cmd/s', 'client CPU per command'), targets: atLeast(1.3),
  },
  {
    id: 'ioredis-large', title: 'ioredis GET of a 1 MiB value', peer: 'redis',
    client: 'ioredis-client.mjs', workload: 'large', args: { gets: 64, valueBytes: 1048576 },
    arms: LIB_ARMS, metrics: rate('GET/s', 'client CPU per GET'), targets: serverBound,
  },
  {
    id: 'pg-select', title: 'pg sequential SELECT $1::int', peer: 'postgres',
    client: 'pg-client.mjs', workload: 'select', args: { queries: 2000 }, quick: true,
    arms: LIB_ARMS, metrics: rate('query/s', 'client CPU per query'), targets: serverBound,
  },
  {
    id: 'pg-large', title: 'pg 1 MB text row', peer: 'postgres',
    client: 'pg-client.mjs', workload: 'large', args: { rows: 20, rowBytes: 1000000 },
    arms: LIB_ARMS, metrics: rate('row/s', 'client CPU per row'), targets: serverBound,
  },
];
