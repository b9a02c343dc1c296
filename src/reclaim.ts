/**
 * Idle reclaim (SPEC.md §4): one coarse, unref'd timer per layer decides which sockets have been idle for
 * `idleTimeoutMs`, with no per-socket timers and an O(1), allocation-free refresh on every operation.
 *
 * Accuracy contract. Time is split into epochs; an epoch ends each time a sweep runs, and the sweep reads the
 * clock once. A refresh records only the epoch of the operation, so the operation is known to have happened
 * no later than that epoch's end. A socket is reclaimed by the first sweep that finds its epoch ended at least
 * `idleTimeoutMs` ago. Therefore a socket is reclaimed:
 * - never earlier than `idleTimeoutMs` after its last operation, even when the event loop was blocked (a late
 *   sweep ends the epoch late, which only postpones reclaim);
 * - normally no later than `idleTimeoutMs + 2 × sweepIntervalMs` after it (one interval until its epoch ends,
 *   one more until the sweep that notices), plus however long the event loop was blocked or the timer late.
 * With the defaults (10 minutes, 1 s sweeps) that is between 10:00 and 10:02 after the last operation.
 *
 * Structure. Tracked entries live in one intrusive doubly-linked list, in the order of the epoch of their last
 * operation. Each epoch's run of entries is preceded by a marker node that carries the epoch's end time. A
 * refresh in the current epoch is one integer compare; the first refresh of an entry in a new epoch unlinks
 * it and appends it at the tail. A sweep ends the current epoch, then walks from the head, dropping markers
 * whose epoch is old enough and reclaiming the entries after them, and stops at the first marker that is
 * still recent. Its cost is O(reclaimed entries + expired markers), independent of how many idle sockets are
 * tracked but not yet due. A marker whose run empties is dropped at once, so there are never more markers
 * than non-empty runs plus one; markers are pooled, so steady state allocates nothing.
 *
 * The socket classes are the entries: they carry the three symbol-keyed fields below (initialise them in the
 * constructor with {@link initReclaimEntry} so every instance has the same shape). No closures or maps per
 * socket.
 */
import { performance } from 'node:perf_hooks';
import { invalidOption } from './errors.js';

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
  /** Clock time at which this marker's epoch ended; +Infinity while it is the open epoch. */
  end = Infinity;
}

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
    throw invalidOption(name, `must be a non-negative integer number of milliseconds. Received ${String(value)}`);
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
  readonly #tick = (): void => {
    this.sweepNow();
  };

  #head: ReclaimNode | null = null;
  #tail: ReclaimNode | null = null;
  /** Marker of the current epoch, created lazily by the first entry touched in it. */
  #open: Marker | null = null;
  #epoch = 0;
  #pool: Marker | null = null;
  #size = 0;
  #timer: NodeJS.Timeout | null = null;
  #sweeping = false;

  #markers = 0;
  #sweeps = 0;
  #visited = 0;
  #lastVisited = 0;
  #reclaimed = 0;

  constructor(options: ReclaimOptions<T>) {
    this.idleTimeoutMs = validateIdleTimeout(options.idleTimeoutMs);
    const interval = options.sweepIntervalMs;
    if (interval === undefined) {
      this.sweepIntervalMs = Math.min(1000, Math.max(10, Math.floor(this.idleTimeoutMs / 4)));
    } else if (typeof interval !== 'number' || !Number.isFinite(interval) || interval < 1 || interval > 0x7fffffff) {
      throw invalidOption('sweepIntervalMs', `must be a number of milliseconds between 1 and 2^31-1. Received ${String(interval)}`);
    } else {
      this.sweepIntervalMs = interval;
    }
    if (typeof options.onExpire !== 'function') throw invalidOption('onExpire', 'must be a function');
    this.#onExpire = options.onExpire;
    this.#clock = options.clock ?? performance.now.bind(performance);
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

  /** Epoch markers in the list: at most one per non-empty run of entries, plus the open one. */
  get markers(): number {
    return this.#markers;
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
    this.#append(entry);
    this.#size++;
    if (this.#timer === null) this.#startTimer();
  }

  /**
   * Records an operation on `entry`. O(1), allocation-free: an integer compare when the entry was already used
   * in the current epoch, otherwise an unlink and an append. A no-op for untracked entries.
   */
  refresh(entry: T): void {
    const epoch = entry[kReclaimEpoch];
    if (epoch === this.#epoch || epoch < 0) return;
    this.#remove(entry);
    this.#append(entry);
  }

  /**
   * Stops tracking `entry` (closed, destroyed, detached). A no-op if it is not tracked. The timer stops at the
   * next sweep that finds nothing tracked, so opening and closing one socket at a time does not churn timers.
   */
  untrack(entry: T): void {
    if (entry[kReclaimEpoch] < 0) return;
    this.#remove(entry);
    entry[kReclaimEpoch] = UNTRACKED;
    this.#size--;
  }

  /**
   * Ends the current epoch at `now` and reclaims every entry whose last epoch ended at least `idleTimeoutMs`
   * before `now`. Returns how many were reclaimed. A call from inside `onExpire` is ignored.
   */
  sweepNow(now: number = this.#clock()): number {
    if (this.#sweeping) return 0;
    this.#sweeping = true;
    this.#sweeps++;
    let visited = 0;
    let reclaimed = 0;
    try {
      const open = this.#open;
      if (open !== null) {
        this.#open = null;
        if (open[kReclaimNext] === null) {
          // Every entry of this epoch was untracked or moved on: an empty run needs no marker.
          this.#unlink(open);
          this.#release(open);
        } else {
          open.end = now;
        }
      }
      this.#epoch++;
      const limit = now - this.idleTimeoutMs;
      let node: ReclaimNode | null;
      // Every visited node is unlinked or ends the walk, so the next node is always the head; this also
      // makes the walk safe against onExpire untracking or tracking other entries.
      while ((node = this.#head) !== null) {
        visited++;
        if (node[kReclaimEpoch] === MARKER) {
          if ((node as Marker).end > limit) break;
          this.#unlink(node);
          this.#release(node as Marker);
          continue;
        }
        this.#unlink(node);
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
      if (this.#size === 0) this.#idle();
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
    this.#head = this.#tail = this.#open = null;
    this.#size = 0;
    this.#markers = 0;
    this.#stopTimer();
  }

  #append(entry: ReclaimNode): void {
    if (this.#open === null) {
      const marker = this.#acquire();
      this.#link(marker);
      this.#open = marker;
    }
    entry[kReclaimEpoch] = this.#epoch;
    this.#link(entry);
  }

  /**
   * Unlinks a tracked entry and, if that emptied a closed epoch's run, drops the run's marker. Without this a
   * long timeout with steadily refreshed sockets would pile up one empty marker per sweep.
   */
  #remove(entry: ReclaimNode): void {
    const prev = entry[kReclaimPrev];
    const next = entry[kReclaimNext];
    this.#unlink(entry);
    if (
      prev !== null &&
      prev[kReclaimEpoch] === MARKER &&
      prev !== this.#open &&
      (next === null || next[kReclaimEpoch] === MARKER)
    ) {
      this.#unlink(prev);
      this.#release(prev as Marker);
    }
  }

  #link(node: ReclaimNode): void {
    const tail = this.#tail;
    node[kReclaimPrev] = tail;
    node[kReclaimNext] = null;
    if (tail === null) this.#head = node;
    else tail[kReclaimNext] = node;
    this.#tail = node;
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

  #acquire(): Marker {
    this.#markers++;
    const marker = this.#pool;
    if (marker === null) return new Marker();
    this.#pool = marker[kReclaimNext] as Marker | null;
    marker[kReclaimNext] = null;
    marker.end = Infinity;
    return marker;
  }

  #release(marker: Marker): void {
    this.#markers--;
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
    this.#head = this.#tail = this.#open = null;
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
