/**
 * The declarations a consumer compiles against: test/types/consumer.ts (the README's examples) type-checks under
 * `strict` and NodeNext against dist/*.d.ts, with the library's own declarations checked too (no skipLibCheck),
 * so a member stripped as @internal can never leave the public declarations inconsistent.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

test('the README examples compile against the published declarations', async () => {
  const out = await new Promise<string>((resolve) => {
    execFile(process.execPath, [tsc, '-p', 'test/types/tsconfig.json'], { cwd: root }, (_err, stdout, stderr) => resolve(stdout + stderr));
  });
  expect(out).toBe('');
}, 180_000);
