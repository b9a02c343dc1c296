/**
 * Out of descriptors: connect() reports EMFILE to the socket's 'error' listener (not thrown, not uncaught),
 * like net, and once descriptors are free again the next connect succeeds. Runs in child processes under a
 * low `ulimit -n`, both for the very first socket of a process and with sockets already open.
 */
import { describe, expect, test } from 'vitest';
import { fileURLToPath } from 'node:url';
import { lastJson, peer, runProcess } from './util.js';

const child = fileURLToPath(new URL('./fixtures/emfile-child.mjs', import.meta.url));

interface Attempt {
  thrown?: string;
  event: 'connect' | 'error' | null;
  code: string | null;
  closes: number;
}
interface Report {
  fillers: number;
  first: Attempt;
  openStillWork: boolean[];
  second: Attempt;
  secondWorks: boolean;
  uncaught: string[];
}

async function underLimit(mode: 'first' | 'mid', lib: 'net' | 'sockguard', port: number): Promise<Report> {
  const r = await runProcess(
    'bash',
    ['-c', `ulimit -n 64 && exec "${process.execPath}" "${child}"`],
    { MODE: mode, LIB: lib, SG_PORT: String(port) },
    10_000,
  );
  const report = lastJson<Report>(r);
  expect(r.code, `${lib}/${mode} exit code; stderr: ${r.stderr.slice(0, 500)}`).toBe(0);
  return report;
}

function expectEmfileThenRecovery(name: string, r: Report) {
  expect(r.fillers, `${name}: descriptors were exhausted`).toBeGreaterThan(0);
  expect(r.first.thrown, `${name}: connect() threw`).toBeUndefined();
  expect(r.first.event, `${name}: first attempt`).toBe('error');
  expect(r.first.code, `${name}: error code`).toBe('EMFILE');
  expect(r.first.closes, `${name}: 'close' events of the failed socket`).toBe(1);
  expect(r.uncaught, `${name}: uncaught exceptions`).toEqual([]);
  expect(r.second.thrown, `${name}: connect() after recovery threw`).toBeUndefined();
  expect(r.second.event, `${name}: attempt after the descriptors were freed`).toBe('connect');
  expect(r.secondWorks, `${name}: the new connection carries data`).toBe(true);
}

describe('EMFILE', () => {
  for (const mode of ['first', 'mid'] as const) {
    test(`${mode === 'first' ? 'at the first socket of a process' : 'mid-run, with sockets open'}: EMFILE on 'error', then recovery (net alike)`, async () => {
      const p = await peer((c) => c.pipe(c));
      const [theirs, ours] = await Promise.all([underLimit(mode, 'net', p.port), underLimit(mode, 'sockguard', p.port)]);
      expectEmfileThenRecovery('net', theirs);
      expectEmfileThenRecovery('sockguard', ours);
      if (mode === 'mid') {
        expect(ours.openStillWork).toEqual([true, true, true, true, true]);
        expect(theirs.openStillWork).toEqual([true, true, true, true, true]);
      }
    });
  }
});
