// Arm `sockguard`: the net.Socket-compatible Duplex, driven by exactly the code that drives `net`.
import { fail, parseArgs } from './common.mjs';
import { createLayer } from './sockguard-layer.mjs';
import { runStream } from './stream-scenarios.mjs';

process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
// Development policy warns once per denied-in-production destination; keep stderr quiet.
process.removeAllListeners('warning');
const o = parseArgs();
const layer = await createLayer(o);
runStream(o, (opts) => layer.connect(opts));
