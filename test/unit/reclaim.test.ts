import * as fc from 'fast-check';
import { GCProfiler, getHeapSpaceStatistics } from 'node:v8';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  DEFAULT_IDLE_TIMEOUT_MS,
  initReclaimEntry,
  ReclaimSweeper,
  validateIdleTimeout,
  type ReclaimEntry,
  type ReclaimOptions,
} from '../../src/service/reclaim.js';

type Entry = ReclaimEntry & { id: number };

function entry(id: number): Entry {
  return initReclaimEntry({ id });
}

const sweepers: ReclaimSweeper<Entry>[] = [];

function sweeper(options: Partial<ReclaimOptions<Entry>> = {}): { s: ReclaimSweeper<Entry>; expired: number[] } {
  const expired: number[] = [];
  const s = new ReclaimSweeper<Entry>({
    idleTimeoutMs: 10_000,
    sweepIntervalMs: 1_000,
    onExpire: (e) => expired.push(e.id),
    clock: () => 0,
    ...options,
  });
  sweepers.push(s);
  return { s, expired };
}

afterEach(() => {
  for (const s of sweepers.splice(0)) s.close();
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe('ReclaimSweeper expiry', () => {
  it('reclaims an entry once the epoch of its last operation ended idleTimeout ago, not before', () => {
    const { s, expired } = sweeper();
    const a = entry(1);
    s.track(a); // last operation during the epoch that the sweep at t=1000 ends
    expect(s.sweepNow(1_000)).toBe(0);
    expect(s.sweepNow(10_999)).toBe(0);
    expect(expired).toEqual([]);
    expect(s.sweepNow(11_000)).toBe(1);
    expect(expired).toEqual([1]);
    expect(s.isTracked(a)).toBe(false);
    expect(s.size).toBe(0);
  });

  it('keeps refreshed entries and reclaims the idle ones', () => {
    const { s, expired } = sweeper();
    const idle = entry(1);
    const busy = entry(2);
    s.track(idle);
    s.track(busy);
    for (let t = 1_000; t <= 30_000; t += 1_000) {
      s.refresh(busy);
      s.sweepNow(t);
    }
    expect(expired).toEqual([1]);
    expect(s.isTracked(busy)).toBe(true);
    // busy was last refreshed in the epoch that ended at 30_000.
    s.sweepNow(39_999);
    expect(expired).toEqual([1]);
    s.sweepNow(40_000);
    expect(expired).toEqual([1, 2]);
  });

  it('reclaims in order of last use, and tracking a tracked entry refreshes it', () => {
    const { s, expired } = sweeper();
    const es = [entry(1), entry(2), entry(3)];
    es.forEach((e) => s.track(e));
    s.sweepNow(1_000);
    s.track(es[0]!);
    s.refresh(es[1]!);
    s.sweepNow(2_000);
    expect(s.size).toBe(3);
    s.sweepNow(11_000);
    expect(expired).toEqual([3]);
    s.sweepNow(12_000);
    expect(expired).toEqual([3, 1, 2]);
  });

  it('ignores refresh and untrack on untracked entries', () => {
    const { s } = sweeper();
    const a = entry(1);
    s.refresh(a);
    s.untrack(a);
    expect(s.isTracked(a)).toBe(false);
    expect(s.size).toBe(0);
    expect(s.timerActive).toBe(false);
  });

  it('handles untrack of other entries, and of the current one, from inside onExpire', () => {
    const es = Array.from({ length: 6 }, (_, i) => entry(i));
    const seen: number[] = [];
    const { s } = sweeper({
      onExpire: (e) => {
        seen.push(e.id);
        s.untrack(e); // already untracked: a no-op
        if (e.id === 0) {
          s.untrack(es[1]!); // expired too, but untracked before its turn
          s.untrack(es[5]!); // not expired
        }
      },
    });
    es.slice(0, 4).forEach((e) => s.track(e));
    s.sweepNow(1_000);
    es.slice(4).forEach((e) => s.track(e));
    s.sweepNow(11_000);
    expect(seen).toEqual([0, 2, 3]);
    expect(s.isTracked(es[4]!)).toBe(true);
    expect(s.isTracked(es[5]!)).toBe(false);
    expect(s.size).toBe(1);
    // es[4] was tracked in the epoch that the sweep at 11_000 ended.
    s.sweepNow(20_999);
    expect(seen).toEqual([0, 2, 3]);
    s.sweepNow(21_000);
    expect(seen).toEqual([0, 2, 3, 4]);
    expect(s.size).toBe(0);
  });

  it('keeps entries tracked or refreshed from inside onExpire, and ignores nested sweeps', () => {
    const fresh = entry(99);
    const old = entry(1);
    const later = entry(2);
    const seen: number[] = [];
    const { s } = sweeper({
      onExpire: (e) => {
        seen.push(e.id);
        if (e !== old) return;
        s.track(fresh);
        s.refresh(later); // due in this sweep, but used before its turn came
        expect(s.sweepNow(1e12)).toBe(0);
      },
    });
    s.track(old);
    s.track(later);
    s.sweepNow(1_000);
    expect(s.sweepNow(11_000)).toBe(1);
    expect(seen).toEqual([1]);
    expect(s.isTracked(fresh)).toBe(true);
    expect(s.isTracked(later)).toBe(true);
    // Both were used in the epoch that the next sweep ends.
    expect(s.sweepNow(12_000)).toBe(0);
    expect(s.sweepNow(21_999)).toBe(0);
    expect(s.sweepNow(22_000)).toBe(2);
    expect(seen).toEqual([1, 99, 2]);
  });

  it('finishes the sweep on the next run when onExpire throws', () => {
    let fail = true;
    const seen: number[] = [];
    const { s } = sweeper({
      onExpire: (e) => {
        seen.push(e.id);
        if (fail) {
          fail = false;
          throw new Error('boom');
        }
      },
    });
    [entry(1), entry(2), entry(3)].forEach((e) => s.track(e));
    s.sweepNow(1_000);
    expect(() => s.sweepNow(11_000)).toThrow('boom');
    expect(s.size).toBe(2);
    expect(s.sweepNow(11_001)).toBe(2);
    expect(seen).toEqual([1, 2, 3]);
  });

  it('visits only expired entries and markers, however many idle entries are tracked', () => {
    const { s } = sweeper();
    const es = Array.from({ length: 100_000 }, (_, i) => entry(i));
    es.forEach((e) => s.track(e));
    s.sweepNow(1_000);
    expect(s.lastVisited).toBe(1);
    for (let i = 0; i < 10; i++) s.refresh(es[i]!);
    s.sweepNow(2_000);
    expect(s.lastVisited).toBe(1);
    expect(s.sweepNow(11_000)).toBe(99_990);
    // The due marker, its 100,000 entries (10 of them moved on, not reclaimed), the marker that stops the walk.
    expect(s.lastVisited).toBe(100_002);
    expect(s.reclaimed).toBe(99_990);
    expect(s.moved).toBe(10);
    expect(s.sweeps).toBe(3);
    expect(s.visited).toBe(1 + 1 + 100_002);
    // The moved entries are not visited again until their own epoch is due.
    s.sweepNow(11_500);
    expect(s.lastVisited).toBe(1);
    expect(s.sweepNow(12_000)).toBe(10);
  });

  it('reclaims exactly when the epoch of the last operation ended idleTimeout ago, under random schedules', () => {
    // Below 1024 ms the minimum epoch length is 0, so every sweep after activity ends the epoch, as modelled.
    const timeout = 1_000;
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            dt: fc.integer({ min: 0, max: 300 }),
            op: fc.constantFrom('track', 'refresh', 'untrack', 'sweep', 'sweep'),
            id: fc.integer({ min: 0, max: 7 }),
          }),
          { maxLength: 300 },
        ),
        (steps) => {
          let now = 0;
          // Model: per tracked entry, the time of its last operation and how many sweeps had run before it.
          const lastOp = new Map<number, { t: number; sweepsBefore: number }>();
          const sweepTimes: number[] = [];
          const es = Array.from({ length: 8 }, (_, i) => entry(i));
          const s = new ReclaimSweeper<Entry>({
            idleTimeoutMs: timeout,
            sweepIntervalMs: 100,
            clock: () => now,
            onExpire: (e) => {
              const op = lastOp.get(e.id)!;
              // Never early, and due: the epoch of its last operation ended idleTimeout ago.
              expect(now - op.t).toBeGreaterThanOrEqual(timeout);
              expect(sweepTimes[op.sweepsBefore]! + timeout).toBeLessThanOrEqual(now);
              lastOp.delete(e.id);
            },
          });
          for (const { dt, op, id } of steps) {
            now += dt;
            const e = es[id]!;
            if (op === 'track' || (op === 'refresh' && lastOp.has(id))) {
              s[op](e);
              lastOp.set(id, { t: now, sweepsBefore: sweepTimes.length });
            } else if (op === 'refresh') {
              s.refresh(e);
            } else if (op === 'untrack') {
              s.untrack(e);
              lastOp.delete(id);
            } else {
              sweepTimes.push(now);
              s.sweepNow();
              // Not late: whatever is still tracked was used in an epoch that ended less than idleTimeout ago.
              for (const { sweepsBefore } of lastOp.values()) {
                expect(sweepTimes[sweepsBefore]! + timeout).toBeGreaterThan(now);
              }
            }
            expect(s.size).toBe(lastOp.size);
            expect(s.markers).toBeLessThanOrEqual(sweepTimes.length + 1);
          }
          s.close();
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps one marker per active epoch within a timeout, and none for idle sweeps', () => {
    const { s } = sweeper({ idleTimeoutMs: 10_000 });
    const idle = Array.from({ length: 1_000 }, (_, i) => entry(i));
    idle.forEach((e) => s.track(e));
    for (let t = 1; t <= 9_000; t++) s.sweepNow(t);
    // Nothing happened after the first sweep: the open epoch is simply kept open.
    expect(s.markers).toBe(2);
    const busy = entry(-1);
    s.track(busy);
    for (let t = 9_001; t <= 100_000; t += 10) {
      s.refresh(busy);
      s.sweepNow(t);
    }
    expect(s.size).toBe(1);
    // Epochs at least 10_000 / 1024 = 9 ms long, within one timeout: about 1,000.
    expect(s.markers).toBeGreaterThan(900);
    expect(s.markers).toBeLessThanOrEqual(1_100);
  });

  it('bounds the markers of a very long timeout by lengthening its epochs', () => {
    const { s } = sweeper({ idleTimeoutMs: 1e9 });
    const busy = entry(1);
    s.track(busy);
    for (let t = 1; t <= 1e6; t += 100) {
      s.refresh(busy);
      s.sweepNow(t);
    }
    // Epochs of at least 1e9 / 1024 ≈ 976,563 ms: the first (ended by the first sweep), one full, the open one.
    expect(s.markers).toBe(3);
  });
});

describe('ReclaimSweeper timer', () => {
  it('starts an unref’d timer lazily and stops it at the first sweep with nothing tracked', () => {
    const spy = vi.spyOn(globalThis, 'setInterval');
    const { s } = sweeper();
    expect(s.timerActive).toBe(false);
    expect(spy).not.toHaveBeenCalled();
    const a = entry(1);
    const b = entry(2);
    s.track(a);
    s.track(b);
    expect(s.timerActive).toBe(true);
    expect(spy).toHaveBeenCalledTimes(1);
    expect(spy.mock.calls[0]![1]).toBe(1_000);
    const timer = spy.mock.results[0]!.value as NodeJS.Timeout;
    expect(timer.hasRef()).toBe(false);
    s.untrack(a);
    s.untrack(b);
    expect(s.timerActive).toBe(true);
    s.sweepNow(1);
    expect(s.timerActive).toBe(false);
    s.track(a);
    expect(spy).toHaveBeenCalledTimes(2);
    s.close();
    expect(s.timerActive).toBe(false);
    expect(s.isTracked(a)).toBe(false);
  });

  it('sweeps on its own: its timer reclaims an idle entry between the timeout and two intervals after it', () => {
    // The sweeper's own setInterval is what this tests, so its ticks are the events: fake timers fire them, and
    // the injected clock is the fake timers' clock. onExpire records the time of the tick that reclaimed, so
    // nothing polls for it.
    vi.useFakeTimers();
    const start = Date.now();
    const expired: Array<{ id: number; at: number }> = [];
    const { s } = sweeper({
      idleTimeoutMs: 200,
      sweepIntervalMs: 50,
      clock: () => Date.now() - start,
      onExpire: (e) => expired.push({ id: e.id, at: Date.now() - start }),
    });
    s.track(entry(1));
    vi.advanceTimersByTime(199);
    expect(expired).toEqual([]);
    // The documented bound: idleTimeoutMs + 2 × sweepIntervalMs after the last operation.
    vi.advanceTimersByTime(200 + 2 * 50 - 199);
    expect(expired.map((x) => x.id)).toEqual([1]);
    const reclaimedAt = expired[0]!.at;
    expect(reclaimedAt).toBeGreaterThanOrEqual(200);
    expect(reclaimedAt).toBeLessThanOrEqual(200 + 2 * 50);
    // The tick that reclaimed is a multiple of the interval: the timer, not a test step, did it.
    expect(reclaimedAt % 50).toBe(0);
    expect(s.timerActive).toBe(false);
  });

  it('derives the sweep interval from the timeout', () => {
    expect(sweeper({ idleTimeoutMs: 600_000, sweepIntervalMs: undefined }).s.sweepIntervalMs).toBe(1_000);
    expect(sweeper({ idleTimeoutMs: 200, sweepIntervalMs: undefined }).s.sweepIntervalMs).toBe(50);
    expect(sweeper({ idleTimeoutMs: 1, sweepIntervalMs: undefined }).s.sweepIntervalMs).toBe(10);
    expect(sweeper({ idleTimeoutMs: undefined, sweepIntervalMs: undefined }).s.idleTimeoutMs).toBe(DEFAULT_IDLE_TIMEOUT_MS);
  });

  it('is disabled by idleTimeoutMs 0: nothing tracked, no timer', () => {
    const spy = vi.spyOn(globalThis, 'setInterval');
    const { s, expired } = sweeper({ idleTimeoutMs: 0 });
    const a = entry(1);
    s.track(a);
    s.refresh(a);
    expect(s.enabled).toBe(false);
    expect(s.isTracked(a)).toBe(false);
    expect(s.size).toBe(0);
    expect(s.timerActive).toBe(false);
    expect(s.sweepNow(1e12)).toBe(0);
    expect(expired).toEqual([]);
    expect(spy).not.toHaveBeenCalled();
  });
});

describe('ReclaimSweeper allocation', () => {
  it('refreshes, and steady-state sweeps that move and keep entries, allocate nothing', () => {
    // 1 ms per sweep and a 1 s timeout: each entry is refreshed in every epoch and moved once per timeout.
    const { s } = sweeper({ idleTimeoutMs: 1_000 });
    const es = Array.from({ length: 1_000 }, (_, i) => entry(i));
    es.forEach((e) => s.track(e));
    let t = 0;
    const run = (n: number): void => {
      for (let i = 0; i < n; i++) {
        s.refresh(es[i % 1_000]!);
        if (i % 1_000 === 999) s.sweepNow(++t);
      }
    };
    const newSpaceUsed = (): number => getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')!.space_used_size;
    run(3_000_000); // warm up: optimise, grow the marker ring and pool to their steady size
    expect(s.moved).toBeGreaterThan(0);
    // A per-call allocation of even 16 bytes would be 16 MB per run: several scavenges and a visible delta.
    // Less than one byte per call means no call allocates; the slack absorbs the VM's own bookkeeping (code,
    // feedback). Retry because an unrelated GC (finishing concurrent marking) may land in the window.
    let gcs = -1;
    let delta = -1;
    for (let attempt = 0; attempt < 3 && (gcs !== 0 || delta >= 1_000_000); attempt++) {
      const profiler = new GCProfiler();
      profiler.start();
      const before = newSpaceUsed();
      run(1_000_000);
      delta = newSpaceUsed() - before;
      gcs = profiler.stop()?.statistics.length ?? -1;
    }
    expect(gcs).toBe(0);
    expect(delta).toBeLessThan(1_000_000);
    expect(s.size).toBe(1_000);
  });
});

describe('validateIdleTimeout', () => {
  it('accepts non-negative integers and env strings, defaulting to 10 minutes', () => {
    expect(validateIdleTimeout(undefined)).toBe(600_000);
    expect(validateIdleTimeout('')).toBe(600_000);
    expect(validateIdleTimeout(0)).toBe(0);
    expect(validateIdleTimeout('250')).toBe(250);
  });

  it('rejects anything else with a coded error naming the source', () => {
    for (const bad of [-1, 1.5, NaN, Infinity, '10s', '-5', null, {}]) {
      expect(() => validateIdleTimeout(bad)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
    }
    expect(() => validateIdleTimeout('x', 'SOCKGUARD_IDLE_TIMEOUT_MS')).toThrow('"SOCKGUARD_IDLE_TIMEOUT_MS"');
    expect(() => sweeper({ sweepIntervalMs: 0 })).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
  });
});
