// vitest setupFiles: quiet SOCKGUARD_WOULD_DENY warnings here and in the Node processes the tests start.
import { pathToFileURL } from 'node:url';
import './quiet-warnings.mjs';

const flag = `--import=${pathToFileURL(new URL('./quiet-warnings.mjs', import.meta.url).pathname).href}`;
if (!(process.env.NODE_OPTIONS ?? '').includes(flag)) process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${flag}`.trim();

// Worker threads print their warnings themselves (NODE_OPTIONS' --import does not reach them); their stderr is
// piped into this process's, so their SOCKGUARD_WOULD_DENY lines are dropped here.
const write = process.stderr.write;
const NOISE = /^\(node:\d+\) \[SOCKGUARD_WOULD_DENY\] .*\n|^\(Use `node --trace-warnings \.\.\.` to show where the warning was created\)\n/gm;
process.stderr.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
  if (typeof chunk === 'string' || chunk instanceof Uint8Array) {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (text.includes('SOCKGUARD_WOULD_DENY') || text.includes('--trace-warnings')) {
      const kept = text.replace(NOISE, '');
      if (kept === '') {
        const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
        if (cb) process.nextTick(cb);
        return true;
      }
      return (write as (c: string, ...r: unknown[]) => boolean).call(this, kept, ...rest);
    }
  }
  return (write as (c: unknown, ...r: unknown[]) => boolean).call(this, chunk, ...rest);
} as typeof process.stderr.write;
