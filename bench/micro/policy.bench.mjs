// Policy check cost (docs/performance.md#targets: ≤ 1 µs median for an IP literal, parse + evaluate). Every task
// cycles through 64 distinct literals so no single string or table slot stays hot, and runs an inner loop,
// since tinybench's own per-sample overhead (~50 ns) is of the same order as the work.
//
// Needs the compiled module: `npx tsc -p tsconfig.json` first (prints no results otherwise).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { report, runTasks } from './harness.mjs';

const mod = fileURLToPath(new URL('../../dist/policy/index.js', import.meta.url));
if (!existsSync(mod)) {
  report([]);
  process.exit(0);
}
const { loadPolicy, vet } = await import(pathToFileURL(mod).href);

const production = loadPolicy('production');
// The operator policy the connect-rate arms use: production plus an allow rule for 127.0.0.0/8.
const operator = loadPolicy({ version: 1, allow: [{ cidr: '127.0.0.0/8', openSpecialPurpose: true }] });

const N = 64;
const INNER = 1024;
const make = (f) => Array.from({ length: N }, (_, i) => f(i));
const sets = {
  v4: make((i) => `93.184.${i}.${(i * 7) & 255}`),
  v4denied: make((i) => `10.${i}.${(i * 3) & 255}.1`),
  v4aton: make((i) => `0x5db8${(0x10 + i).toString(16)}22`),
  v6: make((i) => `2606:4700:4700::${(0x1000 + i).toString(16)}`),
  mapped: make((i) => `::ffff:93.184.${i}.1`),
  nat64: make((i) => `64:ff9b::5db8:${(0x100 + i).toString(16)}`),
  sixToFour: make((i) => `2002:5db8:${(0x100 + i).toString(16)}::1`),
  loopback: make((i) => `127.0.${i}.1`),
};

let sink = 0;
function check(policy, hosts, port) {
  return () => {
    for (let i = 0; i < INNER; i++) {
      const t = policy.parse(hosts[i & (N - 1)], port);
      if (policy.evaluate(t.address, t.family, port).allowed) sink++;
    }
  };
}

const tasks = [
  { name: 'parse+evaluate IPv4 literal, allowed', inner: INNER, fn: check(production, sets.v4, 443) },
  { name: 'parse+evaluate IPv4 literal, denied (private)', inner: INNER, fn: check(production, sets.v4denied, 443) },
  { name: 'parse+evaluate IPv4 inet_aton hex form', inner: INNER, fn: check(production, sets.v4aton, 443) },
  { name: 'parse+evaluate IPv6 literal, allowed', inner: INNER, fn: check(production, sets.v6, 443) },
  { name: 'parse+evaluate IPv4-mapped IPv6', inner: INNER, fn: check(production, sets.mapped, 443) },
  { name: 'parse+evaluate NAT64 64:ff9b::/96', inner: INNER, fn: check(production, sets.nat64, 443) },
  { name: 'parse+evaluate 6to4 2002::/16', inner: INNER, fn: check(production, sets.sixToFour, 443) },
  {
    name: 'parse+evaluate 127.x allowed by an operator rule',
    inner: INNER,
    note: 'the connect-rate arms pay this',
    fn: check(operator, sets.loopback, 8080),
  },
  {
    name: 'evaluate only, canonical IPv4',
    inner: INNER,
    fn: () => {
      for (let i = 0; i < INNER; i++) if (production.evaluate(sets.v4[i & (N - 1)], 4, 443).allowed) sink++;
    },
  },
  {
    name: 'vet() IPv4 literal (async, no resolver)',
    inner: 256,
    note: 'includes one promise per call',
    fn: async () => {
      for (let i = 0; i < 256; i++) if ((await vet(production, sets.v4[i & (N - 1)], 443)).allowed.length) sink++;
    },
  },
];

const results = await runTasks(tasks);
if (sink === 0.5) console.log(sink); // keep the work observable
report(results);
