/**
 * Runs one test file inside Bun or Deno against the vitest shim and prints one `SGTEST <json>` line per test.
 * Started by scripts/run-runtime-tests.mjs, which maps the 'vitest' import to the shim and passes the runtime's
 * skip list in SG_RUNTIME_SKIPS (JSON: [{ test, reason }], `test` a substring of the full test name).
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { runRegistered } from './vitest-shim.mjs';

const file = process.argv[2];
const skips = JSON.parse(process.env.SG_RUNTIME_SKIPS || '[]');
const emit = (r) => {
  const error = r.error === undefined ? undefined : String(r.error?.stack ?? r.error).split('\n').slice(0, 8).join('\n');
  process.stdout.write(`SGTEST ${JSON.stringify({ ...r, error })}\n`);
};
let uncaught = 0;
const onUncaught = (err) => {
  uncaught++;
  emit({ name: '(uncaught exception)', status: 'failed', error: err, ms: 0 });
};
process.on('uncaughtException', onUncaught);
process.on('unhandledRejection', onUncaught);

try {
  await import(pathToFileURL(resolve(file)).href);
  await runRegistered((name) => skips.find((s) => name.includes(s.test))?.reason, emit);
} catch (err) {
  emit({ name: '(file failed to load)', status: 'failed', error: err, ms: 0 });
}
process.exit(0);
