/**
 * Per-layer quotas (docs/service.md#quotas): per-minute and per-day limits on socket creates, connects, binds, send and
 * receive calls, and bytes each way. Off by default; `'app-engine'` is App Engine's published safety limits.
 *
 * Windows are fixed and aligned to the wall clock in UTC: a minute window starts at each whole minute, a day
 * window at 00:00 UTC. (App Engine refreshed daily quotas at midnight Pacific time; UTC avoids daylight-saving
 * days of 23 and 25 hours and does not depend on the host's time zone.) A fixed window can admit up to twice a
 * limit across a boundary, as App Engine's did; it costs two integer divisions per charge and no history. If the
 * wall clock steps backwards the current windows are kept rather than reset, so a clock adjustment cannot
 * hand out a fresh allowance.
 *
 * Pre-operation charges (`charge`, `chargeSend`) check every affected counter in both windows first and charge
 * nothing when one would go over, so a failed operation costs no quota. Received data can only be counted
 * after it arrived: `recordReceive` always charges it (the bytes crossed the network and are billed) and
 * reports whether that took a counter over its limit. The socket layer then destroys the socket with that
 * error without delivering the chunk; later receives in the same window fail the same way until it rolls
 * over.
 *
 * When no quotas are configured, {@link createQuotaMeter} returns a shared null meter whose methods do nothing,
 * so the socket hot path pays one monomorphic call.
 */
import { describeValue, invalidOption, overQuota, type OverQuotaError } from '../errors.js';

export const QUOTA_RESOURCES = ['creates', 'connects', 'binds', 'sends', 'receives', 'bytesSent', 'bytesReceived'] as const;

/** A metered resource: counts of socket creates/connects/binds, of send/receive calls, and bytes each way. */
export type QuotaResource = (typeof QUOTA_RESOURCES)[number];
export type QuotaWindow = 'minute' | 'day';
export type QuotaLimits = Record<QuotaResource, number>;

export interface QuotasConfig {
  /** Limits per UTC minute; omitted resources are unlimited. */
  perMinute?: Partial<QuotaLimits>;
  /** Limits per UTC day; omitted resources are unlimited. */
  perDay?: Partial<QuotaLimits>;
}

/**
 * The layer's `quotas` option: none, App Engine's preset, or explicit limits (non-negative integers, or
 * `Infinity` for no limit).
 * @default undefined
 */
export type QuotasOption = undefined | 'app-engine' | QuotasConfig;

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/**
 * App Engine's socket quotas (docs/service.md#quotas). Byte limits use binary units: 20 GB = 20 × 2^30 bytes per day and
 * 113 MB = 113 × 2^20 bytes per minute. Every per-minute count limit is exactly the daily one divided by 180
 * (864,000 / 180 = 4,800; 663,552,000 / 180 = 3,686,400), and only binary units make the published byte pair
 * follow the same rule (20 × 2^30 / 180 = 113.8 × 2^20, whereas 20 × 10^9 / 180 = 111 × 10^6).
 */
export const APP_ENGINE_QUOTAS: Readonly<{ perMinute: Readonly<QuotaLimits>; perDay: Readonly<QuotaLimits> }> = Object.freeze({
  perMinute: Object.freeze({
    creates: 4_800,
    connects: 4_800,
    binds: 4_800,
    sends: 3_686_400,
    receives: 3_686_400,
    bytesSent: 113 * MiB,
    bytesReceived: 113 * MiB,
  }),
  perDay: Object.freeze({
    creates: 864_000,
    connects: 864_000,
    binds: 864_000,
    sends: 663_552_000,
    receives: 663_552_000,
    bytesSent: 20 * GiB,
    bytesReceived: 20 * GiB,
  }),
});

const RESOURCE_INDEX: Readonly<Record<string, number>> = Object.freeze(
  Object.assign(Object.create(null) as Record<string, number>, Object.fromEntries(QUOTA_RESOURCES.map((r, i) => [r, i]))),
);
const N = QUOTA_RESOURCES.length;
const SENDS = RESOURCE_INDEX.sends as number;
const RECEIVES = RESOURCE_INDEX.receives as number;
const BYTES_SENT = RESOURCE_INDEX.bytesSent as number;
const BYTES_RECEIVED = RESOURCE_INDEX.bytesReceived as number;

export const MINUTE_MS = 60_000;
export const DAY_MS = 86_400_000;

export interface QuotaWindowUsage {
  /** Start of the window, in clock milliseconds (UTC epoch with the default clock). */
  start: number;
  used: QuotaLimits;
}

export interface QuotaSnapshot {
  minute: QuotaWindowUsage;
  day: QuotaWindowUsage;
  limits: { perMinute: Partial<QuotaLimits>; perDay: Partial<QuotaLimits> };
  /** Operations refused (or receives reported) over quota so far. */
  exceeded: number;
}

/** What the socket layer calls. Both implementations have exactly this shape. */
export interface QuotaMeter {
  /** False for the null meter: the layer may skip quota work entirely. */
  readonly enabled: boolean;
  /** The error `charge(resource, amount)` would throw now, or null. Charges nothing. */
  check(resource: QuotaResource, amount?: number): Error | null;
  /** Charges `amount` (default 1) of `resource` in both windows, or throws and charges nothing. */
  charge(resource: QuotaResource, amount?: number): void;
  /** One send call of `bytes` bytes: `sends` +1 and `bytesSent` +bytes, all or nothing; throws when over. */
  chargeSend(bytes: number): void;
  /**
   * One delivered receive of `bytes` bytes, after the fact: `receives` +1 and `bytesReceived` +bytes are always
   * charged. Returns the over-quota error if that took a counter past its limit, else null.
   */
  recordReceive(bytes: number): Error | null;
  snapshot(): QuotaSnapshot;
  /**
   * One unit of each of `resources` (creates, connects, binds), all or nothing: null when charged, the error
   * when refused (nothing charged). A fleet meter answers with a promise when it has to ask the store first;
   * a local one never does, so a connect to an IP literal stays synchronous.
   */
  acquire(resources: readonly QuotaResource[]): Error | null | Promise<Error | null>;
}

function checkLimits(value: unknown, name: string): Partial<QuotaLimits> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidOption(name, `must be an object of limits. Received ${typeof value}`);
  }
  const out: Partial<QuotaLimits> = {};
  for (const [key, limit] of Object.entries(value)) {
    if (RESOURCE_INDEX[key] === undefined) {
      throw invalidOption(`${name}.${key}`, `is not a quota resource; expected one of ${QUOTA_RESOURCES.join(', ')}`);
    }
    if (limit === undefined) continue;
    if (typeof limit !== 'number' || !(limit === Infinity || (Number.isSafeInteger(limit) && limit >= 0))) {
      throw invalidOption(`${name}.${key}`, `must be a non-negative integer or Infinity. Received ${describeValue(limit)}`);
    }
    out[key as QuotaResource] = limit;
  }
  return out;
}

/**
 * Validates the `quotas` option. Returns the normalised limits, or null when no limit is configured at all
 * (no option, or only `Infinity`/empty entries).
 */
export function validateQuotas(option: unknown): { perMinute: Partial<QuotaLimits>; perDay: Partial<QuotaLimits> } | null {
  if (option === undefined) return null;
  if (option === 'app-engine') return { perMinute: { ...APP_ENGINE_QUOTAS.perMinute }, perDay: { ...APP_ENGINE_QUOTAS.perDay } };
  if (typeof option === 'string') throw invalidOption('quotas', `must be 'app-engine' or an object. Received '${option}'`);
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw invalidOption('quotas', `must be 'app-engine' or an object { perMinute?, perDay? }. Received ${option === null ? 'null' : typeof option}`);
  }
  for (const key of Object.keys(option)) {
    if (key !== 'perMinute' && key !== 'perDay') {
      throw invalidOption(`quotas.${key}`, `is not a quota window; expected perMinute or perDay`);
    }
  }
  const o = option as QuotasConfig;
  const perMinute = checkLimits(o.perMinute, 'quotas.perMinute');
  const perDay = checkLimits(o.perDay, 'quotas.perDay');
  const finite = (l: Partial<QuotaLimits>): boolean => Object.values(l).some((v) => v !== Infinity);
  return finite(perMinute) || finite(perDay) ? { perMinute, perDay } : null;
}

export function toLimitArray(limits: Partial<QuotaLimits>): Float64Array {
  const out = new Float64Array(N).fill(Infinity);
  for (const r of QUOTA_RESOURCES) {
    const v = limits[r];
    if (v !== undefined) out[RESOURCE_INDEX[r] as number] = v;
  }
  return out;
}

export function toRecord(values: Float64Array): QuotaLimits {
  const out = {} as QuotaLimits;
  QUOTA_RESOURCES.forEach((r, i) => {
    out[r] = values[i] as number;
  });
  return out;
}

export function indexOf(resource: QuotaResource): number {
  const i = RESOURCE_INDEX[resource];
  if (i === undefined) throw invalidOption('resource', `is not a quota resource: ${describeValue(resource)}`);
  return i;
}

export function checkAmount(amount: number): void {
  if (typeof amount !== 'number' || !(amount >= 0) || !Number.isFinite(amount)) {
    throw invalidOption('amount', `must be a non-negative finite number. Received ${describeValue(amount)}`);
  }
}

/**
 * A meter's snapshot from its window indices (minutes and days since the epoch) and its use in them. The fleet
 * meter counts this process's own use in the same windows as the local meter, so one function reports both.
 */
export function windowSnapshot(
  minute: number,
  day: number,
  minuteUsed: Float64Array,
  dayUsed: Float64Array,
  limits: { perMinute: Partial<QuotaLimits>; perDay: Partial<QuotaLimits> },
  exceeded: number,
): QuotaSnapshot {
  return {
    minute: { start: minute * MINUTE_MS, used: toRecord(minuteUsed) },
    day: { start: day * DAY_MS, used: toRecord(dayUsed) },
    limits: { perMinute: { ...limits.perMinute }, perDay: { ...limits.perDay } },
    exceeded,
  };
}

/** Enforces configured limits in fixed UTC minute and day windows. */
export class ActiveQuotaMeter implements QuotaMeter {
  readonly enabled = true;
  readonly #clock: () => number;
  readonly #limits: { perMinute: Partial<QuotaLimits>; perDay: Partial<QuotaLimits> };
  readonly #minuteLimit: Float64Array;
  readonly #dayLimit: Float64Array;
  readonly #minuteUsed = new Float64Array(N);
  readonly #dayUsed = new Float64Array(N);
  #minute = -Infinity;
  #day = -Infinity;
  #exceeded = 0;

  constructor(limits: { perMinute: Partial<QuotaLimits>; perDay: Partial<QuotaLimits> }, clock: () => number = Date.now) {
    this.#limits = { perMinute: { ...limits.perMinute }, perDay: { ...limits.perDay } };
    this.#minuteLimit = toLimitArray(limits.perMinute);
    this.#dayLimit = toLimitArray(limits.perDay);
    this.#clock = clock;
  }

  #roll(): void {
    const minute = Math.floor(this.#clock() / MINUTE_MS);
    if (minute <= this.#minute) return;
    this.#minute = minute;
    this.#minuteUsed.fill(0);
    // Day boundaries are minute boundaries, so the day can only change when the minute does.
    const day = Math.floor((minute * MINUTE_MS) / DAY_MS);
    if (day > this.#day) {
      this.#day = day;
      this.#dayUsed.fill(0);
    }
  }

  /** Day first: when both windows are exhausted, the day is the one the caller has to wait for. */
  #over(i: number, amount: number): OverQuotaError | null {
    if (this.#dayUsed[i]! + amount > this.#dayLimit[i]!) return overQuota(QUOTA_RESOURCES[i]!, 'day', this.#dayLimit[i]!);
    if (this.#minuteUsed[i]! + amount > this.#minuteLimit[i]!) return overQuota(QUOTA_RESOURCES[i]!, 'minute', this.#minuteLimit[i]!);
    return null;
  }

  #add(i: number, amount: number): void {
    this.#dayUsed[i]! += amount;
    this.#minuteUsed[i]! += amount;
  }

  check(resource: QuotaResource, amount = 1): OverQuotaError | null {
    const i = indexOf(resource);
    checkAmount(amount);
    this.#roll();
    return this.#over(i, amount);
  }

  charge(resource: QuotaResource, amount = 1): void {
    const i = indexOf(resource);
    checkAmount(amount);
    this.#roll();
    const err = this.#over(i, amount);
    if (err !== null) {
      this.#exceeded++;
      throw err;
    }
    this.#add(i, amount);
  }

  chargeSend(bytes: number): void {
    checkAmount(bytes);
    this.#roll();
    const err = this.#over(SENDS, 1) ?? this.#over(BYTES_SENT, bytes);
    if (err !== null) {
      this.#exceeded++;
      throw err;
    }
    this.#add(SENDS, 1);
    this.#add(BYTES_SENT, bytes);
  }

  recordReceive(bytes: number): OverQuotaError | null {
    checkAmount(bytes);
    this.#roll();
    this.#add(RECEIVES, 1);
    this.#add(BYTES_RECEIVED, bytes);
    const err = this.#over(RECEIVES, 0) ?? this.#over(BYTES_RECEIVED, 0);
    if (err !== null) this.#exceeded++;
    return err;
  }

  acquire(resources: readonly QuotaResource[]): Error | null {
    this.#roll();
    for (const r of resources) {
      const err = this.#over(indexOf(r), 1);
      if (err !== null) {
        this.#exceeded++;
        return err;
      }
    }
    for (const r of resources) this.#add(indexOf(r), 1);
    return null;
  }

  snapshot(): QuotaSnapshot {
    this.#roll();
    return windowSnapshot(this.#minute, this.#day, this.#minuteUsed, this.#dayUsed, this.#limits, this.#exceeded);
  }
}

class NullQuotaMeter implements QuotaMeter {
  readonly enabled = false;
  check(): null {
    return null;
  }
  charge(): void {}
  chargeSend(): void {}
  recordReceive(): null {
    return null;
  }
  acquire(): null {
    return null;
  }
  snapshot(): QuotaSnapshot {
    const zero = toRecord(new Float64Array(N));
    return {
      minute: { start: 0, used: zero },
      day: { start: 0, used: { ...zero } },
      limits: { perMinute: {}, perDay: {} },
      exceeded: 0,
    };
  }
}

/** The shared meter for layers without quotas. */
export const NO_QUOTA: QuotaMeter = Object.freeze(new NullQuotaMeter());

export interface QuotaMeterOptions {
  /**
   * Wall-clock milliseconds since the UTC epoch; windows align to its minutes and days. Inject for tests.
   * @default Date.now
   */
  clock?: () => number;
}

/** Validates the `quotas` option and returns the layer's meter ({@link NO_QUOTA} when nothing is limited). */
export function createQuotaMeter(option: unknown, options: QuotaMeterOptions = {}): QuotaMeter {
  const limits = validateQuotas(option);
  return limits === null ? NO_QUOTA : new ActiveQuotaMeter(limits, options.clock);
}
