/**
 * Fleet quotas and the fleet ledger (docs/service.md#fleet-quotas-and-ledger): one application's quota windows
 * and usage shared by every process that names the same `appId` and `store`.
 *
 * Quotas work on leases. A process reserves a batch of a resource from a window's remaining budget in one
 * atomic script (it takes min(batch, limit - used) in the minute and the day window together) and spends it
 * locally, so the hot path never waits for the store:
 * - creates, connects and binds are exact: with no lease held, a TCP connect waits for a reservation before
 *   its kernel connect, and the fleet's count never passes the limit. The next batch is reserved when half of
 *   the current one is spent, so a connect waits only when a process spends half a batch within one round
 *   trip. The batch therefore adapts: it starts at min(100, limit/64), grows at each answer to four times what
 *   was spent while that reservation was in flight (at least double if a caller found the lease empty), and
 *   never passes limit/64; each tick it halves towards four times the largest such spend, and a process that
 *   spent nothing in a tick goes back to the start and returns leases beyond it. A process so holds less than
 *   1.5 batches (under half a batch left when it asked, plus the grant): under 1.5/64 of a limit of 64 or
 *   more (2.3 %) while busy, and 1.5 starting batches once idle. Unused leases go back to the day window when
 *   the minute ends and to both windows when the layer closes.
 * - sends, receives and bytes each way are batched: the next batch is reserved in the background when half
 *   of the current one is spent. Use beyond the lease while that reservation is under way is debt, reported
 *   with the next reservation, and at most one batch plus one operation: the fleet can go over a limit by at
 *   most (processes × (batch + largest single operation)).
 *
 * The ledger is flushed every `storeFlushMs` as cumulative per-process totals with a sequence number; the
 * script applies the difference from what it last saw from that process, once, so a retried or reordered
 * flush never counts twice. `fleetUsage()` flushes first, so its answer includes this process up to the call.
 */
import { channel } from 'node:diagnostics_channel';
import { randomUUID } from 'node:crypto';
import { codes, invalidOption, overQuota, describeValue, type OverQuotaError } from '../errors.js';
import type { Usage } from './ledger.js';
import {
  DAY_MS,
  MINUTE_MS,
  QUOTA_RESOURCES,
  checkAmount,
  indexOf,
  toLimitArray,
  windowSnapshot,
  type QuotaLimits,
  type QuotaMeter,
  type QuotaResource,
  type QuotaSnapshot,
} from './quota.js';
import { script, storeUnavailable, type Store, type StoreArg } from './store.js';

export type StoreFailureMode = 'open' | 'closed';

const N = QUOTA_RESOURCES.length;
const EXACT = new Set<number>([indexOf('creates'), indexOf('connects'), indexOf('binds')]);
const SENDS = indexOf('sends');
const RECEIVES = indexOf('receives');
const BYTES_SENT = indexOf('bytesSent');
const BYTES_RECEIVED = indexOf('bytesReceived');

/** Window hashes outlive their window a little, so a late return or debt still finds its key. */
const MINUTE_TTL_S = 180;
const DAY_TTL_S = 2 * 86_400 + 3600;
/** A process's ledger entry outlives any store outage it could recover from without counting twice. */
const PROCESS_TTL_S = 7 * 86_400;

const storeChannel = channel('sockguard:store');

const fmt = `local function n(x) return string.format('%.0f', x) end
`;

/**
 * KEYS: minute hash, day hash. ARGV: minute TTL, day TTL, then per resource: field, want, minute limit, day
 * limit (-1: none), debt. Debt is added first (it was spent); then the grant is what both windows have left,
 * up to want. Returns per resource: grant, and which window limited it (1 minute, 2 day, 0 neither).
 */
const RESERVE = script(`${fmt}
local out = {}
for i = 3, #ARGV, 5 do
  local f = ARGV[i]
  local want, lm, ld, debt = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local um = tonumber(redis.call('HGET', KEYS[1], f) or '0') + debt
  local ud = tonumber(redis.call('HGET', KEYS[2], f) or '0') + debt
  local grant, which = want, 0
  if lm >= 0 and lm - um <= grant then grant = lm - um; which = 1 end
  if ld >= 0 and ld - ud <= grant then grant = ld - ud; which = 2 end
  if grant < 0 then grant = 0 end
  if grant == want and want > 0 then which = 0 end
  redis.call('HSET', KEYS[1], f, n(um + grant))
  redis.call('HSET', KEYS[2], f, n(ud + grant))
  out[#out + 1] = grant
  out[#out + 1] = which
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return out
`);

/**
 * KEYS: window hashes. ARGV: field, delta pairs (unused leases negative, debt positive). A window whose key is
 * gone has ended: nothing to give back to it.
 */
const SETTLE = script(`${fmt}
for k = 1, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    for i = 1, #ARGV, 2 do
      local v = tonumber(redis.call('HGET', KEYS[k], ARGV[i]) or '0') + tonumber(ARGV[i + 1])
      if v < 0 then v = 0 end
      redis.call('HSET', KEYS[k], ARGV[i], n(v))
    end
  end
end
return 1
`);

/**
 * KEYS: fleet totals hash, this process's hash, live-process set. ARGV: process id, sequence, process TTL (s),
 * liveness (ms), leaving (1/0), then field, cumulative value pairs. Applied once per sequence: the totals move
 * by the difference from the process's last applied values. socketsOpen is a gauge summed over live processes
 * when read. Returns the number of live processes.
 */
const FLUSH = script(`${fmt}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seq = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[2], '_seq') or '-1')
if seq > last then
  for i = 6, #ARGV, 2 do
    local f, v = ARGV[i], tonumber(ARGV[i + 1])
    local old = tonumber(redis.call('HGET', KEYS[2], f) or '0')
    if f ~= 'socketsOpen' and v ~= old then redis.call('HINCRBY', KEYS[1], f, n(v - old)) end
    redis.call('HSET', KEYS[2], f, n(v))
  end
  redis.call('HSET', KEYS[2], '_seq', n(seq))
end
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', n(now))
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[3], n(now + tonumber(ARGV[4])), ARGV[1])
end
return redis.call('ZCARD', KEYS[3])
`);

/**
 * KEYS: totals hash, live-process set. ARGV: prefix of process hashes. Returns the totals as field, value pairs
 * and the open sockets of the live processes.
 */
const READ = script(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
local live = redis.call('ZRANGE', KEYS[2], 0, -1)
local open = 0
for _, id in ipairs(live) do
  open = open + tonumber(redis.call('HGET', ARGV[1] .. id, 'socketsOpen') or '0')
end
local out = redis.call('HGETALL', KEYS[1])
out[#out + 1] = 'socketsOpen'
out[#out + 1] = open
return out
`);

const LEDGER_FIELDS = ['bytesSent', 'bytesReceived', 'socketsOpen', 'socketsCreated', 'connects', 'denied', 'reclaimed', 'sendCalls', 'receiveCalls', 'overQuota'] as const;

export interface FleetOptions {
  appId: string;
  store: Store;
  failure: StoreFailureMode;
  flushMs: number;
  clock: () => number;
  limits: { perMinute: Partial<QuotaLimits>; perDay: Partial<QuotaLimits> } | null;
  usage: () => Usage;
}

export function validateStoreFailure(value: unknown): StoreFailureMode {
  if (value === undefined) return 'open';
  if (value !== 'open' && value !== 'closed') throw invalidOption('storeFailure', `must be 'open' or 'closed'. Received ${describeValue(value)}`);
  return value;
}

export function validateStoreFlushMs(value: unknown): number {
  if (value === undefined) return 1000;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 10 || value > 2 ** 31 - 1) {
    throw invalidOption('storeFlushMs', `must be an integer number of milliseconds between 10 and ${2 ** 31 - 1}. Received ${describeValue(value)}`);
  }
  return value;
}

/** Hash tags keep one app's keys in one cluster slot; braces in the app id would end the tag early. */
function keyPrefix(appId: string): string {
  const tag = /[{}]/.test(appId) ? `hex:${Buffer.from(appId).toString('hex')}` : appId;
  return `sockguard:{${tag}}:`;
}

/** One application's share of the store: its state, its ledger flush and, with quotas, its meter. */
export class Fleet {
  readonly appId: string;
  readonly failure: StoreFailureMode;
  readonly meter: FleetQuotaMeter | undefined;
  readonly #store: Store;
  readonly #usage: () => Usage;
  readonly #prefix: string;
  readonly #id = randomUUID();
  readonly #flushMs: number;
  readonly #timer: NodeJS.Timeout;
  #seq = 0;
  #up = true;
  /** Live processes of the app as of the last flush: the open mode's local share divides limits by it. */
  processes = 1;
  #flushing: Promise<void> | undefined;
  #closed = false;

  constructor(options: FleetOptions) {
    this.appId = options.appId;
    this.failure = options.failure;
    this.#store = options.store;
    this.#usage = options.usage;
    this.#flushMs = options.flushMs;
    this.#prefix = keyPrefix(options.appId);
    this.#store.onError((err) => this.failed(err));
    this.meter = options.limits ? new FleetQuotaMeter(this, options.limits, options.clock) : undefined;
    this.#timer = setInterval(() => this.#tick(), options.flushMs);
    this.#timer.unref();
    this.meter?.prefetch();
  }

  get up(): boolean {
    return this.#up;
  }

  /** @internal one script call; every failure marks the store down and rejects with a coded error */
  run(s: typeof RESERVE, keys: readonly string[], args: readonly StoreArg[]): Promise<unknown> {
    return this.#store.run(s, keys, args).then(
      (v) => {
        this.#setUp(true);
        return v;
      },
      (err: Error) => {
        this.failed(err);
        throw err;
      },
    );
  }

  key(suffix: string): string {
    return this.#prefix + suffix;
  }

  failed(err: Error): void {
    this.#setUp(false, err);
  }

  #setUp(up: boolean, err?: Error): void {
    if (this.#up === up || this.#closed) return;
    this.#up = up;
    if (storeChannel.hasSubscribers) {
      storeChannel.publish({ appId: this.appId, state: up ? 'up' : 'down', failure: this.failure, ...(err ? { error: err } : {}) });
    }
    if (up) this.meter?.prefetch();
  }

  #tick(): void {
    this.meter?.tick();
    // A store that hangs answers each flush only at the timeout: ticks must not queue flushes behind it.
    if (this.#flushing === undefined) this.flush().catch(() => {});
  }

  /** Sends this process's cumulative ledger; concurrent callers share one round trip, later ones start another. */
  flush(leaving = false): Promise<void> {
    const run = async () => {
      const u = this.#usage();
      const args: StoreArg[] = [this.#id, ++this.#seq, PROCESS_TTL_S, Math.max(10_000, 5 * this.#flushMs), leaving ? 1 : 0];
      for (const f of LEDGER_FIELDS) args.push(f, u[f] as number);
      const live = await this.run(FLUSH, [this.key('usage'), this.key(`proc:${this.#id}`), this.key('procs')], args);
      this.processes = Math.max(1, Number(live) || 1);
    };
    const prev = this.#flushing ?? Promise.resolve();
    const next = prev.catch(() => {}).then(run);
    this.#flushing = next;
    void next.finally(() => {
      if (this.#flushing === next) this.#flushing = undefined;
    }).catch(() => {});
    return next;
  }

  /** The app's totals across live processes; this process's counters are flushed first. */
  async fleetUsage(): Promise<Usage> {
    await this.flush();
    const reply = (await this.run(READ, [this.key('usage'), this.key('procs')], [this.key('proc:')])) as unknown[];
    const got: Record<string, number> = Object.create(null);
    for (let i = 0; i + 1 < reply.length; i += 2) got[String(reply[i])] = Number(reply[i + 1]);
    const v = (f: string) => got[f] ?? 0;
    return {
      appId: this.appId,
      bytesSent: v('bytesSent'),
      bytesReceived: v('bytesReceived'),
      billedBytes: v('bytesSent') + v('bytesReceived'),
      socketsOpen: v('socketsOpen'),
      socketsCreated: v('socketsCreated'),
      connects: v('connects'),
      denied: v('denied'),
      reclaimed: v('reclaimed'),
      sendCalls: v('sendCalls'),
      receiveCalls: v('receiveCalls'),
      overQuota: v('overQuota'),
    };
  }

  /** Returns unused leases, reports debt, flushes the ledger one last time and leaves; never rejects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#timer);
    await Promise.allSettled([this.meter?.settleAll(), this.flush(true)]);
    this.#closed = true;
    await this.#store.close();
  }
}

/**
 * The fleet's quota meter: the QuotaMeter shape the socket layer already calls, spending leases locally.
 * Windows are the same fixed UTC minute and day windows as the local meter's, read from the layer's clock.
 */
export class FleetQuotaMeter implements QuotaMeter {
  readonly enabled = true;
  readonly #fleet: Fleet;
  readonly #clock: () => number;
  readonly #limits: { perMinute: Partial<QuotaLimits>; perDay: Partial<QuotaLimits> };
  readonly #minuteLimit: Float64Array;
  readonly #dayLimit: Float64Array;
  readonly #limited: boolean[] = [];
  /** What the next reservation asks for; for exact resources it moves between #base and #cap. */
  readonly #batch = new Float64Array(N);
  readonly #base = new Float64Array(N);
  readonly #cap = new Float64Array(N);
  /** Units ever spent, never reset: what a reservation saw spent while it was in flight is a difference. */
  readonly #spent = new Float64Array(N);
  readonly #spentAtTick = new Float64Array(N);
  /** Since the last tick: the most spent during one reservation's round trip, and how many answered. */
  readonly #peak = new Float64Array(N);
  readonly #answers = new Uint32Array(N);
  /** A caller found no lease while the store was up: 1 since the last reservation left, 2 since the last tick. */
  readonly #starved = new Uint8Array(N);
  /** Granted and not yet spent, for the current minute and day. */
  readonly #lease = new Float64Array(N);
  /** Spent beyond the lease and not yet reported (batched resources only). */
  readonly #debt = new Float64Array(N);
  /** The last reservation got nothing: 0, or 1/2 for the window (minute/day) that ran out. */
  readonly #exhausted = new Uint8Array(N);
  readonly #inflight: Array<Promise<boolean> | undefined> = new Array(N).fill(undefined);
  /** This process's own use in the current windows: the open mode's local share is checked against it. */
  readonly #minuteUsed = new Float64Array(N);
  readonly #dayUsed = new Float64Array(N);
  #minute = -Infinity;
  #day = -Infinity;
  #exceeded = 0;

  constructor(fleet: Fleet, limits: { perMinute: Partial<QuotaLimits>; perDay: Partial<QuotaLimits> }, clock: () => number) {
    this.#fleet = fleet;
    this.#clock = clock;
    this.#limits = { perMinute: { ...limits.perMinute }, perDay: { ...limits.perDay } };
    this.#minuteLimit = toLimitArray(limits.perMinute);
    this.#dayLimit = toLimitArray(limits.perDay);
    for (let i = 0; i < N; i++) {
      const least = Math.min(this.#minuteLimit[i]!, this.#dayLimit[i]!);
      this.#limited[i] = least !== Infinity;
      // Batched resources: 1/64 of the tighter limit, which bounds the overshoot per process. Exact resources
      // start small (at most 100), so leases parked in idle processes cost little of the limit, and grow up to
      // the same 1/64 when a process spends faster than a round trip can refill (#adapt).
      const sixtyFourth = least === Infinity ? 0 : Math.max(1, Math.floor(least / 64));
      this.#base[i] = EXACT.has(i) ? Math.min(100, sixtyFourth) : sixtyFourth;
      this.#cap[i] = sixtyFourth;
      this.#batch[i] = this.#base[i]!;
    }
    this.#roll();
  }

  /** The batch the next reservation asks for (tests and docs quote it). */
  batchOf(resource: QuotaResource): number {
    return this.#batch[indexOf(resource)]!;
  }

  /** The least and the most the batch of `resource` can be. */
  batchBounds(resource: QuotaResource): { base: number; cap: number } {
    const i = indexOf(resource);
    return { base: this.#base[i]!, cap: this.#cap[i]! };
  }

  /** Leases of `resource` this process holds, unspent. */
  leaseOf(resource: QuotaResource): number {
    return this.#lease[indexOf(resource)]!;
  }

  /**
   * A reservation answered: `during` units were spent while it was in flight. The refill starts at half a
   * batch, so a batch of four round trips' spend leaves the answer a round trip to spare; a caller that found
   * the lease empty meanwhile means the spend seen was cut short by the wait, so the batch at least doubles.
   * Growth is immediate, shrinking waits for the tick, so one slow round trip is remembered for a while.
   */
  #adapt(i: number, during: number): void {
    this.#answers[i]!++;
    if (during > this.#peak[i]!) this.#peak[i] = during;
    const starved = this.#starved[i]! & 1;
    this.#starved[i]! &= ~1;
    if (this.#cap[i] === this.#base[i]) return;
    const want = starved ? Math.max(2 * this.#batch[i]!, 4 * during) : 4 * during;
    if (want > this.#batch[i]!) this.#batch[i] = Math.min(this.#cap[i]!, Math.ceil(want));
  }

  /**
   * Each tick: a batch grown for a slow round trip or a burst comes down by half per interval, not below what
   * the interval's round trips needed; a process idle for a whole interval needs none of it, and leases it
   * parks are lost to the others until the minute ends, so it keeps one starting batch and gives back the rest.
   * Returns the units to give back.
   */
  #shrink(i: number): number {
    const used = this.#spent[i]! - this.#spentAtTick[i]!;
    this.#spentAtTick[i] = this.#spent[i]!;
    const peak = this.#peak[i]!;
    const answers = this.#answers[i]!;
    const starved = this.#starved[i]! & 2;
    this.#peak[i] = 0;
    this.#answers[i] = 0;
    this.#starved[i]! &= ~2;
    const base = this.#base[i]!;
    if (this.#cap[i] === base || this.#batch[i] === base) return 0;
    if (used === 0) {
      this.#batch[i] = base;
      if (this.#inflight[i] !== undefined || this.#lease[i]! <= base) return 0;
      const excess = this.#lease[i]! - base;
      this.#lease[i] = base;
      return excess;
    }
    // Without an answer in the interval (a round trip longer than it) there is nothing to go by.
    if (answers > 0 && starved === 0) {
      this.#batch[i] = Math.min(this.#batch[i]!, Math.max(base, Math.ceil(4 * peak), Math.ceil(this.#batch[i]! / 2)));
    }
    return 0;
  }

  #windowKeys(minute: number, day: number): [string, string] {
    return [this.#fleet.key(`q:m:${minute * MINUTE_MS}`), this.#fleet.key(`q:d:${day * DAY_MS}`)];
  }

  #roll(): void {
    const minute = Math.floor(this.#clock() / MINUTE_MS);
    if (minute <= this.#minute) return;
    const oldDay = this.#day;
    const day = Math.floor((minute * MINUTE_MS) / DAY_MS);
    if (this.#minute !== -Infinity) {
      // The minute's unspent leases go back to the day they were also taken from; debt is still owed to it.
      const args: StoreArg[] = [];
      for (let i = 0; i < N; i++) {
        const delta = this.#debt[i]! - this.#lease[i]!;
        if (delta !== 0) args.push(QUOTA_RESOURCES[i]!, delta);
      }
      if (args.length > 0 && this.#fleet.up) {
        const [, dayKey] = this.#windowKeys(this.#minute, oldDay);
        this.#fleet.run(SETTLE, [dayKey], args).catch(() => {});
      }
    }
    this.#minute = minute;
    this.#lease.fill(0);
    this.#debt.fill(0);
    this.#exhausted.fill(0);
    this.#minuteUsed.fill(0);
    if (day > this.#day) {
      this.#day = day;
      this.#dayUsed.fill(0);
    }
  }

  /** Reserves a batch of each of `resources` (those not already being reserved); resolves when all answered. */
  #reserve(resources: number[]): Promise<boolean> {
    const fresh = resources.filter((i) => this.#inflight[i] === undefined);
    const waits = resources.map((i) => this.#inflight[i]).filter((p): p is Promise<boolean> => p !== undefined);
    if (fresh.length > 0) {
      const minute = this.#minute;
      const day = this.#day;
      const keys = this.#windowKeys(minute, day);
      const args: StoreArg[] = [MINUTE_TTL_S, DAY_TTL_S];
      const debts: number[] = [];
      const wants: number[] = [];
      const spentAt: number[] = [];
      for (const i of fresh) {
        const debt = this.#debt[i]!;
        const want = this.#batch[i]!;
        debts.push(debt);
        wants.push(want);
        spentAt.push(this.#spent[i]!);
        this.#starved[i]! &= ~1;
        const lm = this.#minuteLimit[i]!;
        const ld = this.#dayLimit[i]!;
        args.push(QUOTA_RESOURCES[i]!, want, lm === Infinity ? -1 : lm, ld === Infinity ? -1 : ld, debt);
      }
      const p = this.#fleet.run(RESERVE, keys, args).then(
        (reply) => {
          const r = reply as number[];
          const stale = minute !== this.#minute;
          const giveBack: StoreArg[] = [];
          fresh.forEach((i, k) => {
            const grant = Number(r[2 * k]);
            const which = Number(r[2 * k + 1]);
            if (stale) {
              if (grant > 0) giveBack.push(QUOTA_RESOURCES[i]!, -grant);
              return;
            }
            this.#debt[i]! -= debts[k]!;
            this.#lease[i]! += grant;
            this.#exhausted[i] = grant === 0 && wants[k]! > 0 ? which || 1 : 0;
            if (EXACT.has(i)) this.#adapt(i, this.#spent[i]! - spentAt[k]!);
          });
          // Granted for a window that ended on the way: back to that day, which the next minute shares.
          if (giveBack.length > 0) this.#fleet.run(SETTLE, [keys[1]], giveBack).catch(() => {});
          return true;
        },
        () => false,
      );
      const done = p.finally(() => {
        for (const i of fresh) if (this.#inflight[i] === done) this.#inflight[i] = undefined;
      });
      for (const i of fresh) this.#inflight[i] = done;
      waits.push(done);
    }
    return Promise.all(waits).then((oks) => oks.every(Boolean));
  }

  /** Reserves leases in the background for every limited resource that runs low. */
  prefetch(): void {
    if (!this.#fleet.up) return;
    this.#roll();
    const low: number[] = [];
    for (let i = 0; i < N; i++) {
      if (this.#limited[i] && this.#inflight[i] === undefined && this.#exhausted[i] === 0 && this.#lease[i]! * 2 < this.#batch[i]!) low.push(i);
    }
    if (low.length > 0) void this.#reserve(low);
  }

  /** Every flush interval: rolls windows, reports debt, and asks again for what ran out (others may have returned some). */
  tick(): void {
    this.#roll();
    const again: number[] = [];
    const giveBack: StoreArg[] = [];
    for (let i = 0; i < N; i++) {
      if (!this.#limited[i]) continue;
      if (EXACT.has(i) && this.#fleet.up) {
        const excess = this.#shrink(i);
        if (excess > 0) giveBack.push(QUOTA_RESOURCES[i]!, -excess);
      }
      if (this.#inflight[i] === undefined && (this.#debt[i]! > 0 || this.#exhausted[i] !== 0)) again.push(i);
    }
    if (giveBack.length > 0) this.#fleet.run(SETTLE, this.#windowKeys(this.#minute, this.#day), giveBack).catch(() => {});
    if (again.length > 0) void this.#reserve(again);
    this.prefetch();
  }

  /** Returns unspent leases to both windows and reports debt (the layer is closing). */
  settleAll(): Promise<void> {
    this.#roll();
    const args: StoreArg[] = [];
    for (let i = 0; i < N; i++) {
      const delta = this.#debt[i]! - this.#lease[i]!;
      if (delta !== 0) args.push(QUOTA_RESOURCES[i]!, delta);
    }
    this.#lease.fill(0);
    this.#debt.fill(0);
    if (args.length === 0 || !this.#fleet.up) return Promise.resolve();
    return this.#fleet.run(SETTLE, this.#windowKeys(this.#minute, this.#day), args).then(() => undefined);
  }

  #share(i: number, window: 1 | 2): number {
    const limit = window === 1 ? this.#minuteLimit[i]! : this.#dayLimit[i]!;
    return limit === Infinity ? Infinity : Math.floor(limit / this.#fleet.processes);
  }

  /** With the store down: the open mode's local share, or the closed mode's refusal. */
  #degraded(i: number, amount: number): Error | null {
    if (this.#fleet.failure === 'closed') return storeUnavailable(`${QUOTA_RESOURCES[i]} needs a reservation (storeFailure: 'closed')`);
    if (this.#dayUsed[i]! + amount > this.#share(i, 2)) return overQuota(QUOTA_RESOURCES[i]!, 'day', this.#dayLimit[i]!);
    if (this.#minuteUsed[i]! + amount > this.#share(i, 1)) return overQuota(QUOTA_RESOURCES[i]!, 'minute', this.#minuteLimit[i]!);
    return null;
  }

  #exhaustedError(i: number): OverQuotaError {
    return this.#exhausted[i] === 2 ? overQuota(QUOTA_RESOURCES[i]!, 'day', this.#dayLimit[i]!) : overQuota(QUOTA_RESOURCES[i]!, 'minute', this.#minuteLimit[i]!);
  }

  /** Whether `amount` may be spent now, without spending it. */
  #over(i: number, amount: number): Error | null {
    if (!this.#limited[i] || this.#lease[i]! >= amount) return null;
    if (!this.#fleet.up) return this.#degraded(i, amount);
    if (this.#exhausted[i] !== 0) return this.#exhaustedError(i);
    if (EXACT.has(i)) {
      this.#starved[i] = 3;
      return overQuota(QUOTA_RESOURCES[i]!, this.#minuteLimit[i] !== Infinity ? 'minute' : 'day', Math.min(this.#minuteLimit[i]!, this.#dayLimit[i]!));
    }
    // Traffic never waits for the store: beyond the lease it is debt until the next batch answers (at most one
    // store timeout, after which the store counts as down and storeFailure decides).
    return null;
  }

  #spend(i: number, amount: number): void {
    this.#minuteUsed[i]! += amount;
    this.#dayUsed[i]! += amount;
    if (!this.#limited[i]) return;
    this.#spent[i]! += amount;
    const lease = this.#lease[i]!;
    if (lease >= amount) this.#lease[i] = lease - amount;
    else {
      this.#lease[i] = 0;
      this.#debt[i]! += amount - lease;
    }
    if (this.#inflight[i] === undefined && this.#exhausted[i] === 0 && this.#fleet.up && this.#lease[i]! * 2 < this.#batch[i]!) void this.#reserve([i]);
  }

  #refuse<E extends Error>(err: E): E {
    if ((err as Error & { code?: string }).code === codes.OVER_QUOTA) this.#exceeded++;
    return err;
  }

  check(resource: QuotaResource, amount = 1): Error | null {
    const i = indexOf(resource);
    checkAmount(amount);
    this.#roll();
    const err = this.#over(i, amount);
    // A synchronous caller (a UDP create, bind or connect) cannot wait: start the reservation it lacked.
    if (err !== null && EXACT.has(i)) this.prefetch();
    return err;
  }

  charge(resource: QuotaResource, amount = 1): void {
    const i = indexOf(resource);
    checkAmount(amount);
    this.#roll();
    const err = this.#over(i, amount);
    if (err !== null) throw this.#refuse(err);
    this.#spend(i, amount);
  }

  chargeSend(bytes: number): void {
    checkAmount(bytes);
    this.#roll();
    const err = this.#over(SENDS, 1) ?? this.#over(BYTES_SENT, bytes);
    if (err !== null) throw this.#refuse(err);
    this.#spend(SENDS, 1);
    this.#spend(BYTES_SENT, bytes);
  }

  recordReceive(bytes: number): Error | null {
    checkAmount(bytes);
    this.#roll();
    // Arrived already: spent whatever happens, then refused if it went past what the fleet could grant.
    const err = this.#over(RECEIVES, 1) ?? this.#over(BYTES_RECEIVED, bytes);
    this.#spend(RECEIVES, 1);
    this.#spend(BYTES_RECEIVED, bytes);
    return err === null ? null : this.#refuse(err);
  }

  acquire(resources: readonly QuotaResource[]): Error | null | Promise<Error | null> {
    const idx = resources.map(indexOf);
    return this.#acquire(idx);
  }

  #acquire(idx: number[]): Error | null | Promise<Error | null> {
    this.#roll();
    const missing: number[] = [];
    for (const i of idx) {
      if (!this.#limited[i] || this.#lease[i]! >= 1) continue;
      if (!this.#fleet.up) {
        const err = this.#degraded(i, 1);
        if (err !== null) return this.#refuse(err);
        continue;
      }
      if (this.#exhausted[i] !== 0) return this.#refuse(this.#exhaustedError(i));
      this.#starved[i] = 3;
      missing.push(i);
    }
    if (missing.length === 0) {
      for (const i of idx) this.#spend(i, 1);
      return null;
    }
    // No lease here: ask the store, then try again (a waiter ahead may have taken what came back).
    return this.#reserve(missing).then((ok) =>
      ok || !this.#fleet.up ? this.#acquire(idx) : this.#refuse(storeUnavailable('the reservation failed')),
    );
  }

  snapshot(): QuotaSnapshot {
    this.#roll();
    return windowSnapshot(this.#minute, this.#day, this.#minuteUsed, this.#dayUsed, this.#limits, this.#exceeded);
  }
}
