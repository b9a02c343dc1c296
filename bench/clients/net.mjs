// Arm `net` (and `net+cork` with cork=1): Node's own sockets, the baseline.
import net from 'node:net';
import { fail, parseArgs } from './common.mjs';
import { runStream } from './stream-scenarios.mjs';

process.on('uncaughtException', fail);
runStream(parseArgs(), (opts) => net.connect(opts));
