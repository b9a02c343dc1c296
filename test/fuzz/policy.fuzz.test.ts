/**
 * Fuzzes policy loading (objects, files, arbitrary JSON, very deep nesting), `layer.check()` and
 * `layer.lookup`: each returns or fails with a coded error, never crashes, never leaves a promise unhandled.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { SocketLayer } from '../../src/index.js';
import { loadPolicy } from '../../src/policy/index.js';
import { Problems, anyString, describeError, isCoded, mostly, params, target, watchProcess, wild } from './common.js';

const proc = watchProcess();
const dir = mkdtempSync(join(tmpdir(), 'sockguard-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cidr = fc.oneof(
  fc.constantFrom('10.0.0.0/8', '127.0.0.1/32', '::1/128', '1.2.3.4', '0.0.0.0/0', '::/0', '1.2.3.4/33', '8.8.8.8/32', 'fe80::/10', 'abc', ''),
  fc.tuple(fc.ipV4(), fc.integer({ min: -1, max: 33 })).map(([a, n]) => `${a}/${n}`),
  fc.tuple(fc.ipV6(), fc.integer({ min: -1, max: 129 })).map(([a, n]) => `${a}/${n}`),
);
const ports = fc.array(mostly(fc.integer({ min: 0, max: 65536 }), 4), { maxLength: 4 });

/** Documents close to schema version 1, so validation goes deep before it finds the fault (if any). */
const policyDoc = fc.record(
  {
    version: mostly(fc.constant(1), 6),
    mode: mostly(fc.constantFrom('production', 'development'), 4),
    comment: mostly(fc.string(), 2),
    $schema: mostly(fc.string(), 2),
    replace: fc.array(mostly(fc.constantFrom('deniedPorts', 'providers', 'exceptions', 'deny'), 4), { maxLength: 3 }),
    deny: fc.array(mostly(fc.oneof(cidr, fc.record({ cidr: mostly(cidr, 4), rule: mostly(fc.constantFrom('corp', 'Bad Rule', 'x'), 3), reason: mostly(fc.string(), 3) }, { requiredKeys: [] })), 4), { maxLength: 3 }),
    allow: fc.array(mostly(fc.oneof(cidr, fc.record({ cidr: mostly(cidr, 4), ports, openSpecialPurpose: mostly(fc.boolean(), 4) }, { requiredKeys: [] })), 4), { maxLength: 3 }),
    deniedPorts: ports,
    providers: fc.array(
      mostly(fc.record({ name: mostly(fc.constantFrom('acme', 'Bad Name', 'x'), 3), prefixes: fc.array(mostly(cidr, 4), { maxLength: 3 }), builtin: mostly(fc.constant('google'), 3) }, { requiredKeys: [] }), 4),
      { maxLength: 2 },
    ),
    exceptions: fc.array(
      mostly(fc.record({ address: mostly(cidr, 4), host: mostly(fc.domain(), 3), ports }, { requiredKeys: [] }), 4),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: [] },
);

/** JSON text of a generated document; values JSON cannot spell become strings. */
function toJson(d: unknown, indent?: number): string {
  try {
    return JSON.stringify(d, (_k, v: unknown) => (typeof v === 'bigint' || typeof v === 'symbol' ? String(v) : v), indent) ?? 'null';
  } catch {
    return '{"version":1,"allow":[{}]}'; // a hostile getter or a cycle: any other document will do
  }
}

function expectPolicyOrCoded(load: () => unknown): void {
  let policy: unknown;
  try {
    policy = load();
  } catch (err) {
    expect(isCoded(err), describeError(err)).toBe(true);
    return;
  }
  expect(typeof (policy as { evaluate?: unknown }).evaluate).toBe('function');
}

const DEEP = 200_000;

describe('policy loading', () => {
  target('loadPolicy(any value)', (tick) => {
    fc.assert(
      fc.property(wild, (spec) => {
        tick();
        // Strings are paths: keep arbitrary ones inside the scratch directory (they fail to read, coded).
        const s = typeof spec === 'string' && spec !== 'production' && spec !== 'development' && spec.trim() !== '' ? join(dir, 'missing', spec) : spec;
        expectPolicyOrCoded(() => loadPolicy(s));
      }),
      params(),
    );
    proc.expectNone();
  });

  target('loadPolicy(policy-shaped object)', (tick) => {
    fc.assert(
      fc.property(policyDoc, (doc) => {
        tick();
        expectPolicyOrCoded(() => loadPolicy(doc));
      }),
      params(),
    );
  });

  target('loadPolicy(policy file with arbitrary JSON or text)', (tick) => {
    const file = join(dir, 'policy.json');
    const text = fc.oneof(
      { arbitrary: policyDoc.map((d) => toJson(d)), weight: 3 },
      { arbitrary: fc.json({ maxDepth: 4 }), weight: 2 },
      { arbitrary: anyString(40), weight: 1 },
      {
        arbitrary: fc.tuple(policyDoc.map((d) => toJson(d, 1)), fc.nat(), fc.string({ maxLength: 3 })).map(([t, at, junk]) => {
          const i = at % (t.length + 1);
          return t.slice(0, i) + junk + t.slice(i + 1);
        }),
        weight: 2,
      },
    );
    fc.assert(
      fc.property(text, (t) => {
        tick();
        // A fresh file each time: rewriting one in place (truncate, then write) makes ext4 flush its data at
        // close, which cost more than everything else in this target together.
        rmSync(file, { force: true });
        writeFileSync(file, t);
        expectPolicyOrCoded(() => loadPolicy(file));
      }),
      params(),
    );
  });

  it('rejects a policy file nested 200,000 levels deep with ERR_SOCKGUARD_INVALID_POLICY', () => {
    const file = join(dir, 'deep.json');
    for (const text of [
      '['.repeat(DEEP) + ']'.repeat(DEEP),
      '{"a":'.repeat(DEEP) + '1' + '}'.repeat(DEEP),
      `{"version":1,"allow":${'['.repeat(DEEP)}${']'.repeat(DEEP)}}`,
      `{"version":1,"comment":${'{"x":'.repeat(DEEP)}0${'}'.repeat(DEEP)}}`,
      // Unterminated: the parser must fail on depth (or syntax), not on the stack.
      '['.repeat(DEEP),
    ]) {
      writeFileSync(file, text);
      let thrown: unknown;
      try {
        loadPolicy(file);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(Error);
      expect((thrown as { code?: unknown }).code, String(thrown)).toBe('ERR_SOCKGUARD_INVALID_POLICY');
    }
  });

  it('rejects policy objects nested 200,000 levels deep (and cyclic ones) with ERR_SOCKGUARD_INVALID_POLICY', () => {
    let deep: unknown = 1;
    for (let i = 0; i < DEEP; i++) deep = { comment: deep };
    let deepArr: unknown = [];
    for (let i = 0; i < DEEP; i++) deepArr = [deepArr];
    const cyclic: Record<string, unknown> = { version: 1 };
    cyclic.allow = [cyclic];
    for (const doc of [deep, deepArr, { version: 1, allow: deepArr }, { version: 1, deny: [deep] }, { version: 1, comment: deep }, cyclic]) {
      let thrown: unknown;
      try {
        loadPolicy(doc);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(Error);
      expect((thrown as { code?: unknown }).code, String(thrown)).toBe('ERR_SOCKGUARD_INVALID_POLICY');
    }
  });
});

describe('layer.check and layer.lookup', () => {
  // An instant resolver: names never reach DNS, and answers are sometimes not addresses at all.
  const answers: unknown[] = [[{ address: '127.0.0.1', family: 4 }], [{ address: '10.0.0.1', family: 4 }], [], [null], [{ address: 5 }], 'x'];
  let n = 0;
  const layer = new SocketLayer({ policy: 'production', idleTimeoutMs: 0, resolver: async () => answers[n++ % answers.length] as never });
  afterAll(() => layer.close());

  target('layer.check(host, port)', async (tick) => {
    const problems = new Problems();
    await fc.assert(
      fc.asyncProperty(mostly(fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6())), mostly(fc.integer({ min: 0, max: 65536 })), async (host, port) => {
        tick();
        let p: Promise<unknown> | undefined;
        try {
          p = layer.check(host as string, port as number);
        } catch (err) {
          problems.add(`check() threw synchronously: ${String(err)}`);
          return;
        }
        try {
          const v = (await p) as { allowed?: unknown };
          expect(typeof v.allowed).toBe('boolean');
        } catch (err) {
          problems.check('check() rejected', [host, port], err);
        }
      }),
      params(),
    );
    problems.expectNone();
    proc.expectNone();
  });

  target('layer.lookup(hostname, options, callback)', async (tick) => {
    const problems = new Problems();
    const lookup = layer.lookup as unknown as (...a: unknown[]) => void;
    await fc.assert(
      fc.asyncProperty(mostly(fc.oneof(fc.domain(), fc.ipV4())), mostly(fc.record({ family: mostly(fc.constantFrom(0, 4, 6)), all: fc.boolean(), port: mostly(fc.integer({ min: 0, max: 65535 })) }, { requiredKeys: [] })), fc.boolean(), async (host, options, withCallback) => {
        tick();
        let called: Promise<void> | undefined;
        const args: unknown[] = [host, options];
        if (withCallback) {
          called = new Promise<void>((resolve) => {
            args.push((err: unknown) => {
              if (err) problems.check('lookup callback', [host, options], err);
              resolve();
            });
          });
        }
        try {
          lookup(...args);
        } catch (err) {
          problems.check('lookup() threw', [host, options], err);
          return;
        }
        if (called) await called;
      }),
      params(),
    );
    problems.expectNone();
    proc.expectNone();
  });
});
