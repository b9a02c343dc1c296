import { describe, expect, it } from 'vitest';
import {
  ActiveQuotaMeter,
  APP_ENGINE_QUOTAS,
  createQuotaMeter,
  NO_QUOTA,
  QUOTA_RESOURCES,
  validateQuotas,
  type QuotaMeter,
  type QuotaResource,
} from '../../src/service/quota.js';

const MINUTE = 60_000;
const DAY = 86_400_000;
// 2024-03-10T12:00:00.000Z: a whole minute, mid-day UTC.
const T0 = Date.UTC(2024, 2, 10, 12, 0, 0);

function meter(option: unknown, start = T0): { q: QuotaMeter; clock: { now: number } } {
  const clock = { now: start };
  return { q: createQuotaMeter(option, { clock: () => clock.now }), clock };
}

function overQuotaOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected ERR_SOCKGUARD_OVER_QUOTA');
}

describe("'app-engine' preset", () => {
  it('has the numbers of docs/service.md#quotas, bytes in binary units', () => {
    expect(APP_ENGINE_QUOTAS).toEqual({
      perDay: {
        creates: 864_000, connects: 864_000, binds: 864_000,
        sends: 663_552_000, receives: 663_552_000,
        bytesSent: 21_474_836_480, bytesReceived: 21_474_836_480,
      },
      perMinute: {
        creates: 4_800, connects: 4_800, binds: 4_800,
        sends: 3_686_400, receives: 3_686_400,
        bytesSent: 118_489_088, bytesReceived: 118_489_088,
      },
    });
    expect(Object.isFrozen(APP_ENGINE_QUOTAS.perDay)).toBe(true);
  });

  it('enforces the per-minute limit of each count resource', () => {
    for (const r of ['creates', 'connects', 'binds'] as const) {
      const { q } = meter('app-engine');
      for (let i = 0; i < 4_800; i++) q.charge(r);
      expect(overQuotaOf(() => q.charge(r))).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: r, window: 'minute', limit: 4_800 });
    }
  });

  it('enforces the byte limits in both windows', () => {
    const { q, clock } = meter('app-engine');
    q.charge('bytesSent', 118_489_088);
    expect(overQuotaOf(() => q.charge('bytesSent', 1))).toMatchObject({ resource: 'bytesSent', window: 'minute' });
    // 20 GiB is 181.2 × 113 MiB: 181 full minutes fit in the day, the 182nd does not.
    for (let m = 1; m < 181; m++) {
      clock.now += MINUTE;
      q.charge('bytesSent', 118_489_088);
    }
    clock.now += MINUTE;
    expect(overQuotaOf(() => q.charge('bytesSent', 118_489_088))).toMatchObject({ resource: 'bytesSent', window: 'day', limit: 21_474_836_480 });
  });
});

describe('charge / check, every resource × window', () => {
  const windows = ['perMinute', 'perDay'] as const;
  for (const r of QUOTA_RESOURCES) {
    for (const w of windows) {
      it(`${r} ${w}`, () => {
        const { q } = meter({ [w]: { [r]: 3 } });
        expect(q.check(r, 3)).toBeNull();
        q.charge(r);
        q.charge(r, 2);
        const err = q.check(r);
        expect(err).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: r, window: w === 'perMinute' ? 'minute' : 'day', limit: 3 });
        expect((err as Error).message).toContain(r);
        expect(overQuotaOf(() => q.charge(r))).toMatchObject({ resource: r });
        // Zero still fits at the limit; other resources are unaffected.
        expect(q.check(r, 0)).toBeNull();
        for (const other of QUOTA_RESOURCES) if (other !== r) q.charge(other, 1_000);
        expect(q.snapshot().exceeded).toBe(1);
      });
    }
  }

  it('reports the day window when both are exhausted', () => {
    const { q } = meter({ perMinute: { sends: 2 }, perDay: { sends: 2 } });
    q.charge('sends', 2);
    expect(q.check('sends')).toMatchObject({ window: 'day' });
  });

  it('charges nothing when it throws, in either window', () => {
    const { q } = meter({ perMinute: { connects: 5 }, perDay: { connects: 8 } });
    q.charge('connects', 4);
    expect(() => q.charge('connects', 2)).toThrow();
    expect(q.snapshot().minute.used.connects).toBe(4);
    expect(q.snapshot().day.used.connects).toBe(4);
    q.charge('connects', 1);
    expect(q.snapshot().day.used.connects).toBe(5);
  });

  it('check never charges', () => {
    const { q } = meter({ perMinute: { creates: 1 } });
    for (let i = 0; i < 10; i++) expect(q.check('creates')).toBeNull();
    expect(q.snapshot().minute.used.creates).toBe(0);
  });

  it('rejects unknown resources and bad amounts', () => {
    const { q } = meter({ perMinute: { creates: 1 } });
    expect(() => q.charge('sockets' as QuotaResource)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
    for (const bad of [-1, NaN, Infinity, '1']) {
      expect(() => q.charge('creates', bad as number)).toThrow(expect.objectContaining({ code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
    }
  });
});

describe('sends and receives', () => {
  it('chargeSend counts the call and the bytes, all or nothing', () => {
    const { q } = meter({ perMinute: { sends: 3, bytesSent: 100 } });
    q.chargeSend(60);
    expect(overQuotaOf(() => q.chargeSend(41))).toMatchObject({ resource: 'bytesSent', window: 'minute' });
    let s = q.snapshot().minute.used;
    expect([s.sends, s.bytesSent]).toEqual([1, 60]);
    q.chargeSend(40);
    q.chargeSend(0);
    expect(overQuotaOf(() => q.chargeSend(0))).toMatchObject({ resource: 'sends' });
    s = q.snapshot().minute.used;
    expect([s.sends, s.bytesSent]).toEqual([3, 100]);
  });

  it('recordReceive always charges and reports crossing a limit', () => {
    const { q } = meter({ perDay: { bytesReceived: 100 }, perMinute: { receives: 10 } });
    expect(q.recordReceive(60)).toBeNull();
    expect(q.recordReceive(40)).toBeNull(); // exactly at the limit is within it
    expect(q.recordReceive(1)).toMatchObject({ code: 'ERR_SOCKGUARD_OVER_QUOTA', resource: 'bytesReceived', window: 'day', limit: 100 });
    const s = q.snapshot();
    expect([s.day.used.receives, s.day.used.bytesReceived]).toEqual([3, 101]);
    expect(q.recordReceive(0)).toMatchObject({ resource: 'bytesReceived' });
    expect(s.exceeded).toBe(1);
  });

  it('recordReceive reports the receive-call limit too', () => {
    const { q } = meter({ perMinute: { receives: 1 } });
    expect(q.recordReceive(5)).toBeNull();
    expect(q.recordReceive(5)).toMatchObject({ resource: 'receives', window: 'minute' });
  });
});

describe('windows', () => {
  it('roll over at each UTC minute boundary, keeping the day', () => {
    const { q, clock } = meter({ perMinute: { connects: 2 }, perDay: { connects: 5 } }, T0 + 59_000);
    q.charge('connects', 2);
    expect(q.check('connects')).toMatchObject({ window: 'minute' });
    clock.now = T0 + MINUTE - 1;
    expect(q.check('connects')).toMatchObject({ window: 'minute' });
    clock.now = T0 + MINUTE;
    expect(q.check('connects')).toBeNull();
    q.charge('connects', 2);
    clock.now += MINUTE;
    q.charge('connects');
    expect(q.check('connects')).toMatchObject({ window: 'day', limit: 5 });
    const snap = q.snapshot();
    expect(snap.minute.start).toBe(T0 + 2 * MINUTE);
    expect(snap.day.start).toBe(Date.UTC(2024, 2, 10));
    expect(snap.day.used.connects).toBe(5);
  });

  it('roll the day over at 00:00 UTC', () => {
    const midnight = Date.UTC(2024, 2, 11);
    const { q, clock } = meter({ perDay: { binds: 1 } }, midnight - 1);
    q.charge('binds');
    expect(q.check('binds')).toMatchObject({ window: 'day' });
    clock.now = midnight;
    expect(q.check('binds')).toBeNull();
    q.charge('binds');
    clock.now = midnight + DAY - 1;
    expect(q.check('binds')).not.toBeNull();
    clock.now = midnight + DAY;
    expect(q.check('binds')).toBeNull();
  });

  it('keep the current windows when the clock steps backwards', () => {
    const { q, clock } = meter({ perMinute: { creates: 1 }, perDay: { creates: 10 } });
    q.charge('creates');
    clock.now -= 5 * MINUTE;
    expect(q.check('creates')).toMatchObject({ window: 'minute' });
    clock.now -= DAY;
    expect(q.snapshot().day.used.creates).toBe(1);
  });
});

describe('option validation and the null meter', () => {
  it('returns the shared null meter when nothing is limited', () => {
    for (const opt of [undefined, {}, { perMinute: {} }, { perDay: { sends: Infinity } }, { perMinute: { creates: undefined } }]) {
      expect(createQuotaMeter(opt)).toBe(NO_QUOTA);
    }
    expect(NO_QUOTA.enabled).toBe(false);
    expect(() => NO_QUOTA.charge('sends', 1e30)).not.toThrow();
    expect(NO_QUOTA.check('sends', 1e30)).toBeNull();
    expect(() => NO_QUOTA.chargeSend(1e30)).not.toThrow();
    expect(NO_QUOTA.recordReceive(1e30)).toBeNull();
    expect(NO_QUOTA.snapshot().day.used.sends).toBe(0);
  });

  it('builds an active meter otherwise', () => {
    const q = createQuotaMeter('app-engine');
    expect(q).toBeInstanceOf(ActiveQuotaMeter);
    expect(q.enabled).toBe(true);
    expect(q.snapshot().limits.perDay).toEqual(APP_ENGINE_QUOTAS.perDay);
  });

  it('rejects malformed options with coded TypeErrors naming the option', () => {
    const cases: [unknown, string][] = [
      ['google', '"quotas"'],
      [42, '"quotas"'],
      [null, '"quotas"'],
      [[], '"quotas"'],
      [{ perHour: {} }, '"quotas.perHour"'],
      [{ perMinute: 5 }, '"quotas.perMinute"'],
      [{ perMinute: { sockets: 1 } }, '"quotas.perMinute.sockets"'],
      [{ perDay: { sends: -1 } }, '"quotas.perDay.sends"'],
      [{ perDay: { sends: 1.5 } }, '"quotas.perDay.sends"'],
      [{ perDay: { sends: '10' } }, '"quotas.perDay.sends"'],
      [{ perDay: { sends: NaN } }, '"quotas.perDay.sends"'],
    ];
    for (const [opt, name] of cases) {
      expect(() => validateQuotas(opt)).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_SOCKGUARD_INVALID_OPTION' }));
      expect(() => createQuotaMeter(opt)).toThrow(name);
    }
  });

  it('does not share state between meters or with the preset', () => {
    const a = meter('app-engine').q;
    const b = meter('app-engine').q;
    a.charge('creates', 10);
    expect(b.snapshot().day.used.creates).toBe(0);
    const limits = validateQuotas('app-engine')!;
    limits.perDay.creates = 1;
    expect(APP_ENGINE_QUOTAS.perDay.creates).toBe(864_000);
  });

  it('allows a limit of 0: nothing of that resource', () => {
    const { q } = meter({ perDay: { binds: 0 } });
    expect(q.check('binds')).toMatchObject({ resource: 'binds', limit: 0 });
    q.charge('creates', 1e9);
  });
});
