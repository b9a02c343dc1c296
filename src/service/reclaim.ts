/**
 * Idle reclaim (docs/service.md#idle-reclaim): one coarse, unref'd timer per layer decides which sockets have been idle for
 * `idleTimeoutMs`, with no per-socket timers and an O(1), allocation-free refresh on every operation.
 *
 * Accuracy contract. Time is split into epochs that end at sweeps; the sweep reads the clock once. A refresh
 * records only the number of the current epoch, so the operation is known to have happened no later than
 * that epoch's end. A socket is reclaimed by the first sweep that finds its epoch ended at least
 * `idleTimeoutMs` ago. An epoch ends at the first sweep after it saw any activity, once it is at least
 * `idleTimeoutMs / 1024` long (which bounds the bookkeeping for very long timeouts). Therefore a socket is
 * reclaimed:
 * - never earlier than `idleTimeoutMs` after its last operation, even when the event loop was blocked (a late
 *   sweep ends the epoch late, which only postpones reclaim);
 * - normally no later than `idleTimeoutMs + 2 × max(sweepIntervalMs, idleTimeoutMs / 1024)` after it (until
 *   its epoch ends, then until the sweep that notices), plus however long the event loop was blocked.
 * With the defaults (10 minutes, 1 s sweeps) that is between 10:00 and 10:02 after the last operation.
 *
 * Structure. Tracked entries live in one intrusive doubly-linked list. Each epoch has a marker node carrying
 * its end time; an entry sits after the marker of the epoch it was last *placed* in, which may be older than
 * the epoch it last *used*. Refresh only stores the current epoch number in the entry: no relinking, so no
 * writes to neighbouring sockets on the I/O path. A sweep ends the current epoch, then walks from the head
 * while the head marker's epoch is due: an entry whose recorded epoch is due too is reclaimed, one used since
 * is moved to the end of its recorded epoch's run (markers are found by epoch number in a ring, O(1)). The walk
 * stops at the first marker that is not due. So an idle socket costs nothing until it is reclaimed, and a
 * busy one is moved about once per `idleTimeoutMs`, not once per sweep. Markers are pooled and the ring only
 * grows up to the number of epochs in one timeout, so steady state allocates nothing.
 *
 * The socket classes are the entries: they carry the three symbol-keyed fields below (initialise them in the
 * constructor with {@link initReclaimEntry} so every instance has the same shape). No closures or maps per
 * socket.
 */
import { performance } from 'node:perf_hooks';
import { describeValue, invalidOption } from '../errors.js';

export const kReclaimPrev: unique symbol = Symbol('sockguard.reclaim.prev');
export const kReclaimNext: unique symbol = Symbol('sockguard.reclaim.next');
/** Epoch of the entry's last operation; {@link UNTRACKED} when not tracked. */
export const kReclaimEpoch: unique symbol = Symbol('sockguard.reclaim.epoch');

/** A list node: a tracked socket or an epoch marker. */
export interface ReclaimNode {
  [kReclaimPrev]: ReclaimNode | null;
  [kReclaimNext]: ReclaimNode | null;
  [kReclaimEpoch]: number;
}

/** What a socket class adds to be tracked. */
export type ReclaimEntry = ReclaimNode;

const UNTRACKED = -1;
const MARKER = -2;

/** Gives `entry` the reclaim fields in the untracked state. Call once, in the constructor. */
export function initReclaimEntry<T extends object>(entry: T): T & ReclaimEntry {
  const e = entry as T & ReclaimEntry;
  e[kReclaimPrev] = null;
  e[kReclaimNext] = null;
  e[kReclaimEpoch] = UNTRACKED;
  return e;
}

class Marker implements ReclaimNode {
  [kReclaimPrev]: ReclaimNode | null = null;
  [kReclaimNext]: ReclaimNode | null = null;
  [kReclaimEpoch] = MARKER;
  /** The epoch this marker opens. */
  epoch = 0;
  /** Clock time the epoch started (-Infinity when opened by a track between sweeps). */
  start = -Infinity;
  /** Clock time at which the epoch ended; +Infinity while it is the open epoch. */
  end = Infinity;
}

/** Epochs last at least idleTimeoutMs / EPOCHS_PER_TIMEOUT, so a timeout spans at most ~this many markers. */
const EPOCHS_PER_TIMEOUT = 1024;

export interface ReclaimOptions<T extends ReclaimEntry> {
  /**
   * Reclaim after this much inactivity, in milliseconds. `0` disables reclaim: tracking and refreshing become
   * no-ops and no timer ever starts.
   * @default 600_000
   */
  idleTimeoutMs?: number;
  /**
   * How often the sweep runs, in milliseconds. Reclaim happens within `2 × sweepIntervalMs` after the timeout.
   * @default Math.min(1000, Math.max(10, Math.floor(idleTimeoutMs / 4)))
   */
  sweepIntervalMs?: number;
  /**
   * Called once per reclaimed entry, after it has been untracked. It may track, untrack or refresh any entry.
   */
  onExpire: (entry: T) => void;
  /**
   * Monotonic milliseconds, read once per timer sweep. Inject a fake clock in tests.
   * @default performance.now
   */
  clock?: () => number;
}

/** Default idle timeout: App Engine's 10 minutes. */
export const DEFAULT_IDLE_TIMEOUT_MS = 600_000;

/**
 * Validates an idle timeout from an option or from `SOCKGUARD_IDLE_TIMEOUT_MS` (pass the string; an empty
 * string means unset). Returns the default when `value` is undefined.
 */
export function validateIdleTimeout(value: unknown, name = 'idleTimeoutMs'): number {
  if (value === undefined || value === '') return DEFAULT_IDLE_TIMEOUT_MS;
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
    throw invalidOption(name, `must be a non-negative integer number of milliseconds. Received ${describeValue(value)}`);
  }
  return n;
}

/** The idle-reclaim sweeper of one layer. */
export class ReclaimSweeper<T extends ReclaimEntry> {
  /** 0 when reclaim is disabled. */
  readonly idleTimeoutMs: number;
  readonly sweepIntervalMs: number;

  readonly #onExpire: (entry: T) => void;
  readonly #clock: () => number;
  readonly #minEpochMs: number;
  readonly #tick = (): void => {
    this.sweepNow();
  };

  #head: ReclaimNode | null = null;
  #tail: ReclaimNode | null = null;
  /** The current epoch. Its marker is the last marker in the list whenever anything is tracked. */
  #epoch = 0;
  /** Set by track/refresh: the current epoch saw activity and must end at the next sweep. */
  #touched = false;
  /** Markers of epochs #base..#epoch, at index epoch & (length - 1); empty when nothing is tracked. */
  #ring: (Marker | undefined)[] = new Array<Marker | undefined>(64).fill(undefined);
  #base = 0;
  #live = false;
  #pool: Marker | null = null;
  #size = 0;
  #timer: NodeJS.Timeout | null = null;
  #sweeping = false;

  #sweeps = 0;
  #visited = 0;
  #lastVisited = 0;
  #reclaimed = 0;
  #moved = 0;

  constructor(options: ReclaimOptions<T>) {
    this.idleTimeoutMs = validateIdleTimeout(options.idleTimeoutMs);
    const interval = options.sweepIntervalMs;
    if (interval === undefined) {
      this.sweepIntervalMs = Math.min(1000, Math.max(10, Math.floor(this.idleTimeoutMs / 4)));
    } else if (typeof interval !== 'number' || !Number.isFinite(interval) || interval < 1 || interval > 0x7fffffff) {
      throw invalidOption('sweepIntervalMs', `must be a number of milliseconds between 1 and 2^31-1. Received ${describeValue(interval)}`);
    } else {
      this.sweepIntervalMs = interval;
    }
    if (typeof options.onExpire !== 'function') throw invalidOption('onExpire', 'must be a function');
    this.#onExpire = options.onExpire;
    this.#clock = options.clock ?? performance.now.bind(performance);
    this.#minEpochMs = Math.floor(this.idleTimeoutMs / EPOCHS_PER_TIMEOUT);
  }

  /** Whether reclaim is on (`idleTimeoutMs > 0`). */
  get enabled(): boolean {
    return this.idleTimeoutMs > 0;
  }

  /** Entries currently tracked. */
  get size(): number {
    return this.#size;
  }

  /** Whether the sweep timer is scheduled. It is always unref'd. */
  get timerActive(): boolean {
    return this.#timer !== null;
  }

  /** Epoch markers in the list: one per epoch from the oldest run still tracked to the current one. */
  get markers(): number {
    return this.#live ? this.#epoch - this.#base + 1 : 0;
  }

  /** Sweeps run so far (timer and manual). */
  get sweeps(): number {
    return this.#sweeps;
  }

  /** List nodes (entries and markers) visited by all sweeps so far. */
  get visited(): number {
    return this.#visited;
  }

  /** List nodes visited by the most recent sweep. */
  get lastVisited(): number {
    return this.#lastVisited;
  }

  /** Entries reclaimed so far. */
  get reclaimed(): number {
    return this.#reclaimed;
  }

  /** Entries sweeps found used since they were placed, and moved to their newer epoch's run. */
  get moved(): number {
    return this.#moved;
  }

  isTracked(entry: T): boolean {
    return entry[kReclaimEpoch] >= 0;
  }

  /**
   * Starts tracking `entry` as if it had just been used. Tracking a tracked entry refreshes it. Starts the
   * sweep timer if it is not running.
   */
  track(entry: T): void {
    if (this.idleTimeoutMs === 0) return;
    if (entry[kReclaimEpoch] >= 0) {
      this.refresh(entry);
      return;
    }
    if (!this.#live) this.#open(-Infinity);
    // The tail is in the current epoch's run: its marker is the last marker.
    entry[kReclaimEpoch] = this.#epoch;
    this.#insertBefore(entry, null);
    this.#touched = true;
    this.#size++;
    if (this.#timer === null) this.#startTimer();
  }

  /**
   * Records an operation on `entry`: two stores, no relinking, no allocation. A no-op for untracked entries.
   */
  refresh(entry: T): void {
    if (entry[kReclaimEpoch] < 0) return;
    entry[kReclaimEpoch] = this.#epoch;
    this.#touched = true;
  }

  /**
   * Stops tracking `entry` (closed, destroyed, detached). A no-op if it is not tracked. The timer stops at the
   * next sweep that finds nothing tracked, so opening and closing one socket at a time does not churn timers.
   */
  untrack(entry: T): void {
    if (entry[kReclaimEpoch] < 0) return;
    this.#unlink(entry);
    entry[kReclaimEpoch] = UNTRACKED;
    this.#size--;
  }

  /**
   * Ends the current epoch at `now` (if it saw activity) and reclaims every entry whose last epoch ended at
   * least `idleTimeoutMs` before `now`. Returns how many were reclaimed. A call from inside `onExpire` is
   * ignored.
   */
  sweepNow(now: number = this.#clock()): number {
    if (this.#sweeping) return 0;
    this.#sweeping = true;
    this.#sweeps++;
    let visited = 0;
    let reclaimed = 0;
    try {
      if (this.#live && this.#touched) {
        const open = this.#marker(this.#epoch);
        if (now - open.start >= this.#minEpochMs) {
          open.end = now;
          this.#epoch++;
          this.#touched = false;
          this.#open(now);
        }
      }
      const limit = now - this.idleTimeoutMs;
      let node: ReclaimNode | null;
      // Every visited node is unlinked (reclaimed, moved, or a due marker) or ends the walk, so the next node
      // is always the head; this also makes the walk safe against onExpire tracking or untracking entries.
      while ((node = this.#head) !== null) {
        visited++;
        const epoch = node[kReclaimEpoch];
        if (epoch === MARKER) {
          const marker = node as Marker;
          if (marker.end > limit) break;
          this.#unlink(marker);
          this.#base = marker.epoch + 1;
          this.#release(marker);
          continue;
        }
        this.#unlink(node);
        // Epochs older than #base had their markers dropped as due; ends grow with the epoch number.
        if (epoch >= this.#base) {
          const marker = this.#marker(epoch);
          if (marker.end > limit) {
            // Used since it was placed: move it to the end of its epoch's run.
            this.#insertBefore(node, epoch < this.#epoch ? this.#marker(epoch + 1) : null);
            this.#moved++;
            continue;
          }
        }
        node[kReclaimEpoch] = UNTRACKED;
        this.#size--;
        reclaimed++;
        this.#onExpire(node as T);
      }
    } finally {
      this.#sweeping = false;
      this.#lastVisited = visited;
      this.#visited += visited;
      this.#reclaimed += reclaimed;
      if (this.#size === 0 && (this.#live || this.#timer !== null)) this.#idle();
    }
    return reclaimed;
  }

  /** Untracks every entry without reclaiming it and stops the timer. The sweeper stays usable. */
  close(): void {
    let node = this.#head;
    while (node !== null) {
      const next: ReclaimNode | null = node[kReclaimNext];
      node[kReclaimPrev] = null;
      node[kReclaimNext] = null;
      if (node[kReclaimEpoch] !== MARKER) node[kReclaimEpoch] = UNTRACKED;
      node = next;
    }
    this.#head = this.#tail = null;
    this.#ring.fill(undefined);
    this.#live = false;
    this.#size = 0;
    this.#stopTimer();
  }

  #marker(epoch: number): Marker {
    return this.#ring[epoch & (this.#ring.length - 1)] as Marker;
  }

  /** Appends the marker of the current epoch and records it in the ring. */
  #open(start: number): void {
    let marker = this.#pool;
    if (marker === null) {
      marker = new Marker();
    } else {
      this.#pool = marker[kReclaimNext] as Marker | null;
      marker[kReclaimNext] = null;
    }
    marker.epoch = this.#epoch;
    marker.start = start;
    marker.end = Infinity;
    if (!this.#live) {
      this.#live = true;
      this.#base = this.#epoch;
    } else if (this.#epoch - this.#base + 1 > this.#ring.length) {
      this.#grow();
    }
    this.#ring[this.#epoch & (this.#ring.length - 1)] = marker;
    this.#insertBefore(marker, null);
  }

  #grow(): void {
    const ring = new Array<Marker | undefined>(this.#ring.length * 2).fill(undefined);
    const mask = ring.length - 1;
    for (let e = this.#base; e < this.#epoch; e++) ring[e & mask] = this.#marker(e);
    this.#ring = ring;
  }

  /** Links `node` before `next`, or at the tail when `next` is null. */
  #insertBefore(node: ReclaimNode, next: ReclaimNode | null): void {
    const prev = next === null ? this.#tail : next[kReclaimPrev];
    node[kReclaimPrev] = prev;
    node[kReclaimNext] = next;
    if (prev === null) this.#head = node;
    else prev[kReclaimNext] = node;
    if (next === null) this.#tail = node;
    else next[kReclaimPrev] = node;
  }

  #unlink(node: ReclaimNode): void {
    const prev = node[kReclaimPrev];
    const next = node[kReclaimNext];
    if (prev === null) this.#head = next;
    else prev[kReclaimNext] = next;
    if (next === null) this.#tail = prev;
    else next[kReclaimPrev] = prev;
    node[kReclaimPrev] = null;
    node[kReclaimNext] = null;
  }

  #release(marker: Marker): void {
    marker[kReclaimNext] = this.#pool;
    this.#pool = marker;
  }

  /** Nothing tracked: only markers remain. Return them to the pool and let the timer go. */
  #idle(): void {
    let node = this.#head;
    while (node !== null) {
      const next: ReclaimNode | null = node[kReclaimNext];
      node[kReclaimPrev] = null;
      this.#release(node as Marker);
      node = next;
    }
    this.#head = this.#tail = null;
    this.#ring.fill(undefined);
    this.#live = false;
    this.#touched = false;
    this.#stopTimer();
  }

  #startTimer(): void {
    const timer = setInterval(this.#tick, this.sweepIntervalMs);
    // An idle layer must never keep the process alive; sockets that should do so hold their own refs.
    timer.unref();
    this.#timer = timer;
  }

  #stopTimer(): void {
    if (this.#timer === null) return;
    clearInterval(this.#timer);
    this.#timer = null;
  }
}
