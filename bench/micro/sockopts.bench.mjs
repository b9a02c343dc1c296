// Socket-option lookups (docs/service.md#socket-options) as a socket's getsockopt/setsockopt reach them: the emulation table,
// EACCES for unsupported options, and the byte form. Target: a number lookup well under 100 ns.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { report, runTasks } from './harness.mjs';

const mod = fileURLToPath(new URL('../../dist/service/sockopts.js', import.meta.url));
if (!existsSync(mod)) {
  report([]);
  process.exit(0);
}
const { constants: c, getsockopt, setsockopt } = await import(pathToFileURL(mod).href);

// One hooks object per socket class, as the layer wires it; the target is the socket.
const hooks = { soError: (s) => s.pendingError };
const socket = { pendingError: 0 };

// Cycle through all eight options so the lookup is not a single constant-folded call site value.
const SUPPORTED = [
  [c.SOL_SOCKET, c.SO_KEEPALIVE],
  [c.SOL_SOCKET, c.SO_DEBUG],
  [c.SOL_TCP, c.TCP_NODELAY],
  [c.SOL_SOCKET, c.SO_LINGER],
  [c.SOL_SOCKET, c.SO_OOBINLINE],
  [c.SOL_SOCKET, c.SO_SNDBUF],
  [c.SOL_SOCKET, c.SO_RCVBUF],
  [c.SOL_SOCKET, c.SO_REUSEADDR],
];
const levels = Int32Array.from(SUPPORTED, ([l]) => l);
const names = Int32Array.from(SUPPORTED, ([, n]) => n);
const INNER = 1024;
let sink = 0;

const tasks = [
  {
    name: 'getsockopt → number (8 options in turn)',
    inner: INNER,
    fn: () => {
      for (let i = 0; i < INNER; i++) sink += getsockopt('emulate', hooks, socket, levels[i & 7], names[i & 7]);
    },
  },
  {
    name: 'getsockopt SO_ERROR → number (hook call)',
    inner: INNER,
    fn: () => {
      for (let i = 0; i < INNER; i++) sink += getsockopt('emulate', hooks, socket, c.SOL_SOCKET, c.SO_ERROR);
    },
  },
  {
    name: 'setsockopt int (validated, ignored)',
    inner: INNER,
    fn: () => {
      for (let i = 0; i < INNER; i++) setsockopt('emulate', hooks, socket, levels[i & 7] === c.SOL_TCP ? c.SOL_TCP : c.SOL_SOCKET, names[i & 7] === c.SO_LINGER ? c.SO_KEEPALIVE : names[i & 7], i & 1);
    },
  },
  {
    name: 'getsockopt → Buffer (buflen 4)',
    inner: 64,
    fn: () => {
      for (let i = 0; i < 64; i++) sink += getsockopt('emulate', hooks, socket, c.SOL_SOCKET, c.SO_SNDBUF, 4).length;
    },
  },
  {
    name: 'getsockopt unsupported → EACCES thrown',
    inner: 16,
    note: 'error path: builds a Node-shaped system error',
    fn: () => {
      for (let i = 0; i < 16; i++) {
        try {
          getsockopt('emulate', hooks, socket, c.SOL_TCP, c.TCP_CORK);
        } catch {
          sink++;
        }
      }
    },
  },
];

const results = await runTasks(tasks);
if (sink === 0.5) console.log(sink); // keep the work observable
report(results);
process.exit(0);
