/**
 * Every example in examples/ runs as a user would run it (`node examples/x.mjs`, importing 'sockguard' by name)
 * against the loopback servers it starts itself, and prints what its comments promise.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const dir = fileURLToPath(new URL('../../examples/', import.meta.url));

function run(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.SOCKGUARD_POLICY;
    execFile(process.execPath, [join(dir, file)], { env, timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const expected: Record<string, RegExp[]> = {
  'policy-file.mjs': [/rule: 'private'/, /rule: 'blocked-vendor'/, /allowed: true/, /echo: hello over loopback/, /denied: EACCES private/, /connects: 1/],
  'http-agent.mjs': [/200 hello \/one/, /200 hello \/two/, /connects: 1/],
  'fetch.mjs': [/200 \{ path: '\/hello' \}/, /denied: EACCES private/],
  'worker.mjs': [/worker received: ping from a worker/, /worker usage:[\s\S]*appId: 'worker',\s+bytesSent: 18,/],
  'udp-dns.mjs': [/example\.com A 192\.0\.2\.10 \(1 answer from 127\.0\.0\.1:\d+\)/, /denied: EACCES private/],
};

describe('examples/', () => {
  test('every example is covered here', () => {
    expect(readdirSync(dir).filter((f) => f.endsWith('.mjs')).sort()).toEqual(Object.keys(expected).sort());
  });

  for (const [file, patterns] of Object.entries(expected)) {
    test(file, async () => {
      const r = await run(file);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      for (const p of patterns) expect(r.stdout).toMatch(p);
    });
  }
});
